//! The log writer thread: the only code that writes app logs. Readers on
//! the event loop send it chunks; it cuts them into lines, stamps them and
//! appends them, so a slow disk never stalls supervision.

use super::file::{Health, LogFile};
use super::lines::{cut, finish, Console, Partial, Stamper, Style};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sup_proto::datefmt::DateFormat;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Largest output buffer kept between chunks (a long line may need more,
/// once; quiet apps should not pay for it).
const MAX_KEPT_BUFFER: usize = 1024 * 1024;

/// How often failed writes are retried while nothing else arrives.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// A log file nobody wrote to for this long is closed, and opened again at
/// its next line: a thousand quiet apps hold no log fds, and every spawn's
/// exec (which closes each fd the daemon holds) has fewer to close.
const CLOSE_IDLE_AFTER: Duration = Duration::from_secs(10);

/// Where one stream's lines go, and how they look.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The file.
    pub path: PathBuf,
    /// Prefix lines with their arrival time.
    pub timestamps: bool,
    /// Rotate past this size (0: never).
    pub max_size: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Rotated files gzipped, and deleted past so many days.
    pub retention: super::file::Retention,
    /// The uid and gid new files get: the app's user, when it runs as
    /// another (None: the daemon's).
    pub owner: Option<(u32, u32)>,
    /// A file that gets every line too: PM2's `log_file` beside its
    /// `out_file` and `error_file`.
    pub tee: Option<Arc<Target>>,
    /// PM2's `log_date_format`: the timestamp in its tokens.
    pub date_format: Option<DateFormat>,
    /// `sup run`: lines go to the daemon's own stdout or stderr, not to a
    /// file (`path` is then only a name).
    pub console: Option<Console>,
    /// `sup run --log-files`: the console gets every line besides the file.
    pub twin: Option<Arc<Target>>,
    /// `--log-format json`: the file's lines are JSON objects, labelled
    /// as this says.
    pub json: Option<Console>,
}

impl Target {
    /// Every line would be thrown away: the file is `/dev/null`, and no
    /// console or second file gets the lines (so neither `sup logs -f`
    /// nor the dashboard would show them).
    pub fn discards(&self) -> bool {
        self.console.is_none()
            && self.twin.is_none()
            && self.path == std::path::Path::new("/dev/null")
            && self.tee.as_ref().is_none_or(|t| t.discards())
    }
}

/// A message for the writer.
pub enum WriterMsg {
    /// Bytes read from a source at `at_ms`. The permit returns to the reader
    /// once they are written: that is the back-pressure.
    Chunk {
        /// Destination.
        target: Arc<Target>,
        /// Which stream of which instance (partial lines are kept per source).
        source: u64,
        /// Arrival, milliseconds since the epoch.
        at_ms: i64,
        /// The bytes.
        data: Vec<u8>,
        /// Released when written.
        permit: OwnedSemaphorePermit,
    },
    /// Tag the lines of `source` with an instance index (or stop tagging).
    Tag {
        /// The source.
        source: u64,
        /// The instance index.
        tag: Option<u16>,
    },
    /// Continue `source` with an unfinished line (handed over by `sup update`).
    Seed {
        /// The source.
        source: u64,
        /// The unfinished line.
        partial: Partial,
    },
    /// A source ended: write out its unfinished line.
    End {
        /// Destination.
        target: Arc<Target>,
        /// The source.
        source: u64,
    },
    /// Create these files if they don't exist, so `sup logs` finds them.
    Open {
        /// The files.
        targets: Vec<Arc<Target>>,
    },
    /// Empty these files (and their rotated copies).
    Truncate {
        /// The files.
        targets: Vec<Arc<Target>>,
        /// Answered when done.
        done: oneshot::Sender<()>,
    },
    /// The app is gone: close these files.
    Close {
        /// The files.
        paths: Vec<PathBuf>,
    },
}

/// File health shared with the supervisor, by path.
/// Keyed by the path's bytes: `list` looks up every app's files, and a
/// `Path` hashes component by component.
pub type HealthMap = Arc<Mutex<HashMap<std::ffi::OsString, Health, PathHash>>>;

