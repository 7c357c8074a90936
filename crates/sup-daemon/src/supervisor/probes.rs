//! Liveness and readiness probes, scheduled on the event loop's timers.

use super::table::{ProbeKind, Role};
use super::{Msg, Supervisor};
use crate::health::Verdict;
use crate::lifecycle::{Event, ExitKind};
use crate::probe::{self, Outcome};
use std::time::{Duration, Instant};
use sup_proto::{Probe, Status};
use tracing::warn;

/// How often a readiness check runs until it passes.
const READY_EVERY: Duration = Duration::from_millis(100);

impl Supervisor {
    /// Starts liveness probing of the app's main instance (it just turned online).
    pub(super) fn start_liveness(&mut self, id: u32) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        let (Some(_), Some(inst)) = (&app.spec.health.liveness, &app.instance) else {
            return;
        };
        let every = Duration::from_millis(app.spec.health.interval_ms);
        self.after(
            every,
            Msg::ProbeDue {
                app: id,
                pid: inst.pid,
                kind: ProbeKind::Liveness,
            },
        );
    }

    /// Starts checking whether instance `pid` is ready (sd_notify needs no
    /// polling: its socket reports READY=1).
    pub(super) fn start_readiness(&mut self, id: u32, pid: u32) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        match &app.spec.health.readiness {
            None | Some(Probe::Notify) => {}
            Some(_) => self.after(
                READY_EVERY,
                Msg::ProbeDue {
                    app: id,
                    pid,
                    kind: ProbeKind::Readiness,
                },
            ),
        }
    }

    /// Whether instance `pid` still needs this kind of check.
    fn wants_probe(&self, id: u32, pid: u32, kind: ProbeKind) -> bool {
        let Some(app) = self.table.get(id) else {
            return false;
        };
        let main = app
            .instance
            .as_ref()
            .filter(|i| i.pid == pid && i.exit.is_none());
        match kind {
            ProbeKind::Liveness => main.is_some() && app.lc.status() == Status::Online,
            ProbeKind::Readiness => {
                main.is_some_and(|i| !i.ready) && app.lc.status() == Status::Launching
                    || app.reload.as_ref().is_some_and(|r| r.incoming.pid == pid)
            }
        }
    }

    pub(super) fn probe_due(&mut self, id: u32, pid: u32, kind: ProbeKind) {
        if !self.wants_probe(id, pid, kind) {
            return;
        }
        let Some(app) = self.table.get(id) else {
            return;
        };
        let probe = match kind {
            ProbeKind::Liveness => app.spec.health.liveness.clone(),
            ProbeKind::Readiness => app.spec.health.readiness.clone(),
        };
        let timeout = Duration::from_millis(app.spec.health.timeout_ms);
        let tx = self.tx.clone();
        match probe {
            Some(Probe::Http { url }) => report(tx, id, pid, kind, async move {
                probe::http(&url, timeout).await
            }),
            Some(Probe::Tcp { addr }) => report(tx, id, pid, kind, async move {
                probe::tcp(&addr, timeout).await
            }),
            Some(Probe::Cmd { line }) => {
                match self.spawn_helper(id, &line, Vec::new(), None, true, Role::Probe(kind)) {
                    Ok(probe_pid) => {
                        self.probe_cmds.insert(probe_pid, (pid, Instant::now()));
                        self.after(timeout, Msg::Deadline { pid: probe_pid });
                    }
                    Err(e) => self.probe_done(
                        id,
                        pid,
                        kind,
                        Outcome::new(false, format!("cannot run probe: {e}"), Instant::now()),
                    ),
                }
            }
            Some(Probe::Notify) | None => {}
        }
    }

    /// A command probe exited: exit code 0 passes.
    pub(super) fn probe_exited(
        &mut self,
        id: u32,
        probe_pid: u32,
        kind: ProbeKind,
        exit: ExitKind,
    ) {
        let Some((pid, started)) = self.probe_cmds.remove(&probe_pid) else {
            return;
        };
        let detail = match exit {
            ExitKind::Code(0) => "exit code 0".to_string(),
            ExitKind::Signal(9) => "timed out".to_string(),
            other => other.to_string(),
        };
        self.probe_done(id, pid, kind, Outcome::new(exit.success(), detail, started));
    }

    pub(super) fn probe_done(&mut self, id: u32, pid: u32, kind: ProbeKind, outcome: Outcome) {
        if !self.wants_probe(id, pid, kind) {
            return;
        }
        match kind {
            ProbeKind::Readiness if outcome.ok => self.instance_ready(id, pid),
            ProbeKind::Readiness => self.after(READY_EVERY, Msg::ProbeDue { app: id, pid, kind }),
            ProbeKind::Liveness => self.liveness_result(id, pid, outcome),
        }
    }

    fn liveness_result(&mut self, id: u32, pid: u32, outcome: Outcome) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let h = &app.spec.health;
        let counts = app
            .instance
            .as_ref()
            .is_some_and(|i| i.started.elapsed() >= Duration::from_millis(h.start_period_ms));
        let (retries, every) = (h.retries, Duration::from_millis(h.interval_ms));
        let detail = outcome.detail.clone();
        match app.health.record(outcome, retries, counts) {
            Verdict::Same => {}
            Verdict::Recovered => self.record(id, "healthy", detail),
            Verdict::Failing(n) => self.record(
                id,
                "unhealthy",
                format!("{n} of {retries} failures: {detail}"),
            ),
            Verdict::Unhealthy(why) => {
                warn!(app = %self.table.get(id).map_or("", |a| &a.spec.name), "{why}; restarting");
                self.record(id, "unhealthy", format!("{why}; restarting"));
                self.apply(id, Event::Unhealthy(why));
                return;
            }
        }
        self.after(
            every,
            Msg::ProbeDue {
                app: id,
                pid,
                kind: ProbeKind::Liveness,
            },
        );
    }

    /// Instance `pid` is ready: the main one turns online, a reload's new
    /// one takes over.
    pub(super) fn instance_ready(&mut self, id: u32, pid: u32) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        if app.reload.as_ref().is_some_and(|r| r.incoming.pid == pid) {
            return self.promote(id);
        }
        let Some(inst) = app.instance.as_mut().filter(|i| i.pid == pid && !i.ready) else {
            return;
        };
        inst.ready = true;
        if app.lc.status() == Status::Launching {
            self.record(id, "ready", format!("pid {pid}"));
            self.apply(id, Event::Ready);
        }
    }
}

/// Runs a probe as a task on the event loop and posts its outcome back.
fn report(
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    app: u32,
    pid: u32,
    kind: ProbeKind,
    probe: impl std::future::Future<Output = Outcome> + Send + 'static,
) {
    tokio::spawn(async move {
        let outcome = probe.await;
        let _ = tx.send(Msg::ProbeDone {
            app,
            pid,
            kind,
            outcome,
        });
    });
}
