//! The daemon's one reaper. As a child subreaper the daemon inherits every
//! orphaned descendant of its apps, so it collects every exit status here,
//! and nowhere else, and routes each by pid.

use crate::lifecycle::ExitKind;
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

/// Makes this process a child subreaper: orphaned descendants of its apps
/// (double-forked daemons) are re-parented to it, so it can reap them.
pub fn become_subreaper() -> std::io::Result<()> {
    Ok(nix::sys::prctl::set_child_subreaper(true)?)
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