/// FNV-1a for the health map's keys: paths are short and the daemon's own
/// (no one can choose them to collide on purpose), and SipHash was a fifth
/// of a `list` at 1,000 apps.
#[derive(Default, Clone, Copy)]
pub struct PathHash;

impl std::hash::BuildHasher for PathHash {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

/// The FNV-1a state.
pub struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The writer's state.
pub struct Writer {
    files: HashMap<PathBuf, LogFile>,
    partials: HashMap<u64, Partial>,
    tags: HashMap<u64, u16>,
    stamper: Stamper,
    health: HealthMap,
    offset: (i64, i32),
    out: Vec<u8>,
    /// A file may be open (none is once a sweep found them all closed).
    any_open: bool,
    /// When idle files were last closed.
    swept: std::time::Instant,
    /// Whoever watches lines live.
    taps: super::Taps,
}

impl Writer {
    /// A writer that publishes file health into `health` and offers its
    /// lines to `taps`.
    pub fn new(health: HealthMap, taps: super::Taps) -> Writer {
        Writer {
            files: HashMap::new(),
            partials: HashMap::new(),
            tags: HashMap::new(),
            stamper: Stamper::default(),
            health,
            offset: (i64::MIN, 0),
            out: Vec::new(),
            any_open: false,
            swept: std::time::Instant::now(),
            taps,
        }
    }

    /// Closes the files idle for [`CLOSE_IDLE_AFTER`], at most that often.
    fn close_idle(&mut self) {
        let now = std::time::Instant::now();
        if now.saturating_duration_since(self.swept) < CLOSE_IDLE_AFTER {
            return;
        }
        self.swept = now;
        let mut open = false;
        for file in self.files.values_mut() {
            open |= file.close_if_idle(now, CLOSE_IDLE_AFTER);
        }
        self.any_open = open;
    }

    /// Handles messages until every sender is gone; returns the unfinished
    /// lines of sources that never ended (detached for `sup update`).
    pub fn run(mut self, rx: Receiver<WriterMsg>) -> HashMap<u64, Partial> {
        loop {
            // A timer only while a write failed or a file is open.
            let wait = if self.files.values().any(LogFile::has_pending) {
                Some(RETRY_EVERY)
            } else if self.any_open {
                Some(CLOSE_IDLE_AFTER)
            } else {
                None
            };
            let msg = match wait {
                Some(wait) => match rx.recv_timeout(wait) {
                    Ok(msg) => Some(msg),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return self.partials,
                },
                None => match rx.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => return self.partials,
                },
            };
            self.close_idle();
            match msg {
                Some(msg) => {
                    self.any_open = true;
                    self.handle(msg)
                }
                None => self.retry_all(),
            }
        }
    }

    /// Handles one message.
    pub fn handle(&mut self, msg: WriterMsg) {
        match msg {
            WriterMsg::Chunk {
                target,
                source,
                at_ms,
                data,
                permit,
            } => {
                self.chunk(&target, source, at_ms, &data);
                if let Some(twin) = &target.twin {
                    self.chunk(twin, source | TWIN, at_ms, &data);
                }
                drop((data, permit));
            }
            WriterMsg::Tag { source, tag } => match tag {
                Some(tag) => {
                    self.tags.insert(source, tag);
                }
                None => {
                    self.tags.remove(&source);
                }
            },
            WriterMsg::Seed { source, partial } => {
                self.partials.insert(source, partial);
            }
            WriterMsg::End { target, source } => {
                self.end(&target, source);
                if let Some(twin) = &target.twin {
                    self.end(twin, source | TWIN);
                }
                self.tags.remove(&source);
            }
            WriterMsg::Open { targets } => {
                for target in targets {
                    self.file(&target).touch();
                    self.publish_file(&target.path);
                }
            }
            WriterMsg::Truncate { targets, done } => {
                for target in targets {
                    self.file(&target).truncate();
                    self.publish_file(&target.path);
                }
                let _ = done.send(());
            }
            WriterMsg::Close { paths } => {
                for path in paths {
                    self.files.remove(&path);
                    self.health
                        .lock()
                        .expect("health lock")
                        .remove(path.as_os_str());
                }
            }
        }
    }

