//! The layout of `SUP_HOME`, the one directory holding every file of sup's,
//! as both the CLI and the daemon see it: every path, the lock protocol
//! between them, what counts as "the last daemon died uncleanly", and where
//! the running daemon's pid is found.
//!
//! Neither side derives a path or opens a lock any other way, so the two
//! always agree on the layout.

mod home;
mod lock;
pub mod nofollow;
mod unit;

pub use home::{app_log_in, backup_of, is_live_state_file, log_stem, Home, HomeError, LogStream};
pub use lock::{write_daemon_pid, LockError};
pub use unit::ManagingUnit;

/// Exit code of `sup daemon` when another daemon already holds the lock on
/// the home: the systemd unit lists it in `RestartPreventExitStatus=`, so a
/// unit never loops on a busy lock.
pub const EXIT_ALREADY_RUNNING: i32 = 75;
