//! Changes to the app set (`start` of a new app, `delete`) are on disk
//! before the CLI hears they are done: the app's live state file is
//! written (or removed) first, by the state writer thread, and the change
//! is applied only once that succeeded. If it fails, the request fails
//! with the reason and nothing changed.

use super::{Msg, Supervisor, Until, Waiter};
use crate::logs::AppLogs;
use crate::machine::Input;
use crate::persist::{SavedApp, Snapshot};
use crate::sockets::Held;
use sup_proto::{validate_name, AppSpec, ErrorKind, Response, Target};
use tokio::sync::oneshot;
use tracing::info;

/// A new app whose state file is being written; it starts once it is.
#[derive(Debug)]
pub struct PendingAdd {
    id: u32,
    spec: AppSpec,
    sockets: Vec<Held>,
    wait: bool,
    reply: oneshot::Sender<Response>,
}

/// What the state writer answered for each app of a `delete`.
pub type Removals = Vec<(u32, Result<(), String>)>;

/// The writer's answer, or why there is none.
pub(super) async fn outcome(ack: oneshot::Receiver<Result<(), String>>) -> Result<(), String> {
    ack.await
        .unwrap_or_else(|_| Err("the state writer has stopped".into()))
}

impl Supervisor {
    /// `sup start` of a new app: checks it, reserves its id and name, and
    /// has its state file written; [`Supervisor::added`] goes on from there.
    pub(super) fn add(&mut self, spec: AppSpec, wait: bool, reply: oneshot::Sender<Response>) {
        let sockets = match self.admit(&spec) {
            Ok(sockets) => sockets,
            Err(response) => {
                let _ = reply.send(response);
                return;
            }
        };
        let id = self.table.reserve_id();
        let saved = SavedApp {
            id,
            spec: &spec,
            stopped_by_user: false,
            was_running: true,
            instance: None,
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
        self.adding.insert(spec.name.clone(), id);
        let pending = Box::new(PendingAdd {
            id,
            spec,
            sockets,
            wait,
            reply,
        });
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = outcome(written).await;
            let _ = tx.send(Msg::Added(pending, result));
        });
    }

    /// `sup start FILE`: adds the apps in order (ids in the file's order),
    /// each as [`Supervisor::add`] does, and answers once with each app's
    /// answer. The state writes queue up meanwhile, so the writer does them
    /// back to back rather than one per round trip of the CLI.
    pub(super) fn add_many(&mut self, specs: Vec<AppSpec>, reply: oneshot::Sender<Response>) {
        let answers: Vec<oneshot::Receiver<Response>> = specs
            .into_iter()
            .map(|spec| {
                let (one, answer) = oneshot::channel();
                self.add(spec, false, one);
                answer
            })
            .collect();
        tokio::spawn(async move {
            let mut all = Vec::with_capacity(answers.len());
            for answer in answers {
                all.push(answer.await.unwrap_or_else(|_| {
                    Response::error(ErrorKind::Internal, "the daemon is stopping")
                }));
            }
            let _ = reply.send(Response::Batch(all));
        });
    }

    /// Checks a new app's spec and name, and binds its sockets (so that an
    /// address in use is an error now).
    fn admit(&self, spec: &AppSpec) -> Result<Vec<Held>, Response> {
        validate_name(&spec.name)
            .map_err(|e| Response::error(ErrorKind::BadRequest, e.to_string()))?;
        spec.check()
            .map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        let taken = self.table.find_name(&spec.name);
        if let Some(id) = taken.or_else(|| self.adding.get(&spec.name).copied()) {
            return Err(Response::error(
                ErrorKind::Conflict,
                format!(
                    "an app named {:?} already exists (id {id}); use `sup restart {}` or pick another --name",
                    spec.name, spec.name
                ),
            ));
        }
        crate::creds::resolve(spec).map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        self.owner
            .check_limits(spec)
            .map_err(|e| Response::error(ErrorKind::BadRequest, e))?;
        crate::sockets::bind_all(&spec.listen)
            .map_err(|e| Response::error(ErrorKind::BadRequest, e))
    }

    /// The new app's state file is written (or could not be): start it, or
    /// refuse with the reason.
    pub(super) fn added(&mut self, pending: Box<PendingAdd>, result: Result<(), String>) {
        let PendingAdd {
            id,
            spec,
            sockets,
            wait,
            reply,
        } = *pending;
        self.adding.remove(&spec.name);
        if let Err(why) = result {
            let message = format!("{} was not started: {why}", spec.name);
            let _ = reply.send(Response::error(ErrorKind::Internal, message));
            return;
        }
        if self.shutdown.is_some() {
            let _ = reply.send(Response::error(
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            ));
            return;
        }
        info!(app = %spec.name, argv = ?spec.program.argv(&spec.args), "added");
        let stem = self.table.log_stem(id, &spec.name);
        let logs = AppLogs::for_spec(&spec, &self.home.logs_dir(), &stem, self.console);
        self.logs.open(&logs);
        let id = self.table.insert_with_id(id, spec, logs);
        if let Some(app) = self.table.get_mut(id) {
            app.sockets = sockets;
        }
        self.apply(id, Input::Start);
        let until = if wait { Until::Settled } else { Until::Spawned };
        self.answer_when(vec![id], until, reply);
    }

    /// `sup delete`: removes the apps' state files first, then stops them;
    /// [`Supervisor::removed`] goes on from there. Deleting one instance
    /// (`api:2`) changes its app, not the app set.
    pub(super) fn delete(&mut self, target: &Target, reply: oneshot::Sender<Response>) {
        let ids = match self.table.resolve_slot(target) {
            Ok((ids, None)) => ids,
            Ok((ids, Some(slot))) => return self.delete_instance(ids, slot, reply),
            Err(response) => {
                let _ = reply.send(response);
                return;
            }
        };
        let acks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let (ack, removed) = oneshot::channel();
                self.removing.insert(id);
                self.state.remove(id, Some(ack));
                (id, removed)
            })
            .collect();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut results = Vec::with_capacity(acks.len());
            for (id, removed) in acks {
                results.push((id, outcome(removed).await));
            }
            let _ = tx.send(Msg::Removed(results, reply));
        });
    }

    /// `sup delete api:N`: one instance fewer, on disk first; the last
    /// instance is the app's, which `sup delete api` deletes.
    fn delete_instance(&mut self, ids: Vec<u32>, slot: usize, reply: oneshot::Sender<Response>) {
        let mut changes = Vec::new();
        for id in ids {
            let Some(app) = self.table.get(id) else {
                continue;
            };
            if app.machine.instance_count() <= 1 {
                let why = format!(
                    "{name}:{slot} is {name}'s only instance; `sup delete {name}` deletes the app",
                    name = app.spec.name
                );
                let _ = reply.send(Response::error(ErrorKind::BadRequest, why));
                return;
            }
            let spec = AppSpec {
                instances: app.spec.instances.saturating_sub(1).max(1),
                ..app.spec.clone()
            };
            changes.push((id, spec));
        }
        self.change_specs(changes, super::apply::Then::Remove(slot), reply);
    }

    /// The state files of a `delete` are gone (or some could not be
    /// removed): delete those apps; an app whose file stays is kept.
    pub(super) fn removed(&mut self, results: Removals, reply: oneshot::Sender<Response>) {
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        for (id, result) in results {
            self.removing.remove(&id);
            match result {
                Ok(()) if self.table.get(id).is_some() => {
                    self.apply(id, Input::Delete);
                    deleted.push(id);
                }
                Ok(()) => {}
                Err(why) => {
                    // Its file may be half removed: write it again.
                    self.state_dirty.insert(id);
                    failed.push(why);
                }
            }
        }
        if failed.is_empty() {
            self.answer_when(deleted, Until::Gone, reply);
            return;
        }
        let mut message = format!("cannot delete: {}", failed.join("; "));
        if !deleted.is_empty() {
            message.push_str(&format!(" (the other {} apps are deleted)", deleted.len()));
        }
        let _ = reply.send(Response::error(ErrorKind::Internal, message));
    }

    /// Answers `reply` once `ids` reach `until` (checked after each turn
    /// of the event loop).
    pub(super) fn answer_when(
        &mut self,
        ids: Vec<u32>,
        until: Until,
        reply: oneshot::Sender<Response>,
    ) {
        self.waiters.push(Waiter::new(ids, until, reply));
    }
}
