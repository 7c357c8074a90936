//! The daemon lock: held for the daemon's whole life, so two daemons can
//! never run on one `SUP_HOME`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why the lock could not be taken.
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

/// Opens (creating it 0600, close-on-exec) the file that serves as a lock.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// Takes the daemon lock at `path` without waiting and writes our pid in it.
/// The lock lasts as long as the returned file is open.
pub fn acquire(path: &Path) -> Result<File, LockError> {
    let io_err = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = open_lock_file(path).map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(LockError::Held(holder.trim().to_string()));
        }
        Err(TryLockError::Error(e)) => return Err(io_err(e)),
    }
    write_pid(&file);
    Ok(file)
}

/// Writes our pid into the lock file, for `ping`-less tools and error messages.
pub fn write_pid(mut file: &File) {
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = writeln!(file, "{}", std::process::id());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_while_first_is_held() {
        let path = std::env::temp_dir().join(format!("sup-lock-test-{}", std::process::id()));
        let held = acquire(&path).unwrap();
        match acquire(&path) {
            Err(LockError::Held(pid)) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        acquire(&path).unwrap();
        std::fs::remove_file(path).unwrap();
    }
}
