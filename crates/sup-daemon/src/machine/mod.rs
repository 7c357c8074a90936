//! One app as a pure state machine over its instances.
//!
//! [`AppMachine::handle`] takes an [`Input`] (a request, an exit, a timer,
//! a probe result, a readiness report) and returns the [`Effect`]s the
//! supervisor must carry out (spawn, signal, arm a timer, release an
//! instance's output, record an event, answer a reload). It owns every
//! instance of the app: one slot per instance (each with its own
//! [`Lifecycle`], health and leftover process group), a reload's new
//! instance, and the retired ones still stopping. It never touches a
//! process or a clock: the caller passes `now`, and facts that need a system
//! call (is a process group still alive?) come in with the input. So every
//! orchestration case is unit-tested without processes (`tests.rs`).

mod reload;
mod scale;
mod slot;
mod trigger;

use crate::health::Verdict;
use crate::lifecycle::{Event, ExitKind, Lifecycle, TimerKind};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, EventKind, HealthInfo, Status};

pub use slot::{Slot, Slots};

/// How often a readiness check runs until it passes.
pub const READY_EVERY: Duration = Duration::from_millis(100);

/// Which check a probe serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Restart when it keeps failing.
    Liveness,
    /// Hold `launching` until it passes.
    Readiness,
}

/// What a new process will be to the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The instance of a slot.
    Main,
    /// A reload's new instance, not yet ready.
    Incoming,
}

/// A timer the machine armed; it comes back as [`Input::Timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A lifecycle timer of a slot; `gen` tells whether it is still current.
    Slot {
        /// Which slot.
        slot: usize,
        /// The lifecycle generation it was armed in.
        gen: u64,
        /// What for.
        kind: TimerKind,
    },
    /// A reload's new instance without a readiness check has stayed up
    /// `min_uptime`: it counts as ready.
    UpLongEnough {
        /// The new instance.
        pid: u32,
    },
    /// A reload's new instance ran out of time to get ready.
    ReloadTimeout {
        /// The new instance.
        pid: u32,
    },
    /// An instance retired by a reload ran out of time to stop.
    RetiredDeadline {
        /// Its pid (and process group).
        pid: u32,
    },
}

