//! One log file: appending, rotating by size, noticing deletion and
//! truncation, and surviving write failures with a bounded buffer.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use sup_home::nofollow::Last;
use sup_proto::logfmt::unfit_log_file;

/// Time between attempts to rotate after a rotation failed.
const ROTATION_RETRY: Duration = Duration::from_secs(1);

/// Output kept while writes fail; beyond it, bytes are dropped and counted.
pub const FAILURE_BUFFER: usize = 1024 * 1024;

/// Health of a log file, as `describe` shows it.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Bytes dropped because writes failed.
    pub dropped: u64,
    /// The last write error, while writing fails.
    pub error: Option<String>,
    /// Bytes written so far (`/metrics`). Shared by every copy, so the
    /// count is live without publishing the health at each write.
    pub written: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Health changed when what `describe` warns about changed; the count of
/// bytes written is live anyway.
impl PartialEq for Health {
    fn eq(&self, other: &Health) -> bool {
        self.dropped == other.dropped && self.error == other.error
    }
}

/// What happens to rotated files besides the count kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Gzip them (`<file>.1.gz`).
    pub compress: bool,
    /// Delete those older than this many days.
    pub keep_days: Option<u32>,
}

/// An open log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Option<File>,
    /// Whether the open file is a regular file (only those rotate).
    regular: bool,
    /// After a failed rotation, none is tried again before this.
    rotation_paused_until: Option<Instant>,
    size: u64,
    max_size: u64,
    keep: u32,
    /// See [`LogFile::set_owner`].
    owner: Option<(u32, u32)>,
    /// Output that could not be written yet.
    pending: Vec<u8>,
    /// Bytes dropped since the last successful write (reported in the file).
    dropped_unreported: u64,
    health: Health,
    /// When a line last came.
    last_used: Instant,
    retention: Retention,
}

impl LogFile {
    /// A log at `path`, rotated past `max_size` bytes (0: never), keeping `keep` old files.
    pub fn new(path: PathBuf, max_size: u64, keep: u32) -> LogFile {
        LogFile {
            path,
            file: None,
            regular: false,
            rotation_paused_until: None,
            size: 0,
            max_size,
            keep,
            owner: None,
            pending: Vec::new(),
            dropped_unreported: 0,
            health: Health::default(),
            last_used: Instant::now(),
            retention: Retention::default(),
        }
    }

    /// Changes what happens to rotated files.
    pub fn set_retention(&mut self, retention: Retention) {
        self.retention = retention;
    }

    /// Closes the file when nothing came for `idle` and nothing waits to
    /// be written; the next line opens it again. Returns whether it stays
    /// open.
    pub fn close_if_idle(&mut self, now: Instant, idle: std::time::Duration) -> bool {
        if self.file.is_some()
            && !self.has_pending()
            && now.saturating_duration_since(self.last_used) >= idle
        {
            self.file = None;
        }
        self.file.is_some()
    }

    /// Changes the rotation limits.
    pub fn set_limits(&mut self, max_size: u64, keep: u32) {
        self.max_size = max_size;
        self.keep = keep;
    }

    /// Files created from now on belong to `owner` (uid, gid); an existing
    /// file of that user is fit too.
    pub fn set_owner(&mut self, owner: Option<(u32, u32)>) {
        self.owner = owner;
    }

