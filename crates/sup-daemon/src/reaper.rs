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

/// Exits of children the supervisor does not know (a helper run with
/// `std::process::Command`, whose own wait then finds ECHILD), kept for
/// [`wait_foreign`]; a few only, the newest.
static UNCLAIMED: std::sync::Mutex<Vec<(u32, ExitKind)>> = std::sync::Mutex::new(Vec::new());

/// Keeps the exit of a child the supervisor does not know.
pub fn unclaimed(pid: u32, exit: ExitKind) {
    let mut kept = UNCLAIMED.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= 64 {
        kept.remove(0);
    }
    kept.push((pid, exit));
}

/// Waits for `child`, a helper process the daemon runs: the reaper may
/// have collected it first (it takes every child), then its exit is read
/// from what the reaper kept. Blocking: for a blocking thread.
pub fn wait_foreign(child: &mut std::process::Child) -> std::io::Result<ExitKind> {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match child.wait() {
            Ok(status) => {
                return Ok(match status.signal() {
                    Some(sig) => ExitKind::Signal(sig),
                    None => ExitKind::Code(status.code().unwrap_or(0)),
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                let kept = UNCLAIMED.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, exit)) = kept.iter().find(|(p, _)| *p == pid) {
                    return Ok(*exit);
                }
                if std::time::Instant::now() > deadline {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        // Reaped, but not yet kept: the loop is on its way.
        std::thread::sleep(std::time::Duration::from_millis(5));
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
