//! Running the liveness and readiness checks an app's machine asks for.

use super::table::Role;
use super::{Msg, Supervisor};
use crate::lifecycle::ExitKind;
use crate::machine::{Input, ProbeKind};
use crate::probe::{self, Outcome};
use std::time::{Duration, Instant};
use sup_proto::Probe;

impl Supervisor {
    /// Runs a check of instance `pid`, unless its machine no longer wants it.
    pub(super) fn probe_due(&mut self, id: u32, pid: u32, kind: ProbeKind) {
        let Some(app) = self
            .table
            .get(id)
            .filter(|a| a.machine.wants_probe(pid, kind))
        else {
            return;
        };
        let probe = match kind {
            ProbeKind::Liveness => app.spec.health.liveness.clone(),
            ProbeKind::Readiness => app.spec.health.readiness.clone(),
        };
        let timeout = Duration::from_millis(app.spec.health.timeout_ms);
        let tx = self.tx.clone();
        match probe {
            Some(Probe::Http { url }) => {
                // The instance's connection from its last probe of this kind.
                let kept = self
                    .table
                    .get_mut(id)
                    .and_then(|a| a.procs.get_mut(&pid))
                    .and_then(|i| i.probe_conn.take())
                    .filter(|(of, _)| *of == kind)
                    .map(|(_, kept)| kept);
                report(tx, id, pid, kind, async move {
                    probe::http(&url, timeout, kept).await
                })
            }
            Some(Probe::Tcp { addr }) => report(tx, id, pid, kind, async move {
                (probe::tcp(&addr, timeout).await, None)
            }),
            Some(Probe::Cmd { line }) => {
                match self.spawn_helper(id, &line, Vec::new(), None, true, Role::Probe(kind)) {
                    Ok(probe_pid) => {
                        self.probe_cmds.insert(probe_pid, (pid, Instant::now()));
                        self.after(timeout, Msg::Deadline { pid: probe_pid });
                    }
                    Err(e) => {
                        let outcome =
                            Outcome::new(false, format!("cannot run probe: {e}"), Instant::now());
                        self.apply(id, Input::Probed { pid, kind, outcome });
                    }
                }
            }
            Some(Probe::Notify | Probe::Message) | None => {}
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
        let outcome = Outcome::new(exit.success(), detail, started);
        self.apply(id, Input::Probed { pid, kind, outcome });
    }
}

/// Runs a probe as a task on the event loop and posts its outcome back,
/// with the connection to keep for the next one.
fn report(
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    app: u32,
    pid: u32,
    kind: ProbeKind,
    probe: impl std::future::Future<Output = (Outcome, Option<probe::Kept>)> + Send + 'static,
) {
    tokio::spawn(async move {
        let (outcome, kept) = probe.await;
        let _ = tx.send(Msg::ProbeDone {
            app,
            pid,
            kind,
            outcome,
            kept,
        });
    });
}
