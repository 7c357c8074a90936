//! Waiting for a process group to be empty, off the event loop: its live
//! members are found by one pass over /proc on a blocking thread, then
//! their pidfds tell when each exits; the group is looked at again then,
//! since a member may have forked meanwhile.

use crate::procstat;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Back-off when a member was seen but no pidfd could be opened on it.
const RESCAN: Duration = Duration::from_millis(50);

/// Returns once no live (non-zombie) process is left in group `pgid`.
pub async fn until_empty(pgid: u32) {
    loop {
        let members = tokio::task::spawn_blocking(move || procstat::live_group_members(pgid))
            .await
            .unwrap_or_default();
        if members.is_empty() {
            return;
        }
        let pidfds: Vec<AsyncFd<OwnedFd>> = members
            .into_iter()
            .filter_map(pidfd_open)
            // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open
            // and the same for the AsyncFd's whole life.
            .filter_map(|fd| {
                unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
            })
            .collect();
        if pidfds.is_empty() {
            tokio::time::sleep(RESCAN).await;
        }
        // A pidfd turns readable when its process exits.
        for pidfd in &pidfds {
            let _ = pidfd.readable().await;
        }
    }
}

/// A pidfd on `pid`, or None if it is gone.
pub fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes no pointers; it returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a fresh fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
