//! The per-app lifecycle as a pure state machine.
//!
//! [`Lifecycle::handle`] takes an event and returns the actions the
//! supervisor must carry out. It never touches a process, a clock or a timer,
//! so every transition is unit-tested without spawning anything.

use std::fmt;
use std::time::Duration;
use sup_proto::{AppSpec, Status};

/// The reason of a restart that `sup restart` asked for.
const USER_RESTART: &str = "restarted by the user";

/// First step of the exponential backoff between consecutive unstable restarts.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);

/// How an instance's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitKind {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitKind {
    /// Exit code 0.
    pub fn success(self) -> bool {
        self == ExitKind::Code(0)
    }

    /// As a shell tells it: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Code(code) => code,
            ExitKind::Signal(sig) => 128 + sig,
        }
    }
}

impl fmt::Display for ExitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitKind::Code(code) => write!(f, "exit code {code}"),
            ExitKind::Signal(sig) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(name) => write!(f, "signal {name}"),
                Err(_) => write!(f, "signal {sig}"),
            },
        }
    }
}

/// What a timer was set for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerKind {
    /// Time to restart after a crash.
    Restart,
    /// The kill timeout of a stop ran out.
    Kill,
    /// The instance has been up `min_uptime`: the backoff resets.
    Stable,
    /// The instance had `ready_timeout` to become ready.
    ReadyTimeout,
}

/// Something that happened to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `sup start` of an existing app.
    Start,
    /// `sup restart`.
    Restart,
    /// `sup stop` (`by_user`), or a daemon shutdown (not by the user).
    Stop {
        /// Whether the user asked for it (`unless-stopped` remembers).
        by_user: bool,
    },
    /// The spawn the machine asked for succeeded.
    Spawned,
    /// The spawn failed; a `transient` failure (out of pids, memory or
    /// fds) may heal, so it is retried with backoff.
    SpawnFailed {
        /// Why.
        reason: String,
        /// Whether trying again later may work.
        transient: bool,
    },
    /// The instance passed its readiness check.
    Ready,
    /// The liveness probe failed too often: restart as after a crash.
    Unhealthy(String),
    /// A reload swapped in a new, ready instance.
    Reloaded,
    /// The instance exited 0 at once, leaving a process outside its group:
    /// it daemonized itself. Restarting would start another copy.
    Daemonized(String),
    /// The instance is gone: its main process exited (and, while stopping,
    /// the rest of its process group too).
    Exited(ExitKind),
    /// A timer fired; `gen` tells whether it is still current.
    Timer {
        /// Which timer.
        kind: TimerKind,
        /// The generation it was scheduled in.
        gen: u64,
    },
}

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Spawn a new instance, then report [`Event::Spawned`] or [`Event::SpawnFailed`].
    Spawn,
    /// Send the stop signal to the instance's process group.
    SignalStop,
    /// SIGKILL what is left of the instance's process group.
    KillGroup,
    /// Report [`Event::Timer`] with `kind` and `gen` after `after`.
    Schedule {
        /// Which timer.
        kind: TimerKind,
        /// Delay.
        after: Duration,
        /// The generation to report back.
        gen: u64,
    },
}

/// What follows a stop once the instance is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum AfterStop {
    /// Stay stopped.
    Stay,
    /// Start again (`sup restart`).
    Start,
    /// Restart as after a crash (unhealthy, or never ready).
    Recover,
}

/// The lifecycle of one app. Serializable, so that `sup update` can hand it
/// to the next daemon.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Lifecycle {
    status: Status,
    restarts: u32,
    unstable: u32,
    user_stopped: bool,
    after_stop: AfterStop,
    gen: u64,
    last_exit: Option<ExitKind>,
    error: Option<String>,
    restart_reason: Option<String>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            status: Status::Stopped,
            restarts: 0,
            unstable: 0,
            user_stopped: false,
            after_stop: AfterStop::Stay,
            gen: 0,
            last_exit: None,
            error: None,
            restart_reason: None,
        }
    }
}

impl Lifecycle {
    /// Current state.
    pub fn status(&self) -> Status {
        self.status
    }

    /// `sup reset`: the restart counters start again from 0 (the backoff
    /// too).
    pub fn reset_counters(&mut self) {
        self.restarts = 0;
        self.unstable = 0;
    }

    /// Restarts so far (crashes and user restarts).
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Consecutive restarts that came before `min_uptime`.
    pub fn unstable_restarts(&self) -> u32 {
        self.unstable
    }