    /// Current health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Whether output is waiting for a retry.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.dropped_unreported > 0
    }

    /// Appends `data`, whole lines (the writer only ever passes those). On
    /// failure the file is left mid-line only until the rest of that line
    /// can be written; later lines are kept whole while the failure buffer
    /// has room, then dropped whole and counted.
    pub fn append(&mut self, data: &[u8]) {
        self.last_used = Instant::now();
        if self.has_pending() && self.flush_pending().is_err() {
            self.keep(data, 0);
            return;
        }
        if let Err((written, err)) = self.write(data) {
            self.fail(err);
            let rest = &data[written..];
            // The file holds the head of a line: its tail must follow.
            let tail = if written > 0 && data[written - 1] != b'\n' {
                memchr::memchr(b'\n', rest).map_or(rest.len(), |nl| nl + 1)
            } else {
                0
            };
            self.keep(rest, tail);
        }
    }

    /// Opens (creating) the file now; a failure shows in the health.
    pub fn touch(&mut self) {
        if let Err(err) = self.file() {
            self.fail(err);
        }
    }

    /// Retries the pending output.
    pub fn retry(&mut self) {
        let _ = self.flush_pending();
    }

    /// Empties the file and removes its rotated copies (`sup flush`),
    /// through the open file or one opened as carefully as for writing, so
    /// a link planted at the path is never followed.
    pub fn truncate(&mut self) {
        let emptied = match &self.file {
            Some(file) => file.set_len(0),
            None => match open_existing(&self.path, self.owner.map(|(uid, _)| uid)) {
                Ok(file) => file.set_len(0),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            },
        };
        match emptied {
            // A FIFO or a device has no length to set.
            Err(e) if e.raw_os_error() != Some(libc::EINVAL) => {
                self.health.error = Some(format!("{}: {e}", self.path.display()));
            }
            _ => self.size = 0,
        }
        for n in 1..=self.keep.max(1) {
            let _ = fs::remove_file(rotated(&self.path, n));
            let _ = fs::remove_file(gzipped(&rotated(&self.path, n)));
        }
    }

    /// Writes the pending output, with a note of what was dropped after it.
    fn flush_pending(&mut self) -> Result<(), ()> {
        if self.dropped_unreported > 0 {
            // Pending output ends at a line boundary, so the note is a line
            // of its own; queued like any line, a short write of it resumes
            // where it stopped instead of starting it again.
            let reason = self.health.error.clone().unwrap_or_default();
            let note = format!(
                "[sup: {} bytes dropped: {reason}]\n",
                self.dropped_unreported
            );
            self.pending.extend_from_slice(note.as_bytes());
            self.dropped_unreported = 0;
        }
        let pending = std::mem::take(&mut self.pending);
        if let Err((written, err)) = self.write(&pending) {
            self.pending = pending[written..].to_vec();
            self.fail(err);
            return Err(());
        }
        self.health.error = None;
        Ok(())
    }

    fn fail(&mut self, err: io::Error) {
        self.health.error = Some(format!("{}: {err}", self.path.display()));
        // Reopen on the next attempt: the directory may come back.
        self.file = None;
    }

    /// Queues `data` for a retry: its first `tail` bytes always (they end a
    /// line already begun in the file), then as many whole lines as fit.
    /// Once a line is dropped, everything is until the note of the loss is
    /// queued, so the note stands exactly where the gap is.
    fn keep(&mut self, data: &[u8], tail: usize) {
        self.pending.extend_from_slice(&data[..tail]);
        let rest = &data[tail..];
        let room = FAILURE_BUFFER.saturating_sub(self.pending.len());
        let kept = if self.dropped_unreported > 0 {
            0
        } else if rest.len() <= room {
            rest.len()
        } else {
            memchr::memrchr(b'\n', &rest[..room]).map_or(0, |nl| nl + 1)
        };
        self.pending.extend_from_slice(&rest[..kept]);
        let lost = (rest.len() - kept) as u64;
        self.dropped_unreported += lost;
        self.health.dropped += lost;
    }

    /// Writes all of `data`, rotating between lines so that no file grows
    /// past `max_size` unless one line alone is larger; or says how much got
    /// through before an error.
    fn write(&mut self, data: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while done < data.len() {
            self.file().map_err(|e| (done, e))?;
            let take = self.fitting(&data[done..]);
            if take == 0 {
                // On failure rotation pauses, so the next turn writes anyway.
                self.rotate();
                continue;
            }
            self.write_now(&data[done..done + take])
                .map_err(|(n, e)| (done + n, e))?;
            done += take;
        }
        Ok(())
    }

    /// How many bytes of `data` go into the current file: whole lines up
    /// to `max_size`, at least one line when the file is empty.
    fn fitting(&self, data: &[u8]) -> usize {
        let paused = self
            .rotation_paused_until
            .is_some_and(|t| Instant::now() < t);
        if self.max_size == 0 || !self.regular || paused {
            return data.len();
        }
        let room = self.max_size.saturating_sub(self.size) as usize;
        if data.len() <= room {
            return data.len();
        }
        match memchr::memrchr(b'\n', &data[..room]) {
            Some(nl) => nl + 1,
            None if self.size == 0 => memchr::memchr(b'\n', data).map_or(data.len(), |nl| nl + 1),
            None => 0,
        }
    }

    fn write_now(&mut self, data: &[u8]) -> Result<(), (usize, io::Error)> {
        let file = self.file().map_err(|e| (0, e))?;
        let mut written = 0;
        while written < data.len() {
            match file.write(&data[written..]) {
                Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((written, e)),
            }
        }
        self.size += written as u64;
        self.health
            .written
            .fetch_add(written as u64, std::sync::atomic::Ordering::Relaxed);
        if self.max_size > 0 && self.size >= self.max_size {
            self.rotate();
        }
        Ok(())
    }

    /// The open file, (re)opened if it was never opened, failed, or was
    /// deleted by hand; its size is re-read so truncation by others is seen.
    fn file(&mut self) -> io::Result<&mut File> {
        let stale = match &self.file {
            Some(f) => f.metadata().map(|m| m.nlink() == 0).unwrap_or(true),
            None => true,
        };
        if stale {
            let file = open_append(&self.path, self.owner)?;
            let meta = file.metadata()?;
            self.size = meta.len();
            self.regular = meta.is_file();
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// `file` → `file.1` → ... → `file.<keep>`, then a fresh `file`.
    fn rotate(&mut self) {
        if !self.regular {
            return; // /dev/null, a FIFO: nothing to rotate.
        }
        if self.keep == 0 {
            if let Some(f) = &self.file {
                let _ = f.set_len(0);
            }
            self.size = 0;
            return;
        }
        for n in (1..self.keep).rev() {
            let _ = fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
            let _ = fs::rename(
                gzipped(&rotated(&self.path, n)),
                gzipped(&rotated(&self.path, n + 1)),
            );
        }
        // Past the count: gone, compressed or not.
        let _ = fs::remove_file(gzipped(&rotated(&self.path, self.keep + 1)));
        if let Err(e) = fs::rename(&self.path, rotated(&self.path, 1)) {
            // Keep writing past the limit rather than lose lines; try again later.
            self.rotation_paused_until = Some(Instant::now() + ROTATION_RETRY);
            self.health.error = Some(format!(
                "cannot rotate {}: {e}; writing past --log-max-size",
                self.path.display()
            ));
            return;
        }
        self.rotation_paused_until = None;
        // The next write opens a fresh file.
        self.file = None;
        self.size = 0;
        if self.retention.compress {
            compress(&rotated(&self.path, 1));
        }
        if let Some(days) = self.retention.keep_days {
            self.expire(days);
        }
    }

    /// Deletes the rotated files older than `days` (never the live one).
    fn expire(&self, days: u32) {
        let max_age = std::time::Duration::from_secs(u64::from(days) * 86_400);
        for n in 1..=self.keep {
            for path in [rotated(&self.path, n), gzipped(&rotated(&self.path, n))] {
                let old = fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > max_age);
                if old {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

/// `<path>.gz`.
fn gzipped(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// Gzips `path` into `path.gz` (through a temporary name, so a reader
/// never sees half a file) and removes `path`; on any failure `path` stays
/// as it was. Fast compression: the writer thread waits for it.
fn compress(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = {
        let mut name = gzipped(path).into_os_string();
        name.push(".tmp");
        PathBuf::from(name)
    };
    let done = (|| -> io::Result<()> {
        let mut from = fs::File::open(path)?;
        let to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut gz = flate2::write::GzEncoder::new(to, flate2::Compression::fast());
        io::copy(&mut from, &mut gz)?;
        gz.finish()?.flush()?;
        // The rotated file's owner (the app's user) keeps it.
        let meta = from.metadata()?;
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
        fs::rename(&tmp, gzipped(path))
    })();
    match done {
        Ok(()) => {
            let _ = fs::remove_file(path);
        }
        Err(_) => {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// `<path>.<n>`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens a log file to append, never through a symbolic link: an existing
/// file must pass [`unfit_log_file`]; a missing one is created exclusively
/// (0600, given to `owner`), so nothing planted between the two steps is
/// ever opened.
fn open_append(path: &Path, owner: Option<(u32, u32)>) -> io::Result<File> {
    // Each turn loses a race only to a file appearing or vanishing at once.
    for _ in 0..3 {
        match open_existing(path, owner.map(|(uid, _)| uid)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        match open_flags(path, libc::O_CREAT | libc::O_EXCL) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A missing directory is created, as PM2 does for `out_file`
            // in `./logs/`; private to the user, like the files in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = path.parent().unwrap_or(Path::new("/"));
                sup_home::nofollow::create_dirs(dir, 0o700).map_err(|made| {
                    if sup_home::nofollow::is_link_refusal(&made) {
                        made
                    } else {
                        e
                    }
                })?;
            }
            Ok(file) => {
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
                }
                return Ok(file);
            }
            other => return other,
        }
    }
    Err(io::Error::other("it keeps appearing and vanishing"))
}

/// Opens an existing log file to append, after checking it is fit: the
/// daemon's, or the app's user's (`owner`).
fn open_existing(path: &Path, owner: Option<u32>) -> io::Result<File> {
    let uid = nix::unistd::geteuid().as_raw();
    let unfit = |meta: &fs::Metadata| {
        let why = unfit_log_file(meta, uid)?;
        owner.map_or(Some(why), |owner| unfit_log_file(meta, owner))
    };
    let file = open_flags(path, 0).map_err(|e| {
        // ELOOP: a link at the last component (say so in the policy's
        // words) or on the way.
        let why = fs::symlink_metadata(path)
            .ok()
            .filter(|_| sup_home::nofollow::is_link_refusal(&e))
            .and_then(|meta| unfit(&meta));
        why.map_or(e, refused)
    })?;
    match unfit(&file.metadata()?) {
        Some(why) => Err(refused(why)),
        None => Ok(file),
    }
}

/// Opens `path` to append, following no symbolic link in any component
/// (a directory link planted where the app's user can write must not steer
/// the daemon elsewhere).
fn open_flags(path: &Path, extra: libc::c_int) -> io::Result<File> {
    // Non-blocking: a FIFO nobody reads must not hang the writer.
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_NONBLOCK | extra;
    sup_home::nofollow::open(path, flags, 0o600, Last::NoLink).map_err(|e| {
        if sup_home::nofollow::is_link_refusal(&e) {
            refused(format!(
                "{} is, or runs through, a symbolic link that neither root nor the daemon's user owns",
                path.display()
            ))
        } else {
            e
        }
    })
}

fn refused(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, format!("refused: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sup-logfile-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotates_by_size_and_keeps_n() {
        let d = dir("rotate");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 10, 2);
        for i in 0..5 {
            log.append(format!("line-{i:04}\n").as_bytes()); // 10 bytes each
        }
        assert_eq!(
            fs::read_to_string(rotated(&path, 1)).unwrap(),
            "line-0004\n"
        );
        assert_eq!(
            fs::read_to_string(rotated(&path, 2)).unwrap(),
            "line-0003\n"
        );
        assert!(!rotated(&path, 3).exists());
        log.append(b"x\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "x\n");
        fs::remove_dir_all(d).unwrap();
    }

    fn gunzip(path: &Path) -> String {
        use std::io::Read;
        let mut text = String::new();
        flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn compressed_rotations_hold_every_line_and_old_ones_expire() {
        let d = dir("gzip");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 100, 3);
        log.set_retention(Retention {
            compress: true,
            keep_days: None,
        });
        let lines: Vec<String> = (0..40).map(|i| format!("line-{i:04}\n")).collect();
        for line in &lines {
            log.append(line.as_bytes());
        }
        assert!(!rotated(&path, 1).exists(), "only the .gz stays");
        let mut kept = String::new();
        for n in (1..=3).rev() {
            kept.push_str(&gunzip(&gzipped(&rotated(&path, n))));
        }
        kept.push_str(&fs::read_to_string(&path).unwrap_or_default());
        assert!(!gzipped(&rotated(&path, 4)).exists(), "three kept");
        let all = lines.concat();
        assert!(
            all.ends_with(&kept) && kept.len() >= 300,
            "the newest lines, none lost or cut"
        );
        // By age: a rotated file older than the limit goes at the next rotation.
        let old = gzipped(&rotated(&path, 2));
        let year_ago = std::time::SystemTime::now() - Duration::from_secs(365 * 86_400);
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(year_ago)
            .unwrap();
        log.set_retention(Retention {
            compress: true,
            keep_days: Some(30),
        });
        for line in &lines[..12] {
            log.append(line.as_bytes());
        }
        // The old .2.gz was shifted to .3.gz, then expired; the fresh ones stay.
        assert!(!gzipped(&rotated(&path, 3)).exists());
        assert!(gzipped(&rotated(&path, 1)).exists() && gzipped(&rotated(&path, 2)).exists());
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn rotation_happens_between_lines() {
        let d = dir("between");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 10, 5);
        log.append(b"aaaa\nbbbb\ncccc\nlong-line-xyz\nd\n");
        assert_eq!(
            fs::read_to_string(rotated(&path, 3)).unwrap(),
            "aaaa\nbbbb\n"
        );
        assert_eq!(fs::read_to_string(rotated(&path, 2)).unwrap(), "cccc\n");
        assert_eq!(
            fs::read_to_string(rotated(&path, 1)).unwrap(),
            "long-line-xyz\n"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "d\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_rotation_keeps_writing() {
        let d = dir("norotate");
        let path = d.join("a.log");
        // A directory where the first rotated copy should go: rename fails.
        fs::create_dir_all(rotated(&path, 1).join("x")).unwrap();
        let mut log = LogFile::new(path.clone(), 10, 1);
        for i in 0..5 {
            log.append(format!("line-{i:04}\n").as_bytes());
        }
        assert_eq!(
            fs::read_to_string(&path).unwrap().lines().count(),
            5,
            "no line lost"
        );
        assert!(log
            .health()
            .error
            .as_deref()
            .unwrap()
            .contains("cannot rotate"));
        assert_eq!(log.health().dropped, 0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_deleted_file_is_recreated() {
        let d = dir("deleted");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 0, 0);
        log.append(b"one\n");
        fs::remove_file(&path).unwrap();
        log.append(b"two\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn failures_buffer_then_drop_and_report() {
        let d = dir("fail");
        // The parent is a plain file: every open fails, and so does
        // creating the directory.
        fs::write(d.join("gone"), "").unwrap();
        let path = d.join("gone/a.log");
        let mut log = LogFile::new(path.clone(), 0, 0);
        let mut big = vec![b'x'; FAILURE_BUFFER - 10];
        *big.last_mut().unwrap() = b'\n';
        log.append(&big);
        // Room for the first of these lines only: the other two are dropped whole.
        log.append(b"yyyyyyyyy\nzzzzzzzzz\nzzzzzzzzz\n");
        assert_eq!(log.health().dropped, 20);
        assert!(log.health().error.as_deref().unwrap().contains("gone"));
        fs::remove_file(d.join("gone")).unwrap();
        fs::create_dir(d.join("gone")).unwrap();
        log.append(b"back\n");
        let text = fs::read_to_string(&path).unwrap();
        let note = text
            .find("[sup: 20 bytes dropped:")
            .expect("a note of the loss");
        assert!(
            text[..note].ends_with("x\nyyyyyyyyy\n"),
            "the buffered output comes first, whole lines only"
        );
        assert!(text.ends_with("]\nback\n"));
        assert_eq!(log.health().error, None);
        fs::remove_dir_all(d).unwrap();
    }

    /// A FIFO with a small pipe buffer and nobody reading is a sink that
    /// fills up like a disk: a write stops short, anywhere in a line, then
    /// fails (EAGAIN here, ENOSPC on a disk: the same path).
    #[test]
    fn a_full_sink_never_cuts_a_line_and_the_note_is_a_line() {
        use nix::fcntl::{fcntl, FcntlArg};
        use std::io::Read;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let d = dir("full");
        let path = d.join("a.fifo");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut reader = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let _ = fcntl(reader.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(4096));
        let line = |i: usize| format!("line {i:06} {}\n", "-".repeat(87)); // 100 bytes
        let lines = |range: std::ops::Range<usize>| range.map(line).collect::<String>();
        let mut log = LogFile::new(path.clone(), 0, 0);
        // More than the pipe holds, then more than the failure buffer holds.
        let first = 2_000;
        let total = first + FAILURE_BUFFER / 100 + 500;
        log.append(lines(0..first).as_bytes());
        log.append(lines(first..total).as_bytes());
        assert!(log.health().dropped > 0, "the sink was full");
        let mut got = Vec::new();
        let mut drain = |got: &mut Vec<u8>| {
            let mut buf = [0u8; 65536];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        };
        for _ in 0..100_000 {
            drain(&mut got);
            if !log.has_pending() {
                break;
            }
            log.retry();
        }
        assert!(!log.has_pending(), "the backlog drained");
        log.append(line(total).as_bytes());
        drain(&mut got);
        let text = String::from_utf8(got).unwrap();
        assert!(text.ends_with('\n'));
        let mut expected = 0;
        let mut notes = 0;
        for l in text.lines() {
            if let Some(note) = l.strip_prefix("[sup: ") {
                assert!(note.ends_with(']'), "the note is a whole line: {l:?}");
                notes += 1;
                let n: usize = note.split(' ').next().unwrap().parse().unwrap();
                assert_eq!(n % 100, 0, "whole lines dropped: {l}");
                expected += n / 100;
                continue;
            }
            assert_eq!(format!("{l}\n"), line(expected), "lines whole and in order");
            expected += 1;
        }
        assert_eq!(notes, 1);
        assert_eq!(expected, total + 1);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_idle_file_is_closed_and_the_next_line_opens_it_again() {
        let d = dir("idle");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 0, 0);
        log.append(b"one\n");
        let later = Instant::now() + Duration::from_secs(11);
        assert!(
            log.close_if_idle(Instant::now(), Duration::from_secs(10)),
            "not idle yet"
        );
        assert!(!log.close_if_idle(later, Duration::from_secs(10)), "closed");
        log.append(b"two\n");
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_directory_link_on_the_way_is_refused_and_nothing_is_made_behind_it() {
        let d = dir("dirlink");
        let private = d.join("private");
        fs::create_dir(&private).unwrap();
        let planted = d.join("planted");
        std::os::unix::fs::symlink(&private, &planted).unwrap();
        if !nix::unistd::geteuid().is_root() {
            // Only another user's link is refused; only root can plant one.
            return;
        }
        std::os::unix::fs::lchown(&planted, Some(65534), None).unwrap();
        for path in [
            d.join("planted").join("x.log"),
            d.join("planted").join("sub").join("x.log"),
        ] {
            let mut log = LogFile::new(path, 0, 0);
            log.append(b"line\n");
            let error = log.health().error.clone().unwrap();
            assert!(error.contains("symbolic link"), "{error}");
        }
        assert_eq!(fs::read_dir(&private).unwrap().count(), 0);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_planted_link_is_neither_written_nor_emptied() {
        let d = dir("link");
        let victim = d.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let path = d.join("a.log");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let mut log = LogFile::new(path.clone(), 0, 0);
        log.touch();
        log.append(b"line\n");
        log.truncate();
        let error = log.health().error.clone().unwrap();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        // A second hard link is refused the same way.
        fs::remove_file(&path).unwrap();
        fs::hard_link(&victim, &path).unwrap();
        let mut log = LogFile::new(path.clone(), 0, 0);
        log.append(b"line\n");
        log.truncate();
        assert!(log
            .health()
            .error
            .as_deref()
            .unwrap()
            .contains("hard links"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_new_file_is_private() {
        let d = dir("private");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 0, 0);
        log.append(b"x\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn truncate_empties_and_removes_rotated() {
        let d = dir("truncate");
        let path = d.join("a.log");
        let mut log = LogFile::new(path.clone(), 10, 3);
        log.append(b"0123456789");
        log.append(b"abc\n");
        assert!(rotated(&path, 1).exists());
        log.truncate();
        assert_eq!(fs::metadata(&path).unwrap().len(), 0);
        assert!(!rotated(&path, 1).exists());
        fs::remove_dir_all(d).unwrap();
    }
}
