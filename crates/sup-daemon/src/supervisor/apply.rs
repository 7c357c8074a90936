//! New specs for known apps: `Request::Apply` (`sup start FILE`,
//! `sup reload FILE`, `--update-env`) and `sup scale`. Both take the one
//! durable path here: each app's state file gets its new spec first; once
//! all are written the specs are swapped in (logs reopened where they
//! moved, instances added or stopped to the new count), and only then is
//! the app restarted, reloaded or left to settle. If a write fails, no
//! spec changes and the request fails with the reason.

use super::{Msg, Supervisor, Until};
use crate::logs::AppLogs;
use crate::machine::Input;
use crate::persist::{SavedApp, Snapshot};
use sup_proto::{AppSpec, ErrorKind, Response, Target};
use tokio::sync::oneshot;

/// What happens to the apps once their new specs are in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Nothing more: answer once the new instance counts settle (`scale`).
    Settle,
    /// Restart the app with its new spec (`start FILE`).
    Restart,
    /// Reload the app with its new spec (`reload FILE`).
    Reload,
    /// Remove this one instance (`delete api:2`), the others untouched.
    Remove(usize),
}

/// New specs whose state files are being written.
#[derive(Debug)]
pub struct PendingChange {
    changes: Vec<(u32, AppSpec)>,
    then: Then,
    reply: oneshot::Sender<Response>,
}

impl Supervisor {
    /// `Request::Apply`: checks the new spec against the app's and takes
    /// the durable path of [`Supervisor::change_specs`].
    pub(super) fn apply_spec(
        &mut self,
        spec: AppSpec,
        reload: bool,
        reply: oneshot::Sender<Response>,
    ) {
        match self.check_apply(&spec) {
            Ok(id) => {
                let then = if reload { Then::Reload } else { Then::Restart };
                self.change_specs(vec![(id, spec)], then, reply);
            }
            Err(response) => {
                let _ = reply.send(response);
            }
        }
    }

    /// The app's id, if it exists and the new spec keeps what cannot
    /// change in place.
    fn check_apply(&self, spec: &AppSpec) -> Result<u32, Response> {
        spec.check()
            .map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        self.owner
            .check_limits(spec)
            .map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        let found = self
            .table
            .find_name(&spec.name)
            .and_then(|id| Some((id, self.table.get(id)?)));
        let Some((id, app)) = found else {
            return Err(Response::error(
                ErrorKind::NotFound,
                format!("no app named {:?}", spec.name),
            ));
        };
        if app.spec.listen != spec.listen {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!(
                    "{}: its --listen sockets changed; `sup delete {}` first, then start it again",
                    spec.name, spec.name
                ),
            ));
        }
        if !(1..=sup_proto::spec::MAX_INSTANCES).contains(&spec.instances) {
            return Err(Response::error(
                ErrorKind::BadRequest,
                format!("{}: {} instances", spec.name, spec.instances),
            ));
        }
        crate::creds::resolve(spec).map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        Ok(id)
    }

    /// Has each app's state file written with its new spec;
    /// [`Supervisor::changed`] goes on once all are (or one is not).
    pub(super) fn change_specs(
        &mut self,
        changes: Vec<(u32, AppSpec)>,
        then: Then,
        reply: oneshot::Sender<Response>,
    ) {
        // A delete removes the state file first: a change written after it
        // would bring the deleted app back after a crash.
        let deleted = changes.iter().find(|(id, _)| {
            self.removing.contains(id) || self.table.get(*id).is_some_and(|a| a.machine.deleting())
        });
        if let Some((_, spec)) = deleted {
            let why = format!("{} is being deleted", spec.name);
            let _ = reply.send(Response::error(ErrorKind::Conflict, why));
            return;
        }
        let mut acks = Vec::with_capacity(changes.len());
        for (id, spec) in &changes {
            let Some(app) = self.table.get(*id) else {
                continue;
            };
            let saved = SavedApp {
                spec,
                ..super::persistence::saved_app(app, true)
            };
            match serde_json::to_vec(&Snapshot::new(vec![saved])) {
                Ok(data) => {
                    let (ack, written) = oneshot::channel();
                    self.state.put(*id, data, Some(ack));
                    acks.push(written);
                }
                Err(e) => {
                    let _ = reply.send(Response::error(ErrorKind::Internal, e.to_string()));
                    return;
                }
            }
        }
        let pending = Box::new(PendingChange {
            changes,
            then,
            reply,
        });
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut result = Ok(());
            for written in acks {
                result = result.and(super::appset::outcome(written).await);
            }
            let _ = tx.send(Msg::Changed(pending, result));
        });
    }

    /// The state files are written (or not): swap the specs in and go on
    /// as asked, or refuse (the files whose write worked are written
    /// again with the spec in force).
    pub(super) fn changed(&mut self, pending: PendingChange, result: Result<(), String>) {
        let PendingChange {
            changes,
            then,
            reply,
        } = pending;
        if let Err(why) = result {
            self.state_dirty.extend(changes.iter().map(|(id, _)| *id));
            let message = format!("nothing was changed: {why}");
            let _ = reply.send(Response::error(ErrorKind::Internal, message));
            return;
        }
        if let Then::Remove(slot) = then {
            // Before the new count is swapped in, so that it is this
            // instance that goes, not the highest.
            for (id, _) in &changes {
                self.apply(*id, Input::Remove { slot });
            }
        }
        let names: Vec<String> = changes.iter().map(|(_, s)| s.name.clone()).collect();
        let ids: Vec<u32> = changes
            .into_iter()
            .filter_map(|(id, spec)| self.swap_spec(id, spec).then_some(id))
            .collect();
        let one = match (then, ids.first()) {
            (Then::Settle | Then::Remove(_), _) => {
                return self.answer_when(ids, Until::Settled, reply)
            }
            (_, Some(&id)) => Target::Id(id),
            (_, None) => {
                let gone = format!("{} was deleted", names.join(", "));
                let _ = reply.send(Response::error(ErrorKind::NotFound, gone));
                return;
            }
        };
        if then == Then::Reload {
            return self.reload(&one, reply);
        }
        let answer = self.each(&one, Input::Restart, Until::Settled);
        self.answer(answer, reply);
    }

    /// Puts `spec` in force for app `id`: its logs reopened if they moved,
    /// its instances brought to the new count. False if the app is gone.
    fn swap_spec(&mut self, id: u32, mut spec: AppSpec) -> bool {
        let logs_dir = self.home.logs_dir();
        let stem = self.table.log_stem(id, &spec.name);
        self.table.share_env(&mut spec);
        let console = self.console;
        let Some(app) = self.table.get_mut(id) else {
            return false;
        };
        let count = spec.instances as usize;
        let logs_moved = app.spec.logs != spec.logs;
        if logs_moved {
            app.logs = AppLogs::for_spec(&spec, &logs_dir, &stem, console);
        }
        app.spec = spec;
        let scaled = app.machine.instance_count() != count;
        if logs_moved {
            let logs = app.logs.clone();
            self.logs.open(&logs);
        }
        self.table.spec_replaced(id);
        self.state_dirty.insert(id);
        if scaled {
            self.apply(id, Input::Scale { to: count });
        }
        // The machine has the last word on the count (`instances_changed`).
        self.instances_changed(id);
        true
    }
}
