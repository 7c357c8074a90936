//! Following log files as they grow, through rotation (the file is renamed
//! and a new one appears) and flush (the file is truncated). The kernel
//! says when something changed (inotify); nothing polls.

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file being followed.
pub struct Followed {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    offset: u64,
    partial: Vec<u8>,
    /// The file's first bytes, to notice it was emptied and refilled.
    head: Vec<u8>,
}

/// Bytes of a file's start remembered to notice a flush.
const HEAD_LEN: usize = 64;

impl Followed {
    /// Starts following `path` from its current end.
    pub fn at_end(path: PathBuf) -> Followed {
        let mut f = Followed {
            path,
            file: None,
            ino: 0,
            offset: 0,
            partial: Vec::new(),
            head: Vec::new(),
        };
        if let Ok(file) = File::open(&f.path) {
            if let Ok(meta) = file.metadata() {
                f.ino = meta.ino();
                f.offset = meta.len();
                f.file = Some(file);
                f.remember_head();
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
        if self.truncated() {
            // Flushed: start again from the top.
            self.offset = 0;
            self.partial.clear();
        }
        // What the old file got before it was renamed away comes first.
        self.read_rest(&mut data);
        if let Ok(current) = File::open(&self.path) {
            let ino = current.metadata().map(|m| m.ino()).unwrap_or(0);
            if self.file.is_none() || ino != self.ino {
                self.switch_to(current, ino, &mut data);
            }
        }
        self.remember_head();
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

    /// The file at our path is a new one (rotation, or it appeared): read
    /// the rotated copies newer than ours, then the new file from the top.
    fn switch_to(&mut self, current: File, ino: u64, data: &mut Vec<u8>) {
        if self.file.is_some() {
            for mut older in newer_rotated(&self.path, self.ino, ino) {
                let _ = older.read_to_end(data);
            }
        }
        self.ino = ino;
        self.offset = 0;
        self.head.clear();
        self.file = Some(current);
        self.read_rest(data);
    }

    /// Whether the file was emptied since we last read it: shorter than
    /// where we are, or its first bytes changed (emptied and written again
    /// past our offset before we looked; timestamps make lines differ).
    fn truncated(&mut self) -> bool {
        let Some(file) = self.file.as_mut() else {
            return false;
        };
        if file
            .metadata()
            .map(|m| m.len() < self.offset)
            .unwrap_or(false)
        {
            return true;
        }
        !self.head.is_empty() && read_head(file, self.head.len()) != self.head
    }

    fn remember_head(&mut self) {
        if let Some(file) = self.file.as_mut() {
            if self.head.len() < HEAD_LEN {
                self.head = read_head(file, HEAD_LEN);
            }
        }
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

/// Up to `len` bytes from the start of `file`.
fn read_head(file: &mut File, len: usize) -> Vec<u8> {
    let mut head = vec![0u8; len];
    let n = std::os::unix::fs::FileExt::read_at(file, &mut head, 0).unwrap_or(0);
    head.truncate(n);
    head
}

/// The rotated copies of `path` (`path.1`, `path.2`, ...) newer than the
/// file with inode `ours`, opened, oldest first (all of them when ours is
/// gone). Opened before reading and told apart by inode, so a rotation
/// while we look cannot make us read a file twice; `current` (the new file
/// at `path`) is left out. A rotation shifts the copies up one rename at a
/// time, so while one runs a single number may be missing: only two
/// missing in a row end the copies.
fn newer_rotated(path: &Path, ours: u64, current: u64) -> Vec<File> {
    let mut seen = vec![current];
    let mut newer = Vec::new();
    let mut missing = 0;
    for n in 1..1000 {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let Ok(file) = File::open(PathBuf::from(name)) else {
            missing += 1;
            if missing == 2 {
                break;
            }
            continue;
        };
        missing = 0;
        let Ok(ino) = file.metadata().map(|m| m.ino()) else {
            break;
        };
        if ino == ours {
            break;
        }
        if !seen.contains(&ino) {
            seen.push(ino);
            newer.push(file);
        }
    }
    newer.reverse();
    newer
}

/// An inotify instance watching the directories of some files.
pub struct Watcher {
    inotify: Inotify,
}

impl Watcher {
    /// Watches the parent directories of `paths`.
    pub fn new<'a>(paths: impl Iterator<Item = &'a Path>) -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
        let mask = AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB;
        let dirs: HashSet<PathBuf> = paths
            .filter_map(|p| p.parent().map(Path::to_path_buf))
            .collect();
        for dir in dirs {
            inotify.add_watch(&dir, mask).map_err(|e| {
                io::Error::other(format!("cannot watch {}: {}", dir.display(), e.desc()))
            })?;
        }
        Ok(Watcher { inotify })
    }

    /// Blocks until something changed in a watched directory (at once when
    /// [`Watcher`]'s descriptor is readable).
    pub fn wait(&self) -> io::Result<()> {
        loop {
            match self.inotify.read_events() {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl std::os::fd::AsFd for Watcher {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_caught_halfway_loses_no_copy() {
        let dir = std::env::temp_dir().join(format!("sup-follow-gap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let at = |n: u32| dir.join(format!("a.log.{n}"));
        std::fs::write(&path, "old\n").unwrap();
        let mut f = Followed::at_end(path.clone());
        let append = |p: &Path, s: &str| {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .unwrap();
            file.write_all(s.as_bytes()).unwrap();
        };
        append(&path, "a\n");
        std::fs::rename(&path, at(1)).unwrap();
        append(&path, "b\n");
        std::fs::rename(at(1), at(2)).unwrap();
        std::fs::rename(&path, at(1)).unwrap();
        append(&path, "c\n");
        // A third rotation, halfway: `.1` is gone, `a.log` not moved yet.
        std::fs::rename(at(2), at(3)).unwrap();
        std::fs::rename(at(1), at(2)).unwrap();
        assert_eq!(f.poll(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
        // Flushed and written again past the old end before we look.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        append("a line longer than all the file held before\n");
        assert_eq!(
            f.poll(),
            vec![b"a line longer than all the file held before".to_vec()]
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
