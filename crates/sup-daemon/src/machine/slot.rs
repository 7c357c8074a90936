//! One instance slot of an app: its lifecycle, its process, the group that
//! process leaves behind, and how lifecycle actions become effects.

use super::{stop_signal, AppMachine, Effect, Proc, Role, Timer};
use crate::health::Health;
use crate::lifecycle::{Action, Event, ExitKind, Lifecycle, TimerKind};
use nix::sys::signal::Signal;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, EventKind, Status};

/// An app's slots by instance index. Indices stay put when an instance is
/// removed (`sup delete api:2`), so `SUP_INSTANCE` of the others never changes.
/// Kept as a vector sorted by index: most apps have one slot, and a map's
/// first node would hold room for eleven (2 KiB an app at 1,000 apps).
#[derive(Debug, Clone, Default)]
pub struct Slots(Vec<(usize, Slot)>);

impl Slots {
    /// Slots `0..n`.
    pub fn new(n: usize) -> Slots {
        Slots((0..n).map(|i| (i, Slot::default())).collect())
    }

    /// Every slot with its index, in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &Slot)> {
        self.0.iter().map(|(i, s)| (*i, s))
    }

    /// Every index, in order.
    pub fn indices(&self) -> Vec<usize> {
        self.0.iter().map(|(i, _)| *i).collect()
    }

    /// Whether slot `i` exists.
    pub fn has(&self, i: usize) -> bool {
        self.find(i).is_ok()
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().map(|(_, s)| s)
    }

    pub(super) fn all_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.0.iter_mut().map(|(_, s)| s)
    }

    /// Adds a slot at the lowest free index; returns it.
    pub(super) fn add(&mut self) -> usize {
        let i = (0..).find(|i| !self.has(*i)).expect("a free index");
        self.put(i, Slot::default());
        i
    }

    pub(super) fn put(&mut self, i: usize, slot: Slot) {
        match self.find(i) {
            Ok(at) => self.0[at].1 = slot,
            Err(at) => self.0.insert(at, (i, slot)),
        }
    }

    pub(super) fn remove(&mut self, i: usize) {
        if let Ok(at) = self.find(i) {
            self.0.remove(at);
        }
    }

    pub(super) fn first(&self) -> &Slot {
        &self.0.first().expect("an app has a slot").1
    }

    /// Where slot `i` is, or where it would go.
    fn find(&self, i: usize) -> Result<usize, usize> {
        self.0.binary_search_by_key(&i, |(index, _)| *index)
    }
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        let at = self.find(i).expect("a slot of the app");
        &self.0[at].1
    }
}

impl std::ops::IndexMut<usize> for Slots {
    fn index_mut(&mut self, i: usize) -> &mut Slot {
        let at = self.find(i).expect("a slot of the app");
        &mut self.0[at].1
    }
}

/// One instance of an app, over its restarts.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub(super) lc: Lifecycle,
    /// The current process; after its main process exited, kept while its
    /// group still has members (a stop drains it, a restart waits for it).
    pub(super) inst: Option<Proc>,
    /// Stopping, the main process exited, the group drains: the exit is
    /// told to the lifecycle once the group is empty.
    pub(super) draining: bool,
    /// A spawn waits for the last process's group to be gone (it may still
    /// hold a port).
    pub(super) spawn_waits: bool,
    pub(super) health: Health,
    pub(super) restart_due: Option<Instant>,
    /// Scaled down or deleted: removed once stopped.
    pub(super) leaving: bool,
    /// The pid of its last main process.
    pub(super) last_pid: Option<u32>,
}

impl Slot {
    /// Its lifecycle (status, restarts, last exit).
    pub fn lc(&self) -> &Lifecycle {
        &self.lc
    }

    /// Its running process, if the main process has not exited.
    pub fn running(&self) -> Option<Proc> {
        self.inst.filter(|p| p.alive())
    }

    /// Its current process, exited or not (a group may still drain).
    pub fn process(&self) -> Option<Proc> {
        self.inst
    }

    /// The pid of its last main process, running or not.
    pub fn last_pid(&self) -> Option<u32> {
        self.last_pid
    }