    /// Cuts `data` of `source` into lines for `target` and appends them.
    fn chunk(&mut self, target: &Target, source: u64, at_ms: i64, data: &[u8]) {
        let style = self.style(target, at_ms, source);
        let partial = self.partials.entry(source).or_default();
        // One output buffer, reused: no fresh pages for every chunk.
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        cut(partial, data, at_ms, style, &mut self.stamper, &mut out);
        self.append(target, &out);
        if let Some(tee) = &target.tee {
            self.append(tee, &out);
        }
        if out.capacity() <= MAX_KEPT_BUFFER {
            self.out = out;
        }
    }

    /// `source` ended: its unfinished line is written out.
    fn end(&mut self, target: &Target, source: u64) {
        let style = self.style(target, now_ms(), source);
        if let Some(mut partial) = self.partials.remove(&source) {
            let mut out = Vec::new();
            finish(&mut partial, style, &mut self.stamper, &mut out);
            self.append(target, &out);
            if let Some(tee) = &target.tee {
                self.append(tee, &out);
            }
        }
    }

    fn style<'t>(&mut self, target: &'t Target, at_ms: i64, source: u64) -> Style<'t> {
        // The local offset changes at most twice a year: look it up once a minute.
        if self.offset.0 != at_ms / 60_000 {
            self.offset = (at_ms / 60_000, local_offset(at_ms));
        }
        Style {
            timestamps: target.timestamps,
            offset_s: self.offset.1,
            tag: self.tags.get(&(source & !TWIN)).copied(),
            format: target.date_format.as_ref(),
            console: target.console.as_ref().or(target.json.as_ref()),
        }
    }

    fn file(&mut self, target: &Target) -> &mut LogFile {
        if !self.files.contains_key(&target.path) {
            let file = LogFile::new(target.path.clone(), target.max_size, target.keep);
            // Published at once: its count of bytes written is live from now.
            self.publish(&target.path, file.health().clone());
            self.files.insert(target.path.clone(), file);
        }
        let file = self.files.get_mut(&target.path).expect("just inserted");
        // An app re-added under the same name may rotate differently.
        file.set_limits(target.max_size, target.keep);
        file.set_retention(target.retention);
        file.set_owner(target.owner);
        file
    }

    fn append(&mut self, target: &Target, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        if let Some(console) = &target.console {
            return write_console(console, out);
        }
        self.taps.offer(&target.path, out);
        let file = self.file(target);
        let before = file.health().clone();
        file.append(out);
        let after = file.health().clone();
        if before != after {
            self.publish(&target.path, after);
        }
    }

    fn retry_all(&mut self) {
        let mut changed = Vec::new();
        for (path, file) in self.files.iter_mut().filter(|(_, f)| f.has_pending()) {
            file.retry();
            changed.push((path.clone(), file.health().clone()));
        }
        for (path, health) in changed {
            self.publish(&path, health);
        }
    }

    /// Publishes the health of one open file.
    fn publish_file(&self, path: &Path) {
        if let Some(file) = self.files.get(path) {
            self.publish(path, file.health().clone());
        }
    }

    fn publish(&self, path: &Path, health: Health) {
        if let Some(err) = &health.error {
            tracing::warn!(
                "log write failing: {err} ({} dropped so far)",
                crate::plural::count(health.dropped, "byte")
            );
        }
        self.health
            .lock()
            .expect("health lock")
            .insert(path.as_os_str().to_owned(), health);
    }
}

/// The bit that tells a source's console twin from the source itself (ids
/// count up from 1 and never reach it).
const TWIN: u64 = 1 << 63;

/// Writes lines to the daemon's own stdout or stderr (`sup run`): what the
/// container runtime collects. A failure loses those lines only.
fn write_console(console: &Console, out: &[u8]) {
    use std::io::Write;
    let _ = if console.stream == "err" {
        std::io::stderr().lock().write_all(out)
    } else {
        std::io::stdout().lock().write_all(out)
    };
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds east of UTC of local time at `at_ms`.
fn local_offset(at_ms: i64) -> i32 {
    let t = (at_ms / 1000) as libc::time_t;
    // SAFETY: localtime_r fills the zeroed struct we own.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff as i32
    }
}
