//! Zero-downtime reload, rolling over the slots: each slot gets a new
//! instance that shares the held sockets, and its old one is stopped only
//! once the new one is ready; then the next slot.

use super::{stop_signal, AppMachine, Effect, Proc, Retired, Role, Timer};
use crate::lifecycle::{Event, ExitKind};
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, EventKind, Probe, Status};

/// A reload in progress.
#[derive(Debug, Clone)]
pub(super) struct Reload {
    token: u64,
    /// The slot being replaced now.
    pub(super) slot: usize,
    /// The slots after it.
    queue: VecDeque<usize>,
    /// Its new instance, once spawned.
    pub(super) incoming: Option<Proc>,
    /// What was done so far.
    notes: Vec<String>,
}

impl AppMachine {
    pub(super) fn begin_reload(&mut self, spec: &AppSpec, token: u64, now: Instant) {
        if self.reload.is_some() {
            let result = Err("a reload is already in progress".to_string());
            return self.emit(Effect::ReloadDone { token, result });
        }
        if spec.listen.is_empty() || self.status() != Status::Online {
            let why = if spec.listen.is_empty() {
                "it holds no sockets (--listen), so it was restarted instead, with a short gap"
            } else {
                "it was not online, so it was restarted instead"
            };
            self.each_slot(spec, Event::Restart, now);
            let result = Ok(why.to_string());
            return self.emit(Effect::ReloadDone { token, result });
        }
        let queue = self
            .slots
            .iter()
            .filter(|(_, s)| !s.leaving)
            .map(|(i, _)| i)
            .collect();
        self.roll(token, queue);
    }

    /// Reloads the slots of `queue`, one after the other.
    pub(super) fn roll(&mut self, token: u64, mut queue: VecDeque<usize>) {
        let first = queue.pop_front().expect("a slot to reload");
        self.reload = Some(Reload {
            token,
            slot: first,
            queue,
            incoming: None,
            notes: Vec::new(),
        });
        self.emit(Effect::Spawn {
            slot: first,
            role: Role::Incoming,
        });
    }

    /// The new instance of the slot being reloaded runs: wait for it to be
    /// ready, within the ready timeout.
    pub(super) fn spawned_incoming(&mut self, spec: &AppSpec, slot: usize, pid: u32, now: Instant) {
        let Some(reload) = self.reload.as_mut().filter(|r| r.slot == slot) else {
            // The reload was given up while spawning: nobody wants it.
            self.retired.push(Retired { pid, exited: false });
            return self.emit(Effect::Signal {
                pid,
                signal: Signal::SIGKILL,
            });
        };
        reload.incoming = Some(Proc::new(pid, now));
        self.record(EventKind::Reloading, format!("new instance pid {pid}"));
        match spec.health.readiness {
            // Without a readiness signal, staying up min-uptime counts as ready.
            None => self.emit(Effect::Arm {
                after: Duration::from_millis(spec.min_uptime_ms),
                timer: Timer::UpLongEnough { pid },
            }),
            Some(Probe::Notify | Probe::Message) => {}
            Some(_) => self.start_readiness(spec, pid),
        }
        self.emit(Effect::Arm {
            after: Duration::from_millis(spec.health.ready_timeout_ms),
            timer: Timer::ReloadTimeout { pid },
        });
    }

    /// The new instance is ready: it becomes the slot's instance and the old
    /// one gets its stop signal and kill timeout; then the next slot.
    pub(super) fn promote(&mut self, spec: &AppSpec, now: Instant) {
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        let (i, Some(mut new)) = (reload.slot, reload.incoming.take()) else {
            return;
        };
        if self.slots[i].lc.status() != Status::Online {
            reload.incoming = Some(new);
            return self.fail_reload("the app left `online` during the reload".into());
        }
        new.ready = true;
        let old = self.slots[i].inst.replace(new);
        self.slots[i].health.reset();
        let old_pid = old.map_or(0, |p| p.pid);
        if let Some(old) = old {
            self.retire(spec, old.pid, false);
        }
        self.feed(spec, i, Event::Reloaded, now);
        self.start_liveness(spec, i);
        let note = format!("pid {old_pid} -> {}", new.pid);
        self.record(EventKind::Reloaded, note.clone());
        let Some(reload) = self.reload.as_mut() else {
            return;
        };
        reload.notes.push(note);
        let slots = &self.slots;
        let next = std::iter::from_fn(|| reload.queue.pop_front())
            .find(|&i| slots.has(i) && !slots[i].leaving);
        match next {
            Some(next) => {
                reload.slot = next;
                self.emit(Effect::Spawn {
                    slot: next,
                    role: Role::Incoming,
                });
            }
            None => {
                let reload = self.reload.take().expect("checked above");
                let result = Ok(format!("reloaded, {}", reload.notes.join(", ")));
                self.emit(Effect::ReloadDone {
                    token: reload.token,
                    result,
                });
            }
        }
    }

    /// Stops an old instance (or what is left of its group, once its main
    /// process `exited`) gracefully, SIGKILL after the kill timeout.
    pub(super) fn retire(&mut self, spec: &AppSpec, pid: u32, exited: bool) {
        self.retired.push(Retired { pid, exited });
        self.emit(Effect::Signal {
            pid,
            signal: stop_signal(spec),
        });
        self.emit(Effect::Arm {
            after: Duration::from_millis(spec.kill_timeout_ms),
            timer: Timer::RetiredDeadline { pid },
        });
    }

    /// The reload's new instance exited before it was ready.
    pub(super) fn incoming_exited(&mut self, pid: u32, exit: ExitKind, group_alive: bool) {
        if let Some(reload) = self.reload.as_mut() {
            reload.incoming = None;
        }
        self.release_stray(pid, group_alive);
        self.fail_reload(format!(
            "the new instance exited before it was ready ({exit})"
        ));
    }

    /// A retired process exited: it is forgotten once its group is empty.
    pub(super) fn retired_exited(&mut self, pid: u32, group_alive: bool) {
        self.retired.retain(|r| r.pid != pid);
        self.release_stray(pid, group_alive);
    }

    fn release_stray(&mut self, pid: u32, group_alive: bool) {
        self.emit(Effect::Release { pid, slot: None });
        if group_alive {
            self.retired.push(Retired { pid, exited: true });
            self.emit(Effect::WatchGroup { pid });
        }
    }

    /// Gives up the reload in progress, if any (`why` tells the user).
    pub(super) fn cancel_reload(&mut self, why: &str) {
        if self.reload.is_some() {
            self.fail_reload(why.to_string());
        }
    }

    /// Kills the new instance; the old ones go on serving.
    pub(super) fn fail_reload(&mut self, why: String) {
        let Some(reload) = self.reload.take() else {
            return;
        };
        if let Some(p) = reload.incoming {
            // Its whole group goes; it is forgotten once the group is empty.
            self.retired.push(Retired {
                pid: p.pid,
                exited: false,
            });
            self.emit(Effect::Signal {
                pid: p.pid,
                signal: Signal::SIGKILL,
            });
        }
        self.record(EventKind::ReloadFailed, why.clone());
        self.emit(Effect::ReloadDone {
            token: reload.token,
            result: Err(format!(
                "reload failed: {why}; the old instance keeps serving"
            )),
        });
    }
}
