//! What instances leave behind: the sweep after a stop, the quick-exit
//! check's scan, strays at shutdown, and the orphans of a dead daemon.
//!
//! In cgroup mode an instance's leftovers are its cgroup's members, known
//! at once. In tag mode they come from a scan off the loop
//! ([`crate::ownership::tags`]); [`Supervisor::unaccounted`] then drops
//! what the live table accounts for, and only the rest is signalled,
//! through the pidfds the scan opened.

use super::{Msg, Supervisor};
use crate::groupwatch::pidfd_open;
use crate::lifecycle::ExitKind;
use crate::machine::stop_signal;
use crate::ownership::tags::{self, Candidate, Scope};
use crate::ownership::{cgroup, pidfd_signal};
use crate::persist::SavedApp;
use crate::procstat::read_stat;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};
use sup_proto::AppSpec;
use tracing::warn;

/// Kill timeout for a process whose app the state file does not know.
const DEFAULT_KILL_TIMEOUT: Duration =
    Duration::from_millis(sup_proto::spec::DEFAULT_KILL_TIMEOUT_MS);

/// Longest time startup waits for a dead daemon's apps to stop.
const ORPHAN_STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long startup waits for an orphan after SIGKILL.
const ORPHAN_KILL_WAIT: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Scans for tagged processes in `scope` on a blocking thread, then
    /// posts `then(candidates)` to the loop.
    pub(super) fn scan_then<F>(&self, scope: Scope, then: F)
    where
        F: FnOnce(Vec<Candidate>) -> Msg + Send + 'static,
    {
        let home = self.home.dir().to_path_buf();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let scan = tokio::task::spawn_blocking(move || tags::scan(&home, scope));
            let _ = tx.send(then(scan.await.unwrap_or_default()));
        });
    }

    /// The candidates the live table does not account for: not an indexed
    /// process (an instance, a probe, a hook), nor in the group of one, nor
    /// in the group of any instance that still lives.
    pub(super) fn unaccounted(&self, found: Vec<Candidate>) -> Vec<Candidate> {
        let live: HashSet<u32> = self
            .table
            .iter()
            .flat_map(|app| {
                let m = &app.machine;
                let slots = m
                    .slots()
                    .iter()
                    .filter_map(|(_, s)| s.process().map(|p| p.pid));
                let incoming = m.incoming().map(|p| p.pid);
                slots
                    .chain(incoming)
                    .chain(m.retired_pids())
                    .collect::<Vec<_>>()
            })
            .collect();
        found
            .into_iter()
            .filter(|c| {
                self.table.role_of(c.pid).is_none()
                    && self.table.role_of(c.pgrp).is_none()
                    && !live.contains(&c.pgrp)
            })
            .collect()
    }

    /// The scan of a quick exit is back: tell the exit, with what it left.
    pub(super) fn quick_exit(&mut self, id: u32, pid: u32, exit: ExitKind, found: Vec<Candidate>) {
        let escaped = self.unaccounted(found).first().map(|c| c.pid);
        self.exited(id, pid, exit, escaped);
    }

    /// The user stopped instance `slot` of app `id`: what it left gets the
    /// app's stop signal, then SIGKILL after its kill timeout. `pid` is the
    /// last process the slot still keeps, whose group (or cgroup) lives on.
    pub(super) fn stop_leftovers(&mut self, id: u32, slot: usize, pid: Option<u32>) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        let (sig, after) = (
            stop_signal(&app.spec),
            Duration::from_millis(app.spec.kill_timeout_ms),
        );
        if let Some(pid) = pid.filter(|p| self.owner.has_processes(*p)) {
            self.owner.signal(pid, sig);
            self.after(after, Msg::KillLeftover { app: id, slot, pid });
        }
        if self.owner.by_tags() {
            let scope = Scope::Instance {
                app: id,
                index: slot as u32,
            };
            self.scan_then(scope, move |found| Msg::Leftovers { app: id, found });
        }
    }

    /// A stop sweep's scan is back: the stop signal now, SIGKILL later.
    pub(super) fn leftovers_found(&mut self, id: u32, found: Vec<Candidate>) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        let (sig, after) = (
            stop_signal(&app.spec),
            Duration::from_millis(app.spec.kill_timeout_ms),
        );
        for c in self.unaccounted(found) {
            warn!(app = %app.spec.name, pid = c.pid, "stopping a process the app left outside its group");
            pidfd_signal(&c.pidfd, sig as i32);
            self.after(after, Msg::StrayDeadline { pidfd: c.pidfd });
        }
    }

    /// The kill timeout of what a stopped slot kept ran out.
    pub(super) fn kill_leftover(&mut self, id: u32, slot: usize, pid: u32) {
        let kept = self.table.get(id).is_some_and(|app| {
            app.machine.slots().has(slot)
                && app.machine.slots()[slot].process().map(|p| p.pid) == Some(pid)
        });
        if kept {
            self.owner.kill(pid);
        }
    }

    /// At the end of a shutdown: nothing the apps started is left running.
    /// In cgroup mode every leaf is killed and removed; in tag mode what
    /// carries the apps' tags outside their groups is stopped.
    pub(super) fn stop_strays(&mut self) {
        if self.owner.by_tags() {
            self.stop_orphans(&[]);
        }
        self.owner.finish();
    }

    /// Stops everything a dead daemon left running, so that no app runs
    /// twice and no orphan keeps a port: the instances it recorded (checked
    /// by pid and start time, so a reused pid is never hit), and every
    /// other process of its apps: the members of the cgroups it left, or
    /// in tag mode every process carrying its apps' tags. Each gets its
    /// app's stop signal, then SIGKILL after its kill timeout (at most 10
    /// s), through a pidfd; group leaders with their group. All at once.
    pub(super) fn stop_orphans(&mut self, apps: &[SavedApp]) {
        let spec_of = |id: u32| apps.iter().find(|a| a.id == id).map(|a| &a.spec);
        let mut orphans: Vec<Orphan> = apps
            .iter()
            .filter_map(|app| {
                let i = app.instance?;
                Orphan::pin(
                    pidfd_open(i.pid)?,
                    i.pid,
                    Some(i.start_time),
                    Some(&app.spec),
                )
            })
            .collect();
        let stale = self.owner.stale();
        let tagged = match self.owner.by_tags() {
            true => tags::scan(self.home.dir(), Scope::All),
            false => Vec::new(),
        };
        let found = stale
            .iter()
            .flat_map(|(app, pids, dir)| {
                pids.iter().filter_map(|&p| {
                    let pidfd = pidfd_open(p).filter(|_| cgroup::is_member(p, dir))?;
                    Some((*app, p, pidfd))
                })
            })
            .chain(tagged.into_iter().map(|c| (c.app, c.pid, c.pidfd)));
        for (app, pid, pidfd) in found {
            if !orphans.iter().any(|o| o.pid == pid) {
                orphans.extend(Orphan::pin(pidfd, pid, None, spec_of(app)));
            }
        }
        for o in &orphans {
            warn!(
                pid = o.pid,
                "stopping a process the dead daemon left running"
            );
            o.signal(o.signal);
        }
        wait_out(orphans);
        let dirs: Vec<_> = stale.into_iter().map(|(_, _, dir)| dir).collect();
        cgroup::remove_leaves(&dirs);
    }
}