/// Something that happened to the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// `sup start` of an existing app (or its first start).
    Start,
    /// `sup restart`.
    Restart,
    /// `sup stop` (`by_user`), or a shutdown of the daemon (not by the user).
    Stop {
        /// Whether the user asked for it (`unless-stopped` remembers).
        by_user: bool,
    },
    /// `sup delete`: stop by the user, then the app goes.
    Delete,
    /// `sup scale`: grow or shrink to `to` instances (at least one).
    Scale {
        /// The new number of instances.
        to: usize,
    },
    /// A request for one instance only (`sup stop api:2`): `Start`,
    /// `Restart` or `Stop`.
    OneSlot {
        /// The instance index.
        slot: usize,
        /// The request.
        input: Box<Input>,
    },
    /// `sup delete api:2`: stop instance `slot` and remove it; the others
    /// keep their index.
    Remove {
        /// The instance index.
        slot: usize,
    },
    /// `sup signal SIG api[:N]`: send `signal` to the main process of every
    /// running instance, or of one.
    Signal {
        /// One instance, or all.
        slot: Option<usize>,
        /// The signal.
        signal: Signal,
    },
    /// A trigger asks for fresh instances: reloaded when sockets are held,
    /// else restarted; nothing happens to an app that is down.
    Renew {
        /// One instance (over its memory limit), or all.
        slot: Option<usize>,
        /// Why, for the `triggered` event.
        why: String,
    },
    /// `sup reload`; the answer comes as [`Effect::ReloadDone`] with `token`.
    Reload {
        /// Ties the answer to the request.
        token: u64,
    },
    /// The spawn asked for by [`Effect::Spawn`] succeeded.
    Spawned {
        /// The slot it was for.
        slot: usize,
        /// What the process is.
        role: Role,
        /// Its pid, also its process group.
        pid: u32,
    },
    /// The spawn asked for by [`Effect::Spawn`] failed.
    SpawnFailed {
        /// The slot it was for.
        slot: usize,
        /// What the process was to be.
        role: Role,
        /// Why.
        error: String,
        /// Whether trying again later may work (out of pids, memory, fds).
        transient: bool,
    },
    /// A process of the app (an instance, a reload's new one, a retired
    /// one) exited and was reaped.
    Exited {
        /// Its pid.
        pid: u32,
        /// How.
        exit: ExitKind,
        /// Whether its process group still has live members.
        group_alive: bool,
        /// A process it left outside its group, when the caller was asked to
        /// look ([`AppMachine::wants_escape_check`]).
        escaped: Option<u32>,
    },
    /// A process group the machine watches ([`Effect::WatchGroup`]) is empty.
    GroupGone {
        /// The group id.
        pid: u32,
    },
    /// A timer fired.
    Timer(Timer),
    /// Instance `pid` said READY=1.
    Ready {
        /// The instance.
        pid: u32,
    },
    /// A probe of instance `pid` finished.
    Probed {
        /// The instance probed.
        pid: u32,
        /// Which check.
        kind: ProbeKind,
        /// What it found.
        outcome: crate::probe::Outcome,
    },
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Spawn a process for `slot`, then report [`Input::Spawned`] or
    /// [`Input::SpawnFailed`] at once.
    Spawn {
        /// The slot.
        slot: usize,
        /// What the process will be.
        role: Role,
    },
    /// Send `signal` to the process `pid` only (not its group).
    Kill {
        /// The process.
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// Send `signal` to every process of the instance whose main process
    /// is `pid` (its group, and in cgroup mode its whole cgroup; SIGKILL is
    /// then `cgroup.kill`).
    Signal {
        /// The instance's main pid (its group id).
        pid: u32,
        /// The signal.
        signal: Signal,
    },
    /// Report [`Input::Timer`] with `timer` after `after`.
    Arm {
        /// Delay.
        after: Duration,
        /// What comes back.
        timer: Timer,
    },
    /// Run a check of instance `pid` after `after`, unless
    /// [`AppMachine::wants_probe`] says no by then; report [`Input::Probed`].
    Probe {
        /// The instance.
        pid: u32,
        /// Which check.
        kind: ProbeKind,
        /// Delay.
        after: Duration,
    },
    /// Report [`Input::GroupGone`] once the process group `pid` is empty.
    WatchGroup {
        /// The group id.
        pid: u32,
    },
    /// Process `pid` is done with: its output capture drains and ends. For
    /// the instance of a slot, the next instance's output waits for it.
    Release {
        /// The process.
        pid: u32,
        /// The slot it was the instance of, if it was one.
        slot: Option<usize>,
    },
    /// A slot's status changed.
    Status {
        /// Which slot.
        slot: usize,
        /// Before.
        from: Status,
        /// After.
        to: Status,
    },
    /// Record an event (and run the app's hook).
    Record {
        /// Event kind.
        kind: EventKind,
        /// Details.
        detail: String,
    },
    /// The user stopped instance `slot`: stop what it left behind, outside
    /// its process group (`pid`: the group of its last process, when that
    /// is still kept because something of it lives on).
    StopLeftovers {
        /// The instance index.
        slot: usize,
        /// Its last process, if the slot still keeps it.
        pid: Option<u32>,
    },
    /// No instance runs nor will start on its own: close the held sockets,
    /// so that a proxy fails fast.
    CloseSockets,
    /// Answer a reload request.
    ReloadDone {
        /// The request's token.
        token: u64,
        /// A note, or why it failed.
        result: Result<String, String>,
    },
}

/// One slot of an app taken over by `sup update`.
#[derive(Debug)]
pub struct Adopted {
    /// Its index.
    pub index: usize,
    /// Its lifecycle, as the old daemon left it.
    pub lc: Lifecycle,
    /// Its running process.
    pub main: Option<Proc>,
    /// Time left before a pending restart.
    pub restart_in: Option<Duration>,
}

/// The process of an instance, as far as the machine knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Pid, and process group id.
    pub pid: u32,
    /// When it was spawned.
    pub since: Instant,
    /// It passed its readiness check.
    pub ready: bool,
    /// Set once its main process exited (its group may still drain).
    pub exit: Option<ExitKind>,
}

