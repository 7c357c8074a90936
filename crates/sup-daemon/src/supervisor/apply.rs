//! `Request::Apply`: a known app takes a new spec (`sup start FILE`,
//! `sup reload FILE`, `--update-env`). As with a new app, the spec is on
//! disk before it is used: the app's state file is written first, and
//! only then is the app restarted or reloaded with it. If the write fails,
//! the app keeps its old spec and the request fails with the reason.

use super::{Answer, Msg, Supervisor, Until};
use crate::logs::AppLogs;
use crate::machine::Input;
use crate::persist::{SavedApp, Snapshot};
use sup_proto::{AppSpec, ErrorKind, Response, Target};
use tokio::sync::oneshot;

/// A new spec whose state file is being written.
#[derive(Debug)]
pub struct PendingApply {
    id: u32,
    spec: AppSpec,
    reload: bool,
    reply: oneshot::Sender<Response>,
}

impl Supervisor {
    /// Checks the new spec against the app's and has it written;
    /// [`Supervisor::applied`] goes on from there.
    pub(super) fn apply_spec(
        &mut self,
        spec: AppSpec,
        reload: bool,
        reply: oneshot::Sender<Response>,
    ) {
        if let Err(response) = self.check_apply(&spec) {
            let _ = reply.send(response);
            return;
        }
        let Some((id, app)) = self
            .table
            .find_name(&spec.name)
            .and_then(|id| Some((id, self.table.get(id)?)))
        else {
            return;
        };
        let saved = SavedApp {
            spec: &spec,
            ..super::persistence::saved_app(app, true)
        };
        let data = match serde_json::to_vec(&Snapshot::new(vec![saved])) {
            Ok(data) => data,
            Err(e) => {
                let _ = reply.send(Response::error(ErrorKind::Internal, e.to_string()));
                return;
            }
        };
        let (ack, written) = oneshot::channel();
        self.state.put(id, data, Some(ack));
        let pending = Box::new(PendingApply {
            id,
            spec,
            reload,
            reply,
        });
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = written
                .await
                .unwrap_or_else(|_| Err("the state writer has stopped".into()));
            let _ = tx.send(Msg::Applied(pending, result));
        });
    }

    /// The app exists and the new spec keeps what cannot change in place.
    fn check_apply(&self, spec: &AppSpec) -> Result<(), Response> {
        let Some(app) = self
            .table
            .find_name(&spec.name)
            .and_then(|id| self.table.get(id))
        else {
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
        Ok(())
    }

    /// The new spec is on disk (or could not be written): use it and
    /// restart or reload the app, or refuse with the reason.
    pub(super) fn applied(&mut self, pending: Box<PendingApply>, result: Result<(), String>) {
        let PendingApply {
            id,
            spec,
            reload,
            reply,
        } = *pending;
        if let Err(why) = result {
            // The file may hold either spec now: write the one in force.
            self.state_dirty.insert(id);
            let message = format!("{} keeps its old spec: {why}", spec.name);
            let _ = reply.send(Response::error(ErrorKind::Internal, message));
            return;
        }
        let logs_dir = self.home.logs_dir();
        let Some(app) = self.table.get_mut(id) else {
            let _ = reply.send(Response::error(
                ErrorKind::NotFound,
                format!("{} was deleted", spec.name),
            ));
            return;
        };
        let count = spec.instances as usize;
        app.logs = AppLogs::for_spec(&spec, &logs_dir);
        app.spec = spec;
        let scaled = app.machine.instance_count() != count;
        let logs = app.logs.clone();
        self.logs.open(&logs);
        self.state_dirty.insert(id);
        if scaled {
            self.apply(id, Input::Scale { to: count });
            self.instances_changed(id);
        }
        if reload {
            return self.reload(&Target::Id(id), reply);
        }
        match self.each(&Target::Id(id), Input::Restart, Until::Settled) {
            Ok(Answer::When(ids, until)) => self.answer_when(ids, until, reply),
            Ok(Answer::Now(response)) | Err(response) => {
                let _ = reply.send(response);
            }
        }
    }
}