    /// Whether the user stopped the app (`sup stop`).
    pub fn user_stopped(&self) -> bool {
        self.user_stopped
    }

    /// How the last instance ended.
    pub fn last_exit(&self) -> Option<ExitKind> {
        self.last_exit
    }

    /// Why the app is errored, or the last spawn failure.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// Restores whether the user had stopped the app (from a dump).
    pub fn set_user_stopped(&mut self, stopped: bool) {
        self.user_stopped = stopped;
    }

    /// Why the app was last restarted.
    pub fn restart_reason(&self) -> Option<&str> {
        self.restart_reason.as_deref()
    }

    /// The current generation (timers of other generations are stale).
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// After a handover, timers are gone: the ones the current state needs.
    pub fn resume(&mut self, spec: &AppSpec) -> Vec<Action> {
        match self.status {
            Status::Online if self.unstable > 0 => {
                vec![self.schedule(TimerKind::Stable, spec.min_uptime_ms)]
            }
            _ => vec![],
        }
    }

    /// Whether the app has settled: not launching or stopping.
    pub fn is_settled(&self) -> bool {
        !matches!(self.status, Status::Launching | Status::Stopping)
    }

    /// Whether no instance runs and none will start on its own.
    pub fn is_down(&self) -> bool {
        matches!(self.status, Status::Stopped | Status::Errored)
    }

    /// The restart under way was asked for by a trigger (`why`), not by
    /// the user.
    pub fn restarted_for(&mut self, why: &str) {
        if self.restart_reason.as_deref() == Some(USER_RESTART) {
            self.restart_reason = Some(why.to_string());
        }
    }

    /// Applies `event` and returns the actions it calls for.
    pub fn handle(&mut self, spec: &AppSpec, event: Event) -> Vec<Action> {
        use Status::*;
        match (self.status, event) {
            (_, Event::Timer { gen, .. }) if gen != self.gen => vec![],
            (Stopped | Errored, Event::Start | Event::Restart) => {
                self.user_stopped = false;
                self.unstable = 0;
                self.launch()
            }
            (WaitingRestart, Event::Start | Event::Restart) => self.launch(),
            (Launching | Online, Event::Start) => vec![],
            (Launching | Online, Event::Restart) => {
                self.restarts += 1;
                self.restart_reason = Some(USER_RESTART.into());
                self.after_stop = AfterStop::Start;
                self.stop(spec)
            }
            (Stopping, Event::Start | Event::Restart) => {
                self.user_stopped = false;
                self.after_stop = AfterStop::Start;
                vec![]
            }
            (status, Event::Stop { by_user }) => {
                self.user_stopped |= by_user;
                self.after_stop = AfterStop::Stay;
                match status {
                    Launching | Online => self.stop(spec),
                    WaitingRestart | Errored => self.enter(Stopped),
                    Stopping | Stopped => vec![],
                }
            }
            (Launching, Event::Spawned) if spec.health.readiness.is_some() => {
                self.error = None;
                vec![self.schedule(TimerKind::ReadyTimeout, spec.health.ready_timeout_ms)]
            }
            (Launching, Event::Spawned | Event::Ready) => {
                self.error = None;
                let mut actions = self.enter(Online);
                actions.push(self.schedule(TimerKind::Stable, spec.min_uptime_ms));
                actions
            }
            (
                Launching,
                Event::Timer {
                    kind: TimerKind::ReadyTimeout,
                    ..
                },
            ) => {
                let why = format!("not ready within {} ms", spec.health.ready_timeout_ms);
                self.recover(spec, why)
            }
            (Online, Event::Unhealthy(why)) => self.recover(spec, why),
            // A late report of a quick exit, once a stop was asked for: the
            // instance is gone all the same, and the stop must end.
            (Stopping, Event::Daemonized(_)) => self.handle(spec, Event::Exited(ExitKind::Code(0))),
            (Launching | Online, Event::Daemonized(why)) => {
                self.last_exit = Some(ExitKind::Code(0));
                self.error = Some(why);
                self.enter(Errored)
            }
            (Online, Event::Reloaded) => {
                self.restarts += 1;
                self.enter(Online);
                vec![self.schedule(TimerKind::Stable, spec.min_uptime_ms)]
            }
            (
                Launching,
                Event::SpawnFailed {
                    reason,
                    transient: true,
                },
            ) => {
                self.error = Some(format!("cannot start yet: {reason}; retrying"));
                let delay = backoff_delay(spec, self.unstable).max(BACKOFF_BASE);
                self.unstable = self.unstable.saturating_add(1);
                let mut actions = self.enter(WaitingRestart);
                actions.push(Action::Schedule {
                    kind: TimerKind::Restart,
                    after: delay,
                    gen: self.gen,
                });
                actions
            }
            (Launching, Event::SpawnFailed { reason, .. }) => {
                self.error = Some(format!("cannot start: {reason}"));
                self.enter(Errored)
            }
            (Launching | Online, Event::Exited(exit)) => self.crashed(spec, exit, false),
            (Stopping, Event::Exited(exit)) => {
                self.last_exit = Some(exit);
                match std::mem::replace(&mut self.after_stop, AfterStop::Stay) {
                    AfterStop::Start => self.launch(),
                    AfterStop::Recover => self.crashed(spec, exit, true),
                    AfterStop::Stay => self.enter(Stopped),
                }
            }
            (
                Online,
                Event::Timer {
                    kind: TimerKind::Stable,
                    ..
                },
            ) => {
                self.unstable = 0;
                vec![]
            }
            (
                Stopping,
                Event::Timer {
                    kind: TimerKind::Kill,
                    ..
                },
            ) => vec![Action::KillGroup],
            (
                WaitingRestart,
                Event::Timer {
                    kind: TimerKind::Restart,
                    ..
                },
            ) => self.launch(),
            _ => vec![],
        }
    }