/// A process left running, pinned by a pidfd.
struct Orphan {
    pidfd: OwnedFd,
    pid: u32,
    signal: i32,
    deadline: Instant,
    /// SIGKILL was sent; `deadline` is then the end of the wait for it.
    killed: bool,
}

impl Orphan {
    /// Pins `pid` (by `pidfd`, opened before this check) if it is still
    /// the process we mean: alive, and started at `start_time` when that
    /// is known.
    fn pin(
        pidfd: OwnedFd,
        pid: u32,
        start_time: Option<u64>,
        spec: Option<&AppSpec>,
    ) -> Option<Orphan> {
        if pid == std::process::id() {
            return None;
        }
        let now = read_stat(pid)?.start_time;
        if start_time.is_some_and(|t| t != now) {
            return None;
        }
        let signal = spec
            .map_or(sup_proto::spec::DEFAULT_STOP_SIGNAL, |s| s.stop_signal)
            .number();
        let timeout = spec.map_or(DEFAULT_KILL_TIMEOUT, |s| {
            Duration::from_millis(s.kill_timeout_ms)
        });
        Some(Orphan {
            pidfd,
            pid,
            signal,
            deadline: Instant::now() + timeout.min(ORPHAN_STOP_LIMIT),
            killed: false,
        })
    }

    /// Signals it, and its whole group when it leads one.
    fn signal(&self, sig: i32) {
        pidfd_signal(&self.pidfd, sig);
        if read_stat(self.pid).map(|s| s.pgrp) == Some(self.pid) {
            // A group whose leader the pidfd pins alive.
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = killpg(Pid::from_raw(self.pid as i32), sig);
            }
        }
    }
}

/// Waits for every orphan to exit, SIGKILL after its deadline: the wait is
/// the longest kill timeout, not their sum.
fn wait_out(mut left: Vec<Orphan>) {
    while let Some(deadline) = left.iter().map(|o| o.deadline).min() {
        let exited = wait_any(&left, deadline.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        left.retain(|o| !exited.contains(&o.pid));
        for o in left.iter_mut().filter(|o| o.deadline <= now) {
            o.signal(libc::SIGKILL);
            o.deadline = now + ORPHAN_KILL_WAIT;
            o.killed = true;
        }
        if left.iter().all(|o| o.killed && o.deadline <= now) {
            break;
        }
    }
}

/// Waits up to `timeout` until at least one of `orphans` exits (its pidfd
/// turns readable); returns the pids of those that did.
fn wait_any(orphans: &[Orphan], timeout: Duration) -> Vec<u32> {
    let mut pfds: Vec<libc::pollfd> = orphans
        .iter()
        .map(|o| libc::pollfd {
            fd: o.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfds` is a valid array of pollfds of the given length.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    orphans
        .iter()
        .zip(&pfds)
        .filter(|(_, p)| p.revents != 0)
        .map(|(o, _)| o.pid)
        .collect()
}
