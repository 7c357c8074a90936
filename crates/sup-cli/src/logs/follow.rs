//! Following log files as they grow, through rotation (the file is renamed
//! and a new one appears) and flush (the file is truncated). The kernel
//! says when something changed (inotify); nothing polls.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file being followed.
pub struct Followed {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
}

impl Followed {
    /// Starts following `path` from its current end.
    pub fn at_end(path: PathBuf) -> Followed {
        let mut f = Followed {
            path,
            file: None,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
        };
        if let Ok(file) = File::open(&f.path) {
            if let Ok(meta) = file.metadata() {
                f.ino = meta.ino();
                f.offset = meta.len();
                f.file = Some(file);
            }
        }
        f
    }

    /// The file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where reading goes on from.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// New whole lines since the last call.
    pub fn poll(&mut self) -> Vec<Vec<u8>> {
        let mut data = Vec::new();
        // What the old file got before it was renamed away comes first.
        self.read_rest(&mut data);
        match std::fs::metadata(&self.path) {
            Ok(meta) if self.file.is_none() || meta.ino() != self.ino => {
                if self.file.is_some() {
                    // Rotated, maybe more than once since we last looked:
                    // files newer than ours come first.
                    for path in newer_rotated(&self.path, self.ino) {
                        let _ = File::open(path).and_then(|mut f| f.read_to_end(&mut data));
                    }
                }
                if let Ok(file) = File::open(&self.path) {
                    self.ino = meta.ino();
                    self.offset = 0;
                    self.file = Some(file);
                    self.read_rest(&mut data);
                }
            }
            Ok(meta) if meta.len() < self.offset => {
                // Flushed: start again from the top.
                self.offset = 0;
                self.partial.clear();
                self.read_rest(&mut data);
            }
            _ => {}
        }
        self.partial.extend_from_slice(&data);
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_nl + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        whole[..whole.len() - 1]
            .split(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn read_rest(&mut self, out: &mut Vec<u8>) {
        let Some(file) = self.file.as_mut() else {
            return;
        };
        if file.seek(SeekFrom::Start(self.offset)).is_ok() {
            if let Ok(n) = file.read_to_end(out) {
                self.offset += n as u64;
            }
        }
    }
}

/// Rotated copies of `path` (`path.1`, `path.2`, ...) newer than the file
/// with inode `ino`, oldest first; all of them when that file is gone.
fn newer_rotated(path: &Path, ino: u64) -> Vec<PathBuf> {
    let mut newer = Vec::new();
    for n in 1..1000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let rotated = PathBuf::from(name);
        match std::fs::metadata(&rotated) {
            Ok(meta) if meta.ino() == ino => break,
            Ok(_) => newer.push(rotated),
            Err(_) => break,
        }
    }
    newer.reverse();
    newer
}

/// An inotify instance watching the directories of some files.
pub struct Watcher {
    fd: OwnedFd,
}

impl Watcher {
    /// Watches the parent directories of `paths`.
    pub fn new<'a>(paths: impl Iterator<Item = &'a Path>) -> io::Result<Watcher> {
        // SAFETY: inotify_init1 returns a new fd or -1.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mask = libc::IN_MODIFY
            | libc::IN_CREATE
            | libc::IN_MOVED_TO
            | libc::IN_MOVED_FROM
            | libc::IN_DELETE
            | libc::IN_ATTRIB;
        let dirs: HashSet<PathBuf> = paths
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        for dir in dirs {
            let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
            // SAFETY: a valid fd and NUL-terminated path.
            if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask) } < 0 {
                return Err(io::Error::other(format!(
                    "cannot watch {}: {}",
                    dir.display(),
                    io::Error::last_os_error()
                )));
            }
        }
        Ok(Watcher { fd })
    }

    /// Blocks until something changed in a watched directory.
    pub fn wait(&self) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into our own buffer.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_appends_rotation_and_truncation() {
        let dir = std::env::temp_dir().join(format!("sup-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut f = Followed::at_end(path.clone());
        let append = |s: &str| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .unwrap()
                .write_all(s.as_bytes())
                .unwrap();
        };
        append("one\ntw");
        assert_eq!(f.poll(), vec![b"one".to_vec()]);
        append("o\n");
        assert_eq!(f.poll(), vec![b"two".to_vec()]);
        // Rotation: a last line lands in the old file, then a new file appears.
        append("three\n");
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        append("four\n");
        assert_eq!(f.poll(), vec![b"three".to_vec(), b"four".to_vec()]);
        // Several rotations between two looks.
        append("five\n");
        std::fs::rename(dir.join("a.log.1"), dir.join("a.log.2")).unwrap();
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        append("six\n");
        std::fs::rename(dir.join("a.log.1"), dir.join("a.log.3")).unwrap();
        std::fs::rename(&path, dir.join("a.log.1")).unwrap();
        std::fs::rename(dir.join("a.log.3"), dir.join("a.log.2")).unwrap();
        append("seven\n");
        assert_eq!(
            f.poll(),
            vec![b"five".to_vec(), b"six".to_vec(), b"seven".to_vec()]
        );
        // Flush.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        assert!(f.poll().is_empty());
        append("five\n");
        assert_eq!(f.poll(), vec![b"five".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
