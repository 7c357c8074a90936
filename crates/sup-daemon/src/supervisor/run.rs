//! `sup run`: the daemon as a container's entrypoint. It takes its apps
//! from its file or flags only (never from a state file or dump), writes
//! their lines to its own stdout and stderr, stops everything on SIGTERM,
//! SIGINT or SIGQUIT (SIGKILL on a second one), reloads its file on SIGHUP,
//! and exits once every app has ended for good, with the worst exit code.

use super::{Msg, Supervisor};
use std::collections::HashMap;
use sup_proto::{AppSpec, ErrorKind, Request, Response, Status};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Reads the apps of `sup run`'s file again (SIGHUP).
pub type Reloader = Box<dyn Fn() -> Result<Vec<AppSpec>, String> + Send + Sync>;

/// What `sup run` asked for, and what it has seen.
pub struct RunState {
    /// End as soon as an app turns `errored` (`--exit-on-error`).
    exit_on_error: bool,
    reload: Option<std::sync::Arc<Reloader>>,
    /// Each instance's last exit code, by (app, index) (a signal counts as
    /// 128 + its number).
    last_exit: HashMap<(u32, usize), i32>,
    /// Apps whose start was asked and not yet answered.
    adding: usize,
    /// The first apps have all been started: a later one that fails (from
    /// a SIGHUP) is logged, and the run goes on.
    started: bool,
    /// The code `sup run` exits with.
    pub code: i32,
}

impl RunState {
    /// `sup run`'s settings.
    pub fn new(exit_on_error: bool, reload: Option<Reloader>) -> RunState {
        RunState {
            exit_on_error,
            reload: reload.map(std::sync::Arc::new),
            last_exit: HashMap::new(),
            adding: 0,
            started: false,
            code: 0,
        }
    }
}

impl Supervisor {
    /// Starts `sup run`'s apps; one that can't be started ends the run
    /// with exit code 1.
    pub fn run_apps(&mut self, apps: Vec<AppSpec>) {
        for spec in apps {
            let name = spec.name.clone();
            let (reply, answer) = oneshot::channel();
            if let Some(run) = &mut self.run {
                run.adding += 1;
            }
            self.add(spec, false, reply);
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let why = match answer.await {
                    // A stop came first: that is no failure of the app's.
                    Ok(Response::Error {
                        kind: ErrorKind::ShuttingDown,
                        ..
                    }) => None,
                    Ok(Response::Error { message, .. }) => Some(message),
                    Err(_) => Some("no answer".to_string()),
                    Ok(_) => None,
                };
                let _ = tx.send(Msg::RunAdded { name, why });
            });
        }
    }

    /// An app of `sup run` was started, or could not be.
    pub(super) fn run_added(&mut self, name: &str, why: Option<String>) {
        let Some(run) = &mut self.run else { return };
        run.adding = run.adding.saturating_sub(1);
        let at_start = !run.started;
        run.started |= run.adding == 0;
        if let Some(why) = why {
            error!("{name}: {why}");
            if at_start {
                run.code = run.code.max(1);
                self.begin_shutdown(None, "an app could not be started");
            }
        }
    }

    /// Notes an exit of instance `pid` of app `id` for `sup run`'s exit code.
    pub(super) fn run_exited(&mut self, id: u32, pid: u32, exit: crate::lifecycle::ExitKind) {
        let slot = self
            .table
            .get(id)
            .and_then(|a| a.machine.slot_of_pid(pid))
            .unwrap_or(0);
        if let Some(run) = &mut self.run {
            run.last_exit.insert((id, slot), exit.code());
        }
    }

    /// After each turn of the loop: ends the run when every app has ended
    /// for good, or (with `--exit-on-error`) when one turned errored.
    pub(super) fn run_check(&mut self) {
        let Some(run) = &self.run else { return };
        if self.shutdown.is_some() || run.adding > 0 || self.table.iter().next().is_none() {
            return;
        }
        let errored = self
            .table
            .iter()
            .find(|a| a.machine.status() == Status::Errored)
            .map(|a| a.id);
        if let (true, Some(id)) = (run.exit_on_error, errored) {
            let code = run
                .last_exit
                .iter()
                .filter(|((app, _), _)| *app == id)
                .map(|(_, code)| *code)
                .max()
                .filter(|c| *c != 0)
                .unwrap_or(1);
            self.end_run(code, "an app is errored (--exit-on-error)");
            return;
        }
        let ended = self.table.iter().all(|a| {
            matches!(a.machine.status(), Status::Stopped | Status::Errored) && a.machine.is_quiet()
        });
        if ended {
            let worst = run.last_exit.values().copied().max().unwrap_or(0);
            self.end_run(worst, "every app has ended and none will restart");
        }
    }

    fn end_run(&mut self, code: i32, why: &str) {
        if let Some(run) = &mut self.run {
            run.code = code;
        }
        self.begin_shutdown(None, why);
    }

    /// SIGTERM, SIGINT or SIGQUIT: the first stops every app gracefully;
    /// under `sup run`, a second one during the stop kills them at once.
    pub(super) fn stop_signal(&mut self, name: &str) {
        if self.shutdown.is_some() && self.run.is_some() {
            warn!("{name} again: killing every app now");
            let pids: Vec<u32> = self
                .table
                .iter()
                .flat_map(|a| a.procs.keys().copied().collect::<Vec<_>>())
                .collect();
            for pid in pids {
                self.owner.kill(pid);
            }
            return;
        }
        self.begin_shutdown(None, name);
    }

    /// SIGHUP under `sup run`: reads the file again off the loop, then
    /// starts its new apps and reloads the changed ones (`reload FILE`).
    pub(super) fn run_reload(&mut self) {
        let Some(reload) = self.run.as_ref().and_then(|r| r.reload.clone()) else {
            info!("SIGHUP: nothing to reload (sup run without a file)");
            return;
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let apps = tokio::task::spawn_blocking(move || reload())
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            let _ = tx.send(Msg::RunReloaded(apps));
        });
    }

    /// The file was read again: each app is started, reloaded or left.
    pub(super) fn run_reloaded(&mut self, apps: Result<Vec<AppSpec>, String>) {
        let apps = match apps {
            Ok(apps) => apps,
            Err(why) => return error!("SIGHUP: the file cannot be used: {why}"),
        };
        for mut spec in apps {
            let known = self
                .table
                .find_name(&spec.name)
                .and_then(|id| self.table.get(id));
            // Addresses bound at an instance's ask stay held.
            if let Some(app) = known.filter(|_| spec.listen.is_empty()) {
                spec.listen = app.spec.listen.clone();
            }
            match known {
                None => self.run_apps(vec![spec]),
                Some(app) if app.spec == spec => {}
                Some(_) => {
                    info!(app = %spec.name, "SIGHUP: reloading its new spec");
                    let (reply, answer) = oneshot::channel();
                    let name = spec.name.clone();
                    tokio::spawn(async move {
                        if let Ok(Response::Error { message, .. }) = answer.await {
                            error!("SIGHUP: {name}: {message}");
                        }
                    });
                    self.on_request(
                        Request::Apply {
                            spec: Box::new(spec),
                            reload: true,
                        },
                        reply,
                    );
                }
            }
        }
    }
}