    /// Whether the user stopped this instance and it is down: it does not
    /// count for the app's status.
    pub fn unwanted(&self) -> bool {
        self.lc.user_stopped() && self.lc.is_down()
    }

    /// Time left before a scheduled restart, while waiting for it.
    pub fn restart_in(&self, now: Instant) -> Option<Duration> {
        self.restart_due
            .filter(|_| self.lc.status() == Status::WaitingRestart)
            .map(|due| due.saturating_duration_since(now))
    }
}

impl AppMachine {
    /// Feeds `event` to the lifecycle of slot `i` and turns its actions
    /// into effects; an action may answer at once (a stop with nothing to
    /// signal is done).
    pub(super) fn feed(&mut self, spec: &AppSpec, i: usize, event: Event, now: Instant) {
        let mut queue = VecDeque::from([event]);
        while let Some(event) = queue.pop_front() {
            let slot = &mut self.slots[i];
            let before = slot.lc.status();
            let actions = slot.lc.handle(spec, event);
            let after = slot.lc.status();
            for action in &actions {
                if let Action::Schedule {
                    kind: TimerKind::Restart,
                    after,
                    ..
                } = action
                {
                    slot.restart_due = Some(now + *after);
                }
            }
            if before != after {
                self.status_changed(spec, i, before, after, now);
            }
            for action in actions {
                queue.extend(self.act(spec, i, action));
            }
        }
    }

    /// Effects of a lifecycle's actions (for a handover, its timers).
    pub(super) fn lc_actions(
        &mut self,
        spec: &AppSpec,
        i: usize,
        actions: Vec<Action>,
        now: Instant,
    ) {
        for action in actions {
            if let Some(event) = self.act(spec, i, action) {
                self.feed(spec, i, event, now);
            }
        }
    }

    fn act(&mut self, spec: &AppSpec, i: usize, action: Action) -> Option<Event> {
        let slot = &mut self.slots[i];
        match action {
            // What is left of the last process's group (already sent
            // SIGKILL) may still hold a port: spawn once it is gone.
            Action::Spawn if slot.inst.is_some() => slot.spawn_waits = true,
            Action::Spawn => self.emit(Effect::Spawn {
                slot: i,
                role: Role::Main,
            }),
            Action::SignalStop => match slot.running() {
                Some(p) => self.emit(Effect::Signal {
                    pid: p.pid,
                    signal: stop_signal(spec),
                }),
                // Nothing runs (a spawn waits for a leftover group): the
                // stop is done at once.
                None => return Some(Event::Exited(ExitKind::Signal(stop_signal(spec) as i32))),
            },
            Action::KillGroup => {
                if let Some(p) = slot.inst {
                    self.emit(Effect::Signal {
                        pid: p.pid,
                        signal: Signal::SIGKILL,
                    });
                }
            }
            Action::Schedule { kind, after, gen } => self.emit(Effect::Arm {
                after,
                timer: Timer::Slot { slot: i, gen, kind },
            }),
        }
        None
    }

    fn status_changed(
        &mut self,
        spec: &AppSpec,
        i: usize,
        before: Status,
        after: Status,
        now: Instant,
    ) {
        self.emit(Effect::Status {
            slot: i,
            from: before,
            to: after,
        });
        if before == Status::Online {
            self.cancel_reload("the app left `online` during the reload");
        }
        let slot = &self.slots[i];
        match after {
            Status::Online => {
                self.start_liveness(spec, i);
                self.record(EventKind::Online, "");
            }
            // A restart without a wait (the first after a crash, or `sup
            // restart`); one after a wait was recorded on entering the wait.
            Status::Launching
                if matches!(
                    before,
                    Status::Online | Status::Launching | Status::Stopping
                ) =>
            {
                let detail = if slot.inst.is_some() {
                    "once the last process group is gone"
                } else {
                    "now"
                };
                self.record(EventKind::Restarting, detail);
            }
            Status::WaitingRestart => {
                let ms = slot.restart_in(now).unwrap_or_default().as_millis();
                self.record(EventKind::Restarting, format!("restart in {ms} ms"));
            }
            Status::Errored => {
                let why = slot.lc.error().unwrap_or_default().to_string();
                self.record(EventKind::Errored, why);
            }
            Status::Stopped => {
                if slot.lc.user_stopped() {
                    let pid = slot.inst.map(|p| p.pid);
                    self.emit(Effect::StopLeftovers { slot: i, pid });
                }
                self.record(EventKind::Stopped, "");
            }
            _ => {}
        }
    }