impl Proc {
    /// A process just spawned (or adopted) at `since`.
    pub fn new(pid: u32, since: Instant) -> Proc {
        Proc {
            pid,
            since,
            ready: false,
            exit: None,
        }
    }

    /// Its main process has not exited.
    pub fn alive(&self) -> bool {
        self.exit.is_none()
    }
}

/// An instance retired by a reload (or a failed reload's new one), stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retired {
    pid: u32,
    exited: bool,
}

/// An app and all of its instances.
#[derive(Debug, Clone)]
pub struct AppMachine {
    slots: Slots,
    retired: Vec<Retired>,
    reload: Option<reload::Reload>,
    deleting: bool,
    out: Vec<Effect>,
}

impl AppMachine {
    /// An app of `instances` slots, all stopped.
    pub fn new(instances: usize) -> AppMachine {
        AppMachine {
            slots: Slots::new(instances.max(1)),
            retired: Vec::new(),
            reload: None,
            deleting: false,
            out: Vec::new(),
        }
    }

    /// An app taken over from a previous daemon, slot by slot. Returns the
    /// effects (timers, probes) its state needs, since timers don't survive
    /// the handover.
    pub fn adopt(spec: &AppSpec, slots: Vec<Adopted>, now: Instant) -> (Self, Vec<Effect>) {
        let mut m = AppMachine::new(1);
        m.slots = Slots::default();
        for a in slots {
            let i = a.index;
            m.slots.put(i, Slot::default());
            m.slots[i].inst = a.main;
            m.slots[i].lc = a.lc;
            if let Some(after) = a.restart_in {
                m.slots[i].restart_due = Some(now + after);
                let (gen, kind) = (m.slots[i].lc.generation(), TimerKind::Restart);
                m.emit(Effect::Arm {
                    after,
                    timer: Timer::Slot { slot: i, gen, kind },
                });
            }
            let actions = m.slots[i].lc.resume(spec);
            m.lc_actions(spec, i, actions, now);
            if m.slots[i].lc.status() == Status::Online {
                m.start_liveness(spec, i);
            }
        }
        if m.slots.indices().is_empty() {
            m.slots = Slots::new(1);
        }
        let out = std::mem::take(&mut m.out);
        (m, out)
    }

    /// Restores whether the user had stopped the app (from a dump).
    pub fn set_user_stopped(&mut self, stopped: bool) {
        for slot in self.slots.all_mut() {
            slot.lc.set_user_stopped(stopped);
        }
    }

    /// Applies `input`; returns what the supervisor must do, in order.
    pub fn handle(&mut self, spec: &AppSpec, input: Input, now: Instant) -> Vec<Effect> {
        let was_down = self.is_down();
        if self.deleting && Self::would_run(&input) {
            // A deleted app only stops: nothing brings it back.
            if let Input::Reload { token } = input {
                let result = Err("the app is being deleted".to_string());
                self.emit(Effect::ReloadDone { token, result });
            }
            return std::mem::take(&mut self.out);
        }
        match input {
            Input::Start => self.each_slot(spec, Event::Start, now),
            Input::Restart => {
                self.cancel_reload("the app was restarted during the reload");
                self.each_slot(spec, Event::Restart, now)
            }
            Input::Stop { by_user } => {
                self.cancel_reload("the app was stopped during the reload");
                self.each_slot(spec, Event::Stop { by_user }, now)
            }
            Input::Delete => {
                self.deleting = true;
                self.cancel_reload("the app was deleted during the reload");
                self.each_slot(spec, Event::Stop { by_user: true }, now)
            }
            Input::Reload { token } => self.begin_reload(spec, token, now),
            Input::Renew { slot, why } => self.renew(spec, slot, why, now),
            Input::Scale { to } => self.scale(spec, to, now),
            Input::OneSlot { slot, input } => self.one_slot(spec, slot, *input, now),
            Input::Remove { slot } => self.remove_slot(spec, slot, now),
            Input::Signal { slot, signal } => {
                let pids: Vec<u32> = self
                    .slots
                    .iter()
                    .filter(|(i, _)| slot.is_none_or(|s| s == *i))
                    .filter_map(|(_, s)| s.running().map(|p| p.pid))
                    .collect();
                for pid in pids {
                    self.emit(Effect::Kill { pid, signal });
                }
            }
            Input::Spawned { slot, role, pid } => self.spawned(spec, slot, role, pid, now),
            Input::SpawnFailed {
                slot,
                role,
                error,
                transient,
            } => match role {
                Role::Main => {
                    let event = Event::SpawnFailed {
                        reason: error,
                        transient,
                    };
                    self.feed(spec, slot, event, now)
                }
                Role::Incoming => self.fail_reload(format!("cannot start a new instance: {error}")),
            },
            Input::Exited {
                pid,
                exit,
                group_alive,
                escaped,
            } => self.exited(spec, pid, exit, group_alive, escaped, now),
            Input::GroupGone { pid } => self.group_gone(spec, pid, now),
            Input::Timer(timer) => self.timer(spec, timer, now),
            Input::Ready { pid } => self.ready(spec, pid, now),
            Input::Probed { pid, kind, outcome } => self.probed(spec, pid, kind, outcome, now),
        }
        self.forget_left_slots();
        if !was_down && self.is_down() && !spec.listen.is_empty() {
            // Nobody will serve the held sockets: a proxy should fail fast.
            self.emit(Effect::CloseSockets);
        }
        std::mem::take(&mut self.out)
    }

