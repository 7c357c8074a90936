//! The lock protocol on `SUP_HOME`.
//!
//! - `daemon.lock` is held by the running daemon for its whole life (an
//!   exclusive `flock`), so two daemons never run on one home; the daemon
//!   writes its pid in it. The kernel releases it as the daemon exits, so a
//!   CLI waiting for it (`sup kill`) learns the daemon is gone.
//! - `spawn.lock` is held by a CLI while it starts a daemon, so that racing
//!   CLIs start exactly one.

use crate::Home;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

/// Why the daemon lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another daemon holds it.
    #[error("a sup daemon is already running on this SUP_HOME (pid {0})")]
    Held(String),
    /// The lock file cannot be opened.
    #[error("cannot open lock file {path}")]
    Io {
        /// The lock file.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

impl Home {
    /// Takes the daemon lock without waiting and writes our pid in it. The
    /// lock lasts as long as the returned file is open.
    pub fn acquire_daemon_lock(&self) -> Result<File, LockError> {
        let path = self.daemon_lock();
        let io_err = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = open_lock_file(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(LockError::Held(holder.trim().to_string()));
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        write_daemon_pid(&file);
        Ok(file)
    }

    /// The pid the running daemon wrote into its lock file; after the daemon
    /// is gone, the last one's (or `None` if none ever ran).
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.daemon_lock())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits (up to `timeout`) until no daemon holds the daemon lock.
    /// Returns `false` on timeout.
    pub fn wait_daemon_unlocked(&self, timeout: Duration) -> io::Result<bool> {
        let lock = open_lock_file(&self.daemon_lock())?;
        let (tx, rx) = mpsc::channel();
        // `flock` has no timeout: wait in a thread, which (on timeout) the
        // caller leaves behind blocked until it exits.
        std::thread::spawn(move || {
            let _ = tx.send(lock.lock());
        });
        match rx.recv_timeout(timeout) {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Takes the spawn lock, waiting for the CLI that holds it (it is
    /// starting a daemon). Held until the returned file is dropped.
    pub fn lock_spawn(&self) -> io::Result<File> {
        let lock = open_lock_file(&self.spawn_lock())?;
        lock.lock()?;
        Ok(lock)
    }
}

/// Writes our pid into the daemon lock file, for the CLI (`sup kill`, the
/// timeout message) and error messages. The daemon calls it again after
/// `sup update`, whose exec keeps the lock but may not keep the pid.
pub fn write_daemon_pid(mut file: &File) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
}

/// Opens (creating it 0600) the file that serves as a lock. std opens every
/// file close-on-exec, so apps never inherit a lock.
fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(tag: &str) -> Home {
        let dir = std::env::temp_dir().join(format!("sup-lock-{tag}-{}", std::process::id()));
        let home = Home::at(dir);
        home.prepare().unwrap();
        home
    }

    #[test]
    fn second_acquire_fails_while_first_is_held() {
        let home = home("acquire");
        let held = home.acquire_daemon_lock().unwrap();
        match home.acquire_daemon_lock() {
            Err(LockError::Held(pid)) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(home.daemon_pid(), Some(std::process::id()));
        drop(held);
        home.acquire_daemon_lock().unwrap();
        std::fs::remove_dir_all(home.dir()).unwrap();
    }

    #[test]
    fn waiting_for_the_daemon_lock_times_out_then_succeeds() {
        let home = home("wait");
        let held = home.acquire_daemon_lock().unwrap();
        assert!(!home
            .wait_daemon_unlocked(Duration::from_millis(50))
            .unwrap());
        drop(held);
        assert!(home.wait_daemon_unlocked(Duration::from_secs(5)).unwrap());
        std::fs::remove_dir_all(home.dir()).unwrap();
    }
}