    pub(super) fn spawned_main(&mut self, spec: &AppSpec, i: usize, pid: u32, now: Instant) {
        let slot = &mut self.slots[i];
        slot.inst = Some(Proc::new(pid, now));
        slot.last_pid = Some(pid);
        slot.health.reset();
        self.record(EventKind::Started, format!("pid {pid}"));
        self.start_readiness(spec, pid);
        self.feed(spec, i, Event::Spawned, now);
    }

    /// The main process of slot `i` exited.
    pub(super) fn main_exited(
        &mut self,
        spec: &AppSpec,
        i: usize,
        exit: ExitKind,
        group_alive: bool,
        escaped: Option<u32>,
        now: Instant,
    ) {
        let slot = &mut self.slots[i];
        let Some(p) = slot.inst.as_mut().filter(|p| p.alive()) else {
            return;
        };
        p.exit = Some(exit);
        let pid = p.pid;
        let stopping = slot.lc.status() == Status::Stopping;
        self.record(EventKind::Exited, format!("pid {pid}, {exit}"));
        self.cancel_reload("the old instance exited during the reload");
        if group_alive {
            self.emit(Effect::WatchGroup { pid });
        }
        if stopping && group_alive {
            // A graceful stop waits for the rest of the group to finish too.
            self.slots[i].draining = true;
            return;
        }
        let event = match escaped {
            // Asked to stop, it did: what it left is stopped with it.
            Some(_) if stopping => Event::Exited(exit),
            Some(left) => Event::Daemonized(format!(
                "exited 0 at once and left pid {left} running: it seems to daemonize itself; \
                 run it in the foreground so that sup supervises the real process"
            )),
            None => Event::Exited(exit),
        };
        let mut group_alive = group_alive;
        if group_alive && !spec.listen.is_empty() {
            // The held socket is the daemon's, so what is left of the group
            // (gunicorn's workers after their master died) holds no port the
            // next instance needs: it gets the stop signal and finishes the
            // requests it accepted, SIGKILL after the kill timeout, while
            // the next instance starts at once.
            self.retire(spec, pid, true);
            group_alive = false;
        }
        self.gone(spec, i, event, group_alive, now);
    }

    /// The instance of slot `i` is gone (`event` says how): its output is
    /// released before a new instance can write, so its last words come
    /// first in the log.
    fn gone(&mut self, spec: &AppSpec, i: usize, event: Event, group_alive: bool, now: Instant) {
        let Some(p) = self.slots[i].inst else { return };
        self.emit(Effect::Release {
            pid: p.pid,
            slot: Some(i),
        });
        if !group_alive {
            self.slots[i].inst = None;
        }
        self.feed(spec, i, event, now);
    }

    /// A watched group is empty: a drained stop ends, a waiting spawn goes.
    pub(super) fn group_gone(&mut self, spec: &AppSpec, pid: u32, now: Instant) {
        self.retired.retain(|r| !(r.pid == pid && r.exited));
        let Some(i) = self
            .slots
            .iter()
            .find(|(_, s)| s.inst.is_some_and(|p| p.pid == pid && !p.alive()))
            .map(|(i, _)| i)
        else {
            return;
        };
        let slot = &mut self.slots[i];
        if std::mem::take(&mut slot.draining) {
            let exit = slot.inst.and_then(|p| p.exit).unwrap_or(ExitKind::Code(0));
            return self.gone(spec, i, Event::Exited(exit), false, now);
        }
        slot.inst = None;
        if std::mem::take(&mut slot.spawn_waits) && slot.lc.status() == Status::Launching {
            self.emit(Effect::Spawn {
                slot: i,
                role: Role::Main,
            });
        }
    }
}
