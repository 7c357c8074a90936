//! `save`, `resurrect`, the live state file, and recovery after a daemon
//! that died without a clean shutdown.

use super::{Answer, Supervisor, Until};
use crate::logs::AppLogs;
use crate::machine::Input;
use crate::persist::{self, is_running, should_start, LiveInstance, LoadError, SavedApp, Snapshot};
use crate::plural;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, ErrorKind, Response, Severity};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Least time between two writes of the state file for status changes.
const STATE_COALESCE: Duration = Duration::from_millis(200);

/// What a restore did.
#[derive(Debug, Default)]
struct Restored {
    /// The ids of the apps started.
    ids: Vec<u32>,
    started: Vec<String>,
    stopped: Vec<String>,
    skipped: Vec<String>,
}

impl Supervisor {
    /// The apps as a snapshot (the dump).
    fn snapshot(&self) -> Snapshot<&AppSpec> {
        let apps = self
            .table
            .iter()
            .filter(|app| !app.machine.deleting())
            .map(|app| saved_app(app, false))
            .collect();
        Snapshot::new(apps)
    }

    /// `sup save`: writes the dump (fsynced, previous one kept as backup)
    /// on a blocking thread, and answers once it is on disk.
    pub(super) fn save(&mut self, force: bool, reply: oneshot::Sender<Response>) {
        let snapshot = self.snapshot();
        let count = snapshot.apps.len();
        if count == 0 && !force {
            let _ = reply.send(Response::error(
                ErrorKind::BadRequest,
                "there are no apps to save; `sup save --force` saves the empty list over the current dump",
            ));
            return;
        }
        let path = self.home.dump();
        let data = match serde_json::to_vec_pretty(&snapshot) {
            Ok(data) => data,
            Err(e) => {
                let _ = reply.send(Response::error(ErrorKind::Internal, e.to_string()));
                return;
            }
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let write = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || persist::write_atomic(&path, &data, true, true))
            };
            let response = match write.await.map_err(std::io::Error::other).and_then(|r| r) {
                Ok(()) => {
                    let _ = tx.send(super::Msg::Saved);
                    info!(apps = count, "saved {}", path.display());
                    let apps = plural::count(count as u64, "app");
                    Response::Note(format!("saved {apps} to {}", path.display()))
                }
                Err(e) => Response::error(
                    ErrorKind::Internal,
                    format!("cannot write {}: {e}", path.display()),
                ),
            };
            let _ = reply.send(response);
        });
    }

    /// `sup resurrect` (and `sup daemon --resurrect`): brings back the dump.
    /// `sup resurrect`: the dump's apps back, answered once those started
    /// are spawned.
    pub(super) fn resurrect(&mut self) -> Answer {
        let (snapshot, warning) = match persist::read_dump(&self.home.dump()) {
            Ok(loaded) => loaded,
            Err(err @ LoadError::Missing(_)) => {
                return Answer::Now(Response::error(ErrorKind::NotFound, err.to_string()))
            }
            Err(err) => {
                warn!("{err}");
                return Answer::Now(Response::error(ErrorKind::BadDump, err.to_string()));
            }
        };
        if let Some(w) = &warning {
            warn!("{w}");
        }
        self.dump_warning = warning.clone();
        let done = self.restore(snapshot.apps);
        let mut note = format!(
            "resurrected {}: {} started, {} kept stopped, {} already running",
            plural::count((done.started.len() + done.stopped.len()) as u64, "app"),
            done.started.len(),
            done.stopped.len(),
            done.skipped.len()
        );
        if !done.skipped.is_empty() {
            note.push_str(&format!(" ({})", done.skipped.join(", ")));
        }
        if let Some(w) = warning {
            note = format!("{}\n{note}", Severity::Warning.line(&w));
        }
        Answer::After(done.ids, Until::Spawned, Response::Note(note))
    }

    /// `sup daemon --resurrect`: as `resurrect`, but a missing dump is only
    /// worth a line in the log (a fresh machine has none).
    pub fn resurrect_at_boot(&mut self) {
        match self.resurrect() {
            Answer::After(_, _, Response::Note(note)) => info!("{note}"),
            Answer::Now(Response::Error { message, .. }) => warn!("resurrect: {message}"),
            _ => {}
        }
    }

    /// Adds saved apps (same ids where free) and starts those that should run.
    /// Names already present are skipped, never duplicated.
    fn restore(&mut self, apps: Vec<SavedApp>) -> Restored {
        let mut done = Restored::default();
        for saved in apps {
            let name = saved.spec.name.clone();
            // A name taken, or reserved by a start whose state file is
            // being written.
            if self.table.find_name(&name).is_some() || self.adding.contains_key(&name) {
                done.skipped.push(name);
                continue;
            }
            let start = should_start(&saved);
            // Its id, unless a pending start holds it.
            let wanted = if self.adding.values().any(|&id| id == saved.id) {
                self.table.reserve_id()
            } else {
                saved.id
            };
            let stem = self.table.log_stem(wanted, &saved.spec.name);
            let logs = AppLogs::for_spec(&saved.spec, &self.home.logs_dir(), &stem, self.console);
            self.logs.open(&logs);
            let id = self.table.insert_with_id(wanted, saved.spec, logs);
            if let Some(app) = self.table.get_mut(id) {
                app.machine.set_user_stopped(saved.stopped_by_user);
            }
            if start {
                self.apply(id, Input::Start);
                done.ids.push(id);
                done.started.push(name);
            } else {
                done.stopped.push(name);
            }
            self.state_dirty.insert(id);
        }
        self.state_urgent = true;
        done
    }

    /// Writes the live state of the apps that changed (by the state writer
    /// thread, one small file per app). Changes of the app set are written
    /// before they are applied (see `appset`); status and pid changes are
    /// coalesced, at most one write per [`STATE_COALESCE`]: the pids of a
    /// crash window that short are found by their tags anyway (see
    /// `stop_orphans`).
    pub(super) fn write_state(&mut self) {
        let urgent = std::mem::take(&mut self.state_urgent);
        if self.state_dirty.is_empty() {
            return;
        }
        let due = self.state_written + STATE_COALESCE;
        if !urgent && Instant::now() < due {
            if !self.state_flush_pending {
                self.state_flush_pending = true;
                self.after(due - Instant::now(), super::Msg::FlushState);
            }
            return;
        }
        self.state_written = Instant::now();
        for id in std::mem::take(&mut self.state_dirty) {
            let Some(app) = self.table.get(id) else {
                continue;
            };
            if app.machine.deleting() || self.removing.contains(&id) {
                continue;
            }
            match serde_json::to_vec(&Snapshot::new(vec![saved_app(app, true)])) {
                Ok(data) => self.state.put(id, data, None),
                Err(e) => warn!("cannot serialize the state of app {id}: {e}"),
            }
        }
    }

    /// `sup run`: the state another run left is forgotten, never restored.
    pub fn forget_state(&mut self) {
        persist::state::forget(&self.home);
    }

    /// At startup: if the previous daemon of this boot died without a clean
    /// shutdown, stop every process it left running (found by its live
    /// state and by their tags, so a corrupt file loses none), and start
    /// its apps afresh, so no app ever runs twice. What could not be read
    /// is kept aside and told on every answer until `sup save`.
    pub fn recover(&mut self) {
        let found = persist::state::recover(&self.home, &persist::boot_id());
        if !found.found {
            // Whatever a previous daemon's cgroups still hold goes.
            if !self.owner.stale().is_empty() {
                self.stop_orphans(&[]);
            }
            return;
        }
        warn!(
            apps = found.apps.len(),
            "the previous daemon died without a clean shutdown; restoring its apps"
        );
        self.stop_orphans(&found.apps);
        let done = self.restore(found.apps);
        info!(
            started = done.started.len(),
            stopped = done.stopped.len(),
            "restored the previous daemon's apps"
        );
        if found.warnings.is_empty() {
            return;
        }
        let warnings: Vec<String> = found
            .warnings
            .into_iter()
            .map(|w| format!("the previous daemon died, and its live state is damaged: {w} (`sup save` clears this warning)"))
            .collect();
        for w in &warnings {
            warn!("{w}");
        }
        self.warnings.send_replace(warnings);
    }
}

/// How an app is saved; `live` adds its running instance's identity (for
/// the live state, to find it after a crash).
pub(super) fn saved_app(app: &super::table::App, live: bool) -> SavedApp<&AppSpec> {
    SavedApp {
        id: app.id,
        spec: &app.spec,
        stopped_by_user: app.machine.first().lc().user_stopped(),
        was_running: is_running(app.machine.status()),
        instance: live
            .then(|| app.machine.first().running())
            .flatten()
            .and_then(|p| app.procs.get(&p.pid))
            .and_then(|i| {
                Some(LiveInstance {
                    pid: i.pid,
                    start_time: i.start_time?,
                })
            }),
    }
}
