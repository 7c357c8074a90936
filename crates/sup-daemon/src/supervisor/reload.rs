//! Zero-downtime reload: a new instance shares the held sockets, and the
//! old one is stopped only once the new one is ready.

use super::table::{Reload, Role};
use super::{group_alive, signal_group, Msg, Supervisor};
use crate::lifecycle::{Event, ExitKind};
use nix::sys::signal::Signal;
use std::str::FromStr;
use std::time::Duration;
use sup_proto::{Probe, Response, Status, Target};
use tokio::sync::oneshot;
use tracing::info;

impl Supervisor {
    /// `sup reload`: answers once every app named is reloaded (or failed to).
    pub(super) fn reload(&mut self, target: &Target, reply: oneshot::Sender<Response>) {
        let ids = match self.table.resolve(target) {
            Ok(ids) => ids,
            Err(response) => {
                let _ = reply.send(response);
                return;
            }
        };
        let outcomes: Vec<_> = ids.into_iter().map(|id| self.reload_one(id)).collect();
        tokio::spawn(async move {
            let mut notes = Vec::new();
            let mut failures = Vec::new();
            for rx in outcomes {
                match rx.await {
                    Ok(Ok(note)) => notes.push(note),
                    Ok(Err(err)) => failures.push(err),
                    Err(_) => failures.push("the daemon dropped the reload".into()),
                }
            }
            let response = if failures.is_empty() {
                Response::Note(notes.join("\n"))
            } else {
                Response::error("reload_failed", failures.join("\n"))
            };
            let _ = reply.send(response);
        });
    }

    fn reload_one(&mut self, id: u32) -> oneshot::Receiver<Result<String, String>> {
        let (tx, rx) = oneshot::channel();
        let Some(app) = self.table.get_mut(id) else {
            return rx;
        };
        let name = app.spec.name.clone();
        if app.reload.is_some() {
            let _ = tx.send(Err(format!("{name}: a reload is already in progress")));
            return rx;
        }
        if app.spec.listen.is_empty() || app.lc.status() != Status::Online {
            let why = if app.spec.listen.is_empty() {
                "it holds no sockets (--listen), so it was restarted instead, with a short gap"
            } else {
                "it was not online, so it was restarted instead"
            };
            self.apply(id, Event::Restart);
            let _ = tx.send(Ok(format!("{name}: {why}")));
            return rx;
        }
        let incoming = match self.spawn_instance(id, Role::Incoming) {
            Ok(instance) => instance,
            Err(err) => {
                let _ = tx.send(Err(format!("{name}: cannot start a new instance: {err}")));
                return rx;
            }
        };
        let pid = incoming.pid;
        info!(app = %name, pid, "reload: new instance started");
        self.record(id, "reloading", format!("new instance pid {pid}"));
        let Some(app) = self.table.get_mut(id) else {
            return rx;
        };
        let (readiness, min_uptime, timeout) = (
            app.spec.health.readiness.clone(),
            Duration::from_millis(app.spec.min_uptime_ms),
            Duration::from_millis(app.spec.health.ready_timeout_ms),
        );
        app.reload = Some(Reload {
            incoming,
            reply: Some(tx),
        });
        match readiness {
            // Without a readiness signal, staying up min-uptime counts as ready.
            None => self.after(min_uptime, Msg::Ready { app: id, pid }),
            Some(Probe::Notify) => {}
            Some(_) => self.start_readiness(id, pid),
        }
        self.after(timeout, Msg::ReloadTimeout { app: id, pid });
        rx
    }