    /// Inputs that start, restart or add instances.
    fn would_run(input: &Input) -> bool {
        matches!(
            input,
            Input::Start
                | Input::Restart
                | Input::Reload { .. }
                | Input::Renew { .. }
                | Input::Scale { .. }
                | Input::OneSlot { .. }
        )
    }

    fn spawned(&mut self, spec: &AppSpec, slot: usize, role: Role, pid: u32, now: Instant) {
        match role {
            Role::Main if self.slots.has(slot) => self.spawned_main(spec, slot, pid, now),
            Role::Main => {}
            Role::Incoming => self.spawned_incoming(spec, slot, pid, now),
        }
    }

    fn exited(
        &mut self,
        spec: &AppSpec,
        pid: u32,
        exit: ExitKind,
        group_alive: bool,
        escaped: Option<u32>,
        now: Instant,
    ) {
        if self.incoming().is_some_and(|p| p.pid == pid) {
            self.incoming_exited(pid, exit, group_alive);
        } else if self.retired.iter().any(|r| r.pid == pid) {
            self.retired_exited(pid, group_alive);
        } else if let Some(i) = self.slot_of(pid) {
            self.main_exited(spec, i, exit, group_alive, escaped, now);
        }
    }

    /// The app's status: `online` when every wanted instance is (those the
    /// user stopped don't count), else that of its least advanced wanted
    /// instance; `stopped` when the user stopped them all.
    pub fn status(&self) -> Status {
        use Status::*;
        let rank = |s: Status| match s {
            Errored => 0,
            Stopped => 1,
            Stopping => 2,
            WaitingRestart => 3,
            Launching => 4,
            Online => 5,
        };
        self.slots
            .all()
            .filter(|s| !s.unwanted())
            .map(|s| s.lc.status())
            .min_by_key(|&s| rank(s))
            .unwrap_or(Stopped)
    }

    /// The slots, by instance index.
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// The slot of the lowest index (a single-instance app's only one).
    pub fn first(&self) -> &Slot {
        self.slots.first()
    }

    /// Being deleted: forget it once [`AppMachine::is_gone`].
    pub fn deleting(&self) -> bool {
        self.deleting
    }

    /// Nothing runs or will start on its own (every slot stopped or errored).
    pub fn is_down(&self) -> bool {
        self.slots.all().all(|s| s.lc.is_down())
    }

    /// Down, and no process of it is left stopping.
    pub fn is_quiet(&self) -> bool {
        self.is_down() && self.retired.is_empty() && self.reload.is_none()
    }

    /// Deleted and quiet: the supervisor may forget it.
    pub fn is_gone(&self) -> bool {
        self.deleting && self.is_quiet()
    }

    /// Every slot is neither launching nor stopping.
    pub fn is_settled(&self) -> bool {
        self.slots.all().all(|s| s.lc.is_settled())
    }

    /// Every slot has settled or has a process running.
    pub fn is_spawned(&self) -> bool {
        self.slots.all().all(|s| {
            s.lc.is_settled()
                || (s.lc.status() == Status::Launching && s.inst.is_some_and(|i| i.alive()))
        })
    }