    /// Stops a broken instance (unhealthy, or never ready); once it is gone
    /// the app restarts as after a crash.
    fn recover(&mut self, spec: &AppSpec, why: String) -> Vec<Action> {
        self.restart_reason = Some(why.clone());
        self.error = Some(why);
        self.after_stop = AfterStop::Recover;
        self.stop(spec)
    }

    /// The instance ended without being asked to (or was `failed` by sup):
    /// restart per policy.
    fn crashed(&mut self, spec: &AppSpec, exit: ExitKind, failed: bool) -> Vec<Action> {
        self.last_exit = Some(exit);
        let mut actions = vec![Action::KillGroup];
        let chosen = matches!(exit, ExitKind::Code(code) if spec.stop_exit_codes.contains(&code));
        if !spec.restart.restarts_after(exit.success() && !failed) || (chosen && !failed) {
            self.unstable = 0;
            actions.extend(self.enter(Status::Stopped));
            return actions;
        }
        if let Some(max) = spec.max_restarts.filter(|max| self.unstable >= *max) {
            self.error = Some(format!(
                "gave up after {} (--max-restarts {max}); last: {exit}",
                crate::plural::count(max.into(), "unstable restart")
            ));
            actions.extend(self.enter(Status::Errored));
            return actions;
        }
        if !failed {
            self.restart_reason = Some(format!("exited ({exit})"));
        }
        let delay = backoff_delay(spec, self.unstable);
        self.unstable += 1;
        self.restarts += 1;
        if delay.is_zero() {
            actions.extend(self.launch());
        } else {
            actions.extend(self.enter(Status::WaitingRestart));
            actions.push(Action::Schedule {
                kind: TimerKind::Restart,
                after: delay,
                gen: self.gen,
            });
        }
        actions
    }

    fn launch(&mut self) -> Vec<Action> {
        let mut actions = self.enter(Status::Launching);
        actions.push(Action::Spawn);
        actions
    }

    fn stop(&mut self, spec: &AppSpec) -> Vec<Action> {
        let mut actions = self.enter(Status::Stopping);
        actions.push(Action::SignalStop);
        actions.push(self.schedule(TimerKind::Kill, spec.kill_timeout_ms));
        actions
    }

    /// Moves to `status`; timers of the previous state become stale.
    fn enter(&mut self, status: Status) -> Vec<Action> {
        self.status = status;
        self.gen += 1;
        vec![]
    }

    fn schedule(&self, kind: TimerKind, after_ms: u64) -> Action {
        Action::Schedule {
            kind,
            after: Duration::from_millis(after_ms),
            gen: self.gen,
        }
    }
}

/// Delay before a restart that follows `unstable` consecutive unstable ones:
/// `restart_delay` for the first, then 100 ms doubling, capped at `backoff_max`.
pub fn backoff_delay(spec: &AppSpec, unstable: u32) -> Duration {
    let base = Duration::from_millis(spec.restart_delay_ms);
    if unstable == 0 {
        return base;
    }
    let grown = BACKOFF_BASE.saturating_mul(1u32 << (unstable - 1).min(20));
    grown
        .min(Duration::from_millis(spec.backoff_max_ms))
        .max(base)
}

#[cfg(test)]
mod tests;
