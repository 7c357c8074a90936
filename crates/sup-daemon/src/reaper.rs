//! The daemon's one reaper. As a child subreaper the daemon inherits every
//! orphaned descendant of its apps, so it collects every exit status here,
//! and nowhere else, and routes each by pid.

use crate::lifecycle::ExitKind;
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Makes this process a child subreaper: orphaned descendants of its apps
/// (double-forked daemons) are re-parented to it, so it can reap them.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Collects every child that has exited, without blocking.
pub fn reap_all() -> Vec<(u32, ExitKind)> {
    let mut exits = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                exits.push((pid.as_raw() as u32, ExitKind::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                exits.push((pid.as_raw() as u32, ExitKind::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    exits
}