    /// The new instance is ready: it becomes the main one and the old one
    /// gets its stop signal and kill timeout.
    pub(super) fn promote(&mut self, id: u32) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let Some(mut reload) = app.reload.take() else {
            return;
        };
        if app.lc.status() != Status::Online {
            return self.fail_reload(id, reload, "the app left `online` during the reload".into());
        }
        reload.incoming.ready = true;
        let new_pid = reload.incoming.pid;
        let Some(old) = app.instance.replace(reload.incoming) else {
            return;
        };
        let old_pid = old.pid;
        let sig = Signal::from_str(&app.spec.stop_signal).unwrap_or(Signal::SIGTERM);
        let kill_after = Duration::from_millis(app.spec.kill_timeout_ms);
        let name = app.spec.name.clone();
        signal_group(Some(old_pid), sig);
        app.retired.push(old);
        app.health.reset();
        self.table.set_role(new_pid, Role::Main);
        self.table.set_role(old_pid, Role::Retired);
        self.after(
            kill_after,
            Msg::RetiredDeadline {
                app: id,
                pid: old_pid,
            },
        );
        self.apply(id, Event::Reloaded);
        self.start_liveness(id);
        info!(app = %name, old_pid, new_pid, "reloaded");
        self.record(id, "reloaded", format!("pid {old_pid} -> {new_pid}"));
        if let Some(reply) = reload.reply {
            let _ = reply.send(Ok(format!("{name}: reloaded, pid {old_pid} -> {new_pid}")));
        }
    }

    /// The reload's new instance exited before it was ready.
    pub(super) fn incoming_exited(&mut self, id: u32, pid: u32, exit: ExitKind) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        if app.reload.as_ref().is_some_and(|r| r.incoming.pid == pid) {
            let mut reload = app.reload.take().expect("checked above");
            reload.incoming.exit = Some(exit);
            reload.incoming.end_captures();
            self.fail_reload(
                id,
                reload,
                format!("the new instance exited before it was ready ({exit})"),
            );
        }
    }

    pub(super) fn reload_timed_out(&mut self, id: u32, pid: u32) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        if app.reload.as_ref().is_some_and(|r| r.incoming.pid == pid) {
            let reload = app.reload.take().expect("checked above");
            let why = format!(
                "the new instance was not ready within {} ms",
                app.spec.health.ready_timeout_ms
            );
            self.fail_reload(id, reload, why);
        }
    }

    /// Gives up a reload in progress (the old instance died, or shutdown).
    pub(super) fn cancel_reload(&mut self, id: u32, why: &str) {
        if let Some(reload) = self.table.get_mut(id).and_then(|a| a.reload.take()) {
            self.fail_reload(id, reload, why.to_string());
        }
    }

    /// Kills the new instance; the old one goes on serving.
    fn fail_reload(&mut self, id: u32, reload: Reload, why: String) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let name = app.spec.name.clone();
        let pid = reload.incoming.pid;
        // Its whole group goes; it is forgotten once the group is empty.
        signal_group(Some(pid), Signal::SIGKILL);
        app.retired.push(reload.incoming);
        self.table.set_role(pid, Role::Retired);
        self.prune_retired(id);
        tracing::warn!(app = %name, "reload failed: {why}");
        self.record(id, "reload-failed", why.clone());
        if let Some(reply) = reload.reply {
            let _ = reply.send(Err(format!(
                "{name}: reload failed: {why}; the old instance keeps serving"
            )));
        }
    }

    /// The main process of an old instance (retired by a reload) exited;
    /// the rest of its group may still be finishing.
    pub(super) fn retired_exited(&mut self, id: u32, pid: u32, exit: ExitKind) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        if let Some(old) = app.retired.iter_mut().find(|i| i.pid == pid) {
            old.exit = Some(exit);
            old.end_captures();
        }
        self.prune_retired(id);
    }

    /// Forgets the retired instances whose process group is empty.
    pub(super) fn prune_retired(&mut self, id: u32) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        app.retired
            .retain(|i| i.exit.is_none() || group_alive(i.pid));
    }

    /// The kill timeout of a retired instance ran out: SIGKILL its group,
    /// main process or not (its children may hold the held socket).
    pub(super) fn retired_deadline(&mut self, id: u32, pid: u32) {
        let retired = self
            .table
            .get(id)
            .is_some_and(|a| a.retired.iter().any(|i| i.pid == pid));
        if retired {
            signal_group(Some(pid), Signal::SIGKILL);
        }
    }
}
