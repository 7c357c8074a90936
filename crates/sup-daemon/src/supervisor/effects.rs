//! Routing inputs to an app's machine and carrying out the effects it
//! returns; reaping, which turns exits into inputs.

use super::table::Role;
use super::{Msg, Supervisor};
use crate::lifecycle::ExitKind;
use crate::machine::{Effect, Input};
use crate::ownership::tags::Scope;
use crate::ownership::Leftover;
use crate::reaper;
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::Instant;
use tracing::info;

impl Supervisor {
    /// Feeds `input` to app `id`'s machine and carries out its effects,
    /// which may answer with inputs of their own (a spawn reports its
    /// outcome), until none is left.
    pub(super) fn apply(&mut self, id: u32, input: Input) {
        // An app waiting for a spawn's outcome hears the rest after it.
        if let Some(input) = self.in_flight.hold(id, input) {
            self.feed(id, input);
        }
    }

    /// [`Supervisor::apply`], now.
    pub(super) fn feed(&mut self, id: u32, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let Some(app) = self.table.get_mut(id) else {
                return;
            };
            let effects = app.machine.handle(&app.spec, input, Instant::now());
            if app.machine.is_gone() {
                self.gone.push(id);
            }
            for effect in effects {
                if let Some(next) = self.execute(id, effect) {
                    // Behind the outcome of a spawn this turn handed out.
                    inputs.extend(self.in_flight.hold(id, next));
                }
            }
        }
    }

    pub(super) fn execute(&mut self, id: u32, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Spawn { slot, role } => match self.spawn_instance(id, slot, role) {
                Ok(()) => None,
                Err(e) => Some(self.spawn_failed(id, slot, role, e)),
            },
            Effect::Signal { pid, signal } => {
                match signal {
                    Signal::SIGKILL => self.owner.kill(pid),
                    _ => self.owner.signal(pid, signal),
                }
                None
            }
            Effect::Kill { pid, signal } => {
                // The pid is ours until reaped, so it is not reused yet.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal);
                None
            }
            Effect::Arm { after, timer } => {
                self.after(after, Msg::Timer { app: id, timer });
                None
            }
            Effect::Probe { pid, kind, after } => {
                let tx = self.tx.clone();
                let at = on_probe_grid(tokio::time::Instant::now() + after);
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    let _ = tx.send(Msg::ProbeDue { app: id, pid, kind });
                });
                None
            }
            // In cgroup mode the emptiness of every instance is an event already.
            Effect::WatchGroup { pid } if self.owner.reports_empty(pid) => None,
            Effect::WatchGroup { pid } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    crate::groupwatch::until_empty(pid).await;
                    let _ = tx.send(Msg::GroupGone { app: id, pid });
                });
                None
            }
            Effect::Release { pid, slot } => {
                self.release(id, pid, slot);
                None
            }
            Effect::Status { slot, from, to } => {
                if to == sup_proto::Status::Online {
                    self.socket_warnings.remove(&id);
                }
                self.state_dirty.insert(id);
                let name = self.table.get(id).map_or("", |a| a.spec.name.as_str());
                info!(app = %name, slot, from = from.as_str(), to = to.as_str());
                None
            }
            Effect::Record { kind, detail } => {
                let name = self.table.get(id).map_or("", |a| a.spec.name.as_str());
                info!(app = %name, event = %kind, "{detail}");
                self.record(id, kind, detail);
                None
            }
            Effect::StopLeftovers { slot, pid } => {
                self.stop_leftovers(id, slot, pid);
                None
            }
            Effect::CloseSockets => {
                if let Some(app) = self.table.get_mut(id).filter(|a| !a.sockets.is_empty()) {
                    info!(app = %app.spec.name, "closing held sockets");
                    app.sockets.clear();
                }
                None
            }
            Effect::ReloadDone { token, result } => {
                self.reload_done(id, token, result);
                None
            }
        }
    }

    /// Posts `msg` to ourselves after `delay`.
    pub(super) fn after(&self, delay: std::time::Duration, msg: Msg) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(msg);
        });
    }

    /// Process `pid` is done with: its captures drain and end; a slot's
    /// next instance writes after them.
    fn release(&mut self, id: u32, pid: u32, slot: Option<usize>) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        self.owner.release(pid);
        let Some(mut inst) = app.procs.remove(&pid) else {
            return;
        };
        let gates = inst.end_captures();
        if let Some(slot) = slot {
            app.gates.insert(slot, gates);
        }
    }

    /// Collects every exited child and routes each to its owner.
    pub(super) fn reap(&mut self) {
        for (pid, exit) in reaper::reap_all() {
            let Some((id, role)) = self.table.unindex_pid(pid) else {
                reaper::unclaimed(pid, exit);
                self.in_flight.unknown_exit(pid, exit);
                continue;
            };
            match role {
                Role::Instance => self.instance_exited(id, pid, exit),
                Role::Probe(kind) => self.probe_exited(id, pid, kind, exit),
                Role::Hook => self.hook_exited(id, exit),
            }
        }
    }

    /// An instance's main process exited. A quick exit 0 may mean the app
    /// daemonized itself: in tag mode, a scan off the loop finds what it
    /// left, and the exit is told once the scan is back.
    pub(super) fn instance_exited(&mut self, id: u32, pid: u32, exit: ExitKind) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        info!(app = %app.spec.name, pid, "exited: {exit}");
        self.run_exited(id, pid, exit);
        let Some(app) = self.table.get(id) else {
            return;
        };
        let check = app
            .machine
            .wants_escape_check(&app.spec, pid, exit, Instant::now());
        if !exit.success() {
            self.check_exit_for_bind_error(id);
        }
        let escaped = match check.map(|_| self.owner.leftover(pid)) {
            None => None,
            Some(Leftover::Known(left)) => left,
            Some(Leftover::Scan) => {
                let index = check.unwrap_or_default() as u32;
                let scope = Scope::Instance { app: id, index };
                return self.scan_then(scope, move |found| Msg::QuickExit {
                    app: id,
                    pid,
                    exit,
                    found,
                });
            }
        };
        self.exited(id, pid, exit, escaped);
    }

    /// Tells app `id`'s machine that its process `pid` exited, leaving
    /// `escaped` behind (if it was looked for).
    pub(super) fn exited(&mut self, id: u32, pid: u32, exit: ExitKind, escaped: Option<u32>) {
        let group_alive = self.owner.has_processes(pid);
        self.apply(
            id,
            Input::Exited {
                pid,
                exit,
                group_alive,
                escaped,
            },
        );
    }
}

/// Probes wait for the next multiple of this, counted from the daemon's
/// start: probes due within it share one wake-up of the daemon, where each
/// used to have its own (100 apps probed every second: 10 wake-ups a
/// second, not 100).
const PROBE_GRID: std::time::Duration = std::time::Duration::from_millis(100);

/// `at`, rounded up to the probe grid.
fn on_probe_grid(at: tokio::time::Instant) -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(tokio::time::Instant::now);
    let grid = PROBE_GRID.as_nanos();
    let since = at.saturating_duration_since(origin).as_nanos();
    let up = since.div_ceil(grid) * grid;
    origin + std::time::Duration::from_nanos(up as u64)
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn probe_times_round_up_to_the_grid_and_never_earlier() {
        let ms = std::time::Duration::from_millis;
        let g = on_probe_grid(tokio::time::Instant::now());
        assert_eq!(on_probe_grid(g), g, "a grid point stays");
        let (a, b) = (on_probe_grid(g + ms(3)), on_probe_grid(g + ms(61)));
        assert_eq!(a, b, "due within one step: one wake-up");
        assert_eq!(a, g + PROBE_GRID);
    }
}