    /// The slot whose running process is `pid`.
    pub fn slot_of_pid(&self, pid: u32) -> Option<usize> {
        self.slot_of(pid)
    }

    /// How many instances the app has, not counting those leaving.
    pub fn instance_count(&self) -> usize {
        self.slots.all().filter(|s| !s.leaving).count()
    }

    /// The slot a reload is replacing now.
    pub fn reloading_slot(&self) -> Option<usize> {
        self.reload.as_ref().map(|r| r.slot)
    }

    /// The reload's new instance, while one is starting.
    pub fn incoming(&self) -> Option<Proc> {
        self.reload.as_ref().and_then(|r| r.incoming)
    }

    /// The pids of instances retired by a reload, still stopping.
    pub fn retired_pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.retired.iter().map(|r| r.pid)
    }

    /// Whether instance `pid` still needs a check of this kind.
    pub fn wants_probe(&self, pid: u32, kind: ProbeKind) -> bool {
        let main = self
            .slot_of(pid)
            .map(|i| (&self.slots[i], self.slots[i].inst));
        match kind {
            ProbeKind::Liveness => main.is_some_and(|(s, p)| {
                p.is_some_and(|p| p.alive()) && s.lc.status() == Status::Online
            }),
            ProbeKind::Readiness => {
                main.is_some_and(|(s, p)| {
                    p.is_some_and(|p| p.alive() && !p.ready) && s.lc.status() == Status::Launching
                }) || self.incoming().is_some_and(|p| p.pid == pid)
            }
        }
    }

    /// Whether the caller should look for a process that `pid` left outside
    /// its group before reporting this exit: an instance that exits 0 before
    /// `min_uptime`, unasked, may have daemonized itself. Returns the slot
    /// to look at. An instance being stopped was asked to exit: never.
    pub fn wants_escape_check(
        &self,
        spec: &AppSpec,
        pid: u32,
        exit: ExitKind,
        now: Instant,
    ) -> Option<usize> {
        let quick = Duration::from_millis(spec.min_uptime_ms);
        let i = self.slot_of(pid)?;
        let slot = &self.slots[i];
        let running = matches!(slot.lc.status(), Status::Launching | Status::Online);
        let early = slot
            .inst
            .is_some_and(|p| now.saturating_duration_since(p.since) < quick);
        (exit.success() && running && early).then_some(i)
    }

    /// The health view of the first instance.
    pub fn health(&self, spec: &AppSpec) -> HealthInfo {
        self.first().health.info(spec.health.liveness.is_some())
    }

    /// `sup reset`: every slot's restart counters back to 0.
    pub fn reset_counters(&mut self) {
        for slot in self.slots.all_mut() {
            slot.lc.reset_counters();
        }
    }

    /// Restarts so far, over every slot.
    pub fn restarts(&self) -> u32 {
        self.slots.all().map(|s| s.lc.restarts()).sum()
    }

    /// The slot whose current instance is `pid`.
    fn slot_of(&self, pid: u32) -> Option<usize> {
        self.slots
            .iter()
            .find(|(_, s)| s.inst.is_some_and(|p| p.pid == pid))
            .map(|(i, _)| i)
    }

    fn emit(&mut self, effect: Effect) {
        self.out.push(effect);
    }

    fn record(&mut self, kind: EventKind, detail: impl Into<String>) {
        self.emit(Effect::Record {
            kind,
            detail: detail.into(),
        });
    }

    /// Feeds `event` to every slot; a slot on its way out (scaled down or
    /// removed) gets only stops, never a start that would keep it.
    fn each_slot(&mut self, spec: &AppSpec, event: Event, now: Instant) {
        let starts = matches!(event, Event::Start | Event::Restart);
        for slot in self.slots.indices() {
            if !(starts && self.slots[slot].leaving) {
                self.feed(spec, slot, event.clone(), now);
            }
        }
    }

    fn timer(&mut self, spec: &AppSpec, timer: Timer, now: Instant) {
        match timer {
            Timer::Slot { slot, gen, kind } if self.slots.has(slot) => {
                self.feed(spec, slot, Event::Timer { kind, gen }, now)
            }
            Timer::Slot { .. } => {}
            Timer::UpLongEnough { pid } => self.ready(spec, pid, now),
            Timer::ReloadTimeout { pid } => {
                if self.incoming().is_some_and(|p| p.pid == pid) {
                    self.fail_reload(format!(
                        "the new instance was not ready within {} ms",
                        spec.health.ready_timeout_ms
                    ));
                }
            }
            Timer::RetiredDeadline { pid } => {
                if self.retired.iter().any(|r| r.pid == pid) {
                    self.emit(Effect::Signal {
                        pid,
                        signal: Signal::SIGKILL,
                    });
                }
            }
        }
    }

    /// Instance `pid` is ready: a slot's instance turns online, a reload's
    /// new one takes over.
    fn ready(&mut self, spec: &AppSpec, pid: u32, now: Instant) {
        if self.incoming().is_some_and(|p| p.pid == pid) {
            return self.promote(spec, now);
        }
        let Some(i) = self.slot_of(pid) else { return };
        let slot = &mut self.slots[i];
        let Some(p) = slot.inst.as_mut().filter(|p| p.alive() && !p.ready) else {
            return;
        };
        p.ready = true;
        if slot.lc.status() == Status::Launching {
            self.record(EventKind::Ready, format!("pid {pid}"));
            self.feed(spec, i, Event::Ready, now);
        }
    }

    fn probed(
        &mut self,
        spec: &AppSpec,
        pid: u32,
        kind: ProbeKind,
        outcome: crate::probe::Outcome,
        now: Instant,
    ) {
        if !self.wants_probe(pid, kind) {
            return;
        }
        match kind {
            ProbeKind::Readiness if outcome.ok => self.ready(spec, pid, now),
            ProbeKind::Readiness => self.emit(Effect::Probe {
                pid,
                kind,
                after: READY_EVERY,
            }),
            ProbeKind::Liveness => self.liveness(spec, pid, outcome, now),
        }
    }

    fn liveness(&mut self, spec: &AppSpec, pid: u32, outcome: crate::probe::Outcome, now: Instant) {
        let Some(i) = self.slot_of(pid) else { return };
        let h = &spec.health;
        let slot = &mut self.slots[i];
        let counts = slot.inst.is_some_and(|p| {
            now.saturating_duration_since(p.since) >= Duration::from_millis(h.start_period_ms)
        });
        let detail = outcome.detail.clone();
        match slot.health.record(outcome, h.retries, counts) {
            Verdict::Same => {}
            Verdict::Recovered => self.record(EventKind::Healthy, detail),
            Verdict::Failing(n) => self.record(
                EventKind::Unhealthy,
                format!("{n} of {} failures: {detail}", h.retries),
            ),
            Verdict::Unhealthy(why) => {
                self.record(EventKind::Unhealthy, format!("{why}; restarting"));
                return self.feed(spec, i, Event::Unhealthy(why), now);
            }
        }
        self.emit(Effect::Probe {
            pid,
            kind: ProbeKind::Liveness,
            after: Duration::from_millis(h.interval_ms),
        });
    }

    fn start_liveness(&mut self, spec: &AppSpec, slot: usize) {
        if spec.health.liveness.is_none() {
            return;
        }
        if let Some(p) = self.slots[slot].inst.filter(|p| p.alive()) {
            self.emit(Effect::Probe {
                pid: p.pid,
                kind: ProbeKind::Liveness,
                after: Duration::from_millis(spec.health.interval_ms),
            });
        }
    }

    /// Starts the readiness check of a new process (sd_notify needs none:
    /// its socket reports READY=1).
    fn start_readiness(&mut self, spec: &AppSpec, pid: u32) {
        match &spec.health.readiness {
            None | Some(sup_proto::Probe::Notify | sup_proto::Probe::Message) => {}
            Some(_) => self.emit(Effect::Probe {
                pid,
                kind: ProbeKind::Readiness,
                after: READY_EVERY,
            }),
        }
    }
}

/// The signal that stops an app gracefully.
pub fn stop_signal(spec: &AppSpec) -> Signal {
    crate::signal::to_nix(spec.stop_signal)
}

#[cfg(test)]
mod tests;
