//! Live copies of log lines for whoever watches (the dashboard's log
//! panel). The writer offers every block it appends; with nobody watching
//! that costs one atomic load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Blocks a watcher may fall behind by before its copies are dropped: a
/// live view may lose lines, the files never do.
const BACKLOG: usize = 256;

/// A block of lines as written to one file.
#[derive(Debug)]
pub struct Tapped {
    /// Which of the watched files (its index in [`Taps::watch`]'s list).
    pub file: usize,
    /// The lines, as they went to the file.
    pub data: Vec<u8>,
}

/// The watchers of log files, shared by the writer and the web listener.
#[derive(Clone, Default)]
pub struct Taps(Arc<Inner>);

/// A watcher of one file: the file's index in its list, and where copies go.
type Watcher = (usize, mpsc::Sender<Tapped>);

#[derive(Default)]
struct Inner {
    watchers: AtomicUsize,
    by_path: Mutex<HashMap<PathBuf, Vec<Watcher>>>,
}

impl Taps {
    /// Copies of what is appended to `paths` from now on, until the
    /// receiver is dropped.
    pub fn watch(&self, paths: &[PathBuf]) -> mpsc::Receiver<Tapped> {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let mut map = self.0.by_path.lock().expect("taps lock");
        for (file, path) in paths.iter().enumerate() {
            map.entry(path.clone())
                .or_default()
                .push((file, tx.clone()));
            self.0.watchers.fetch_add(1, Ordering::Relaxed);
        }
        rx
    }

    /// Offers `data`, just appended to `path`, to its watchers.
    pub fn offer(&self, path: &Path, data: &[u8]) {
        if self.0.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.0.by_path.lock().expect("taps lock");
        let Some(watchers) = map.get_mut(path) else {
            return;
        };
        let before = watchers.len();
        watchers.retain(|(file, tx)| {
            let copy = Tapped {
                file: *file,
                data: data.to_vec(),
            };
            !matches!(tx.try_send(copy), Err(mpsc::error::TrySendError::Closed(_)))
        });
        let gone = before - watchers.len();
        if watchers.is_empty() {
            map.remove(path);
        }
        self.0.watchers.fetch_sub(gone, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_get_their_files_and_leave_when_dropped() {
        let taps = Taps::default();
        let (a, b) = (PathBuf::from("/l/a.log"), PathBuf::from("/l/b.log"));
        taps.offer(&a, b"nobody\n");
        let mut rx = taps.watch(&[a.clone(), b.clone()]);
        taps.offer(&b, b"two\n");
        taps.offer(&PathBuf::from("/l/c.log"), b"other\n");
        let got = rx.try_recv().unwrap();
        assert_eq!((got.file, got.data.as_slice()), (1, &b"two\n"[..]));
        assert!(rx.try_recv().is_err());
        drop(rx);
        taps.offer(&a, b"x\n");
        taps.offer(&b, b"x\n");
        assert_eq!(taps.0.watchers.load(Ordering::Relaxed), 0);
        assert!(taps.0.by_path.lock().unwrap().is_empty());
    }
}
