//! The one owner of the process table: an actor that receives client
//! requests, child exits and timers, and drives each app's lifecycle.

mod table;

use crate::home::Home;
use crate::lifecycle::{Action, Event, ExitKind, TimerKind};
use crate::logs::{pipe, AppLogs, Logs};
use crate::{reaper, spawn};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use sup_proto::{validate_name, AppSpec, Request, Response, Target};
use table::{Instance, Table};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// A message for the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A client request and where to send its answer.
    Request(Request, oneshot::Sender<Response>),
    /// A timer set by a lifecycle fired.
    Timer {
        /// App id.
        app: u32,
        /// Lifecycle generation it was set in.
        gen: u64,
        /// What it was for.
        kind: TimerKind,
    },
}

/// What a pending reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Every app is neither launching nor stopping.
    Settled,
    /// Every app is gone from the table.
    Gone,
}

/// How a request is answered.
enum Answer {
    /// At once.
    Now(Response),
    /// With the apps' state once they reach a condition.
    When(Vec<u32>, Until),
}

struct Waiter {
    ids: Vec<u32>,
    until: Until,
    reply: oneshot::Sender<Response>,
}

/// The supervisor actor.
pub struct Supervisor {
    home: Home,
    table: Table,
    tx: mpsc::UnboundedSender<Msg>,
    waiters: Vec<Waiter>,
    /// Instances whose main process exited while stopping, and whose
    /// process group still has members.
    draining: Vec<u32>,
    /// Some while shutting down: the `kill` requests to answer once all is down.
    shutdown: Option<Vec<oneshot::Sender<Response>>>,
    started_at_ms: u64,
    logs: Logs,
}

/// How long shutdown waits for the last log lines to reach the disk.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Supervisor {
    /// A supervisor whose timers post back through `tx`.
    pub fn new(home: Home, tx: mpsc::UnboundedSender<Msg>, logs: Logs) -> Supervisor {
        Supervisor {
            logs,
            home,
            table: Table::default(),
            tx,
            waiters: Vec::new(),
            draining: Vec::new(),
            shutdown: None,
            started_at_ms: epoch_ms(SystemTime::now()),
        }
    }

    /// Runs until a shutdown (SIGTERM, SIGINT or `kill`) has stopped every app.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> std::io::Result<()> {
        // Registered before the first spawn, so no exit goes unnoticed.
        let mut sigchld = signal(SignalKind::child())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                Some(msg) = rx.recv() => self.on_msg(msg),
                _ = sigchld.recv() => self.reap(),
                _ = sigterm.recv() => self.begin_shutdown(None, "SIGTERM"),
                _ = sigint.recv() => self.begin_shutdown(None, "SIGINT"),
            }
            self.settle();
            if self.shutdown.is_some() && self.table.iter().all(|app| app.lc.is_down()) {
                break;
            }
        }
        self.reap();
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(Response::Ok);
        }
        self.logs.finish(LOG_FLUSH_TIMEOUT).await;
        info!("all apps stopped; daemon exits");
        Ok(())
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Request(request, reply) => self.on_request(request, reply),
            Msg::Timer { app, gen, kind } => self.apply(app, Event::Timer { kind, gen }),
        }
    }

    fn on_request(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let answer = match request {
            Request::Kill => return self.begin_shutdown(Some(reply), "sup kill"),
            Request::Ping => Ok(Answer::Now(self.pong())),
            Request::List => {
                let ids = self.table.ids();
                Ok(Answer::Now(self.infos(&ids, false)))
            }
            Request::Describe(target) => self
                .table
                .resolve(&target)
                .map(|ids| Answer::Now(self.infos(&ids, true))),
            _ if self.shutdown.is_some() => Err(Response::error(
                "shutting_down",
                "the daemon is shutting down",
            )),
            Request::Add(spec) => self.add(*spec),
            Request::Start(target) => self.each(&target, Event::Start, Until::Settled),
            Request::Stop(target) => {
                self.each(&target, Event::Stop { by_user: true }, Until::Settled)
            }
            Request::Restart(target) => self.each(&target, Event::Restart, Until::Settled),
            Request::Delete(target) => self.delete(&target),
            Request::Flush(target) => return self.flush(&target, reply),
        };
        match answer {
            Ok(Answer::Now(response)) | Err(response) => {
                let _ = reply.send(response);
            }
            Ok(Answer::When(ids, until)) => self.waiters.push(Waiter { ids, until, reply }),
        }
    }

    fn pong(&self) -> Response {
        Response::Pong {
            version: sup_proto::SUP_VERSION.to_string(),
            pid: std::process::id(),
            started_at_ms: self.started_at_ms,
            home: self.home.dir().display().to_string(),
        }
    }

    fn add(&mut self, spec: AppSpec) -> Result<Answer, Response> {
        validate_name(&spec.name).map_err(|e| Response::error("bad_request", e.to_string()))?;
        Signal::from_str(&spec.stop_signal).map_err(|_| {
            Response::error(
                "bad_request",
                format!("unknown stop signal {:?}", spec.stop_signal),
            )
        })?;
        if let Some(id) = self.table.find_name(&spec.name) {
            return Err(Response::error(
                "conflict",
                format!(
                    "an app named {:?} already exists (id {id}); use `sup restart {}` or pick another --name",
                    spec.name, spec.name
                ),
            ));
        }
        info!(app = %spec.name, argv = ?spec.program.argv(&spec.args), "added");
        let logs = AppLogs::for_spec(&spec, &self.home.logs_dir());
        self.logs.open(&logs);
        let id = self.table.insert(spec, logs);
        self.apply(id, Event::Start);
        Ok(Answer::When(vec![id], Until::Settled))
    }

    /// Applies `event` to every app `target` names.
    fn each(&mut self, target: &Target, event: Event, until: Until) -> Result<Answer, Response> {
        let ids = self.table.resolve(target)?;
        for &id in &ids {
            self.apply(id, event.clone());
        }
        Ok(Answer::When(ids, until))
    }

    fn delete(&mut self, target: &Target) -> Result<Answer, Response> {
        let ids = self.table.resolve(target)?;
        for &id in &ids {
            if let Some(app) = self.table.get_mut(id) {
                app.deleting = true;
            }
        }
        self.each(target, Event::Stop { by_user: true }, Until::Gone)
            .map(|_| Answer::When(ids, Until::Gone))
    }

    /// Empties the logs of the apps `target` names; answers once done.
    fn flush(&mut self, target: &Target, reply: oneshot::Sender<Response>) {
        let ids = match self.table.resolve(target) {
            Ok(ids) => ids,
            Err(response) => {
                let _ = reply.send(response);
                return;
            }
        };
        let done: Vec<_> = ids
            .iter()
            .filter_map(|&id| self.table.get(id))
            .map(|app| self.logs.truncate(&app.logs))
            .collect();
        tokio::spawn(async move {
            for rx in done {
                let _ = rx.await;
            }
            let _ = reply.send(Response::Ok);
        });
    }

    fn begin_shutdown(&mut self, reply: Option<oneshot::Sender<Response>>, why: &str) {
        if self.shutdown.is_none() {
            info!("{why}: stopping every app, then exiting");
        }
        self.shutdown.get_or_insert_with(Vec::new).extend(reply);
        for id in self.table.ids() {
            self.apply(id, Event::Stop { by_user: false });
        }
    }

    /// Feeds `event` to app `id` and carries out the actions, which may
    /// themselves produce events (a spawn reports its outcome).
    fn apply(&mut self, id: u32, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let Some(app) = self.table.get_mut(id) else {
                return;
            };
            let before = app.lc.status();
            let actions = app.lc.handle(&app.spec, event);
            let after = app.lc.status();
            if before != after {
                info!(app = %app.spec.name, from = before.as_str(), to = after.as_str());
            }
            for action in actions {
                events.extend(self.act(id, action));
            }
        }
    }

    fn act(&mut self, id: u32, action: Action) -> Option<Event> {
        let app = self.table.get_mut(id)?;
        match action {
            Action::Spawn => match spawn_captured(&app.spec, &app.logs, &mut self.logs) {
                Ok(instance) => {
                    let pid = instance.pid;
                    app.instance = Some(instance);
                    self.table.index_pid(pid, id);
                    Some(Event::Spawned)
                }
                Err(err) => {
                    warn!(app = %app.spec.name, "spawn failed: {err}");
                    Some(Event::SpawnFailed(err.to_string()))
                }
            },
            Action::SignalStop => {
                let sig = Signal::from_str(&app.spec.stop_signal).unwrap_or(Signal::SIGTERM);
                signal_group(app.instance.as_ref(), sig);
                None
            }
            Action::KillGroup => {
                signal_group(app.instance.as_ref(), Signal::SIGKILL);
                None
            }
            Action::Schedule { kind, after, gen } => {
                if kind == TimerKind::Restart {
                    app.restart_due = Some(Instant::now() + after);
                }
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Msg::Timer { app: id, gen, kind });
                });
                None
            }
        }
    }

    /// Collects every exited child and routes each to its app.
    fn reap(&mut self) {
        for (pid, exit) in reaper::reap_all() {
            let Some(id) = self.table.unindex_pid(pid) else {
                continue;
            };
            self.main_exited(id, pid, exit);
        }
        let draining = std::mem::take(&mut self.draining);
        for id in draining {
            self.finish_if_drained(id);
        }
    }

    fn main_exited(&mut self, id: u32, pid: u32, exit: ExitKind) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        info!(app = %app.spec.name, pid, "exited: {exit}");
        let Some(inst) = app.instance.as_mut().filter(|i| i.pid == pid) else {
            return;
        };
        inst.exit = Some(exit);
        if app.lc.status() == sup_proto::Status::Stopping {
            // A graceful stop waits for the rest of the group to finish too.
            self.finish_if_drained(id);
        } else {
            self.instance_gone(id, exit);
        }
    }

    fn finish_if_drained(&mut self, id: u32) {
        let Some(inst) = self.table.get(id).and_then(|a| a.instance.as_ref()) else {
            return;
        };
        let Some(exit) = inst.exit else { return };
        if group_alive(inst.pid) {
            self.draining.push(id);
        } else {
            self.instance_gone(id, exit);
        }
    }

    fn instance_gone(&mut self, id: u32, exit: ExitKind) {
        // Its pipes are drained before a new instance can write, so the
        // last words of this one come first in the log.
        let old = self
            .table
            .get_mut(id)
            .and_then(|a| a.instance.as_mut())
            .map(|i| {
                i.end_captures();
                i.pid
            });
        self.apply(id, Event::Exited(exit));
        if let Some(app) = self.table.get_mut(id) {
            if app.instance.as_ref().map(|i| i.pid) == old {
                app.instance = None;
            }
        }
    }

    /// Answers the waiters whose condition holds and forgets deleted apps.
    fn settle(&mut self) {
        let gone: Vec<u32> = self
            .table
            .iter()
            .filter(|a| a.deleting && a.lc.is_down())
            .map(|a| a.id)
            .collect();
        for id in gone {
            if let Some(app) = self.table.get(id) {
                info!(app = %app.spec.name, "deleted");
                self.logs.close(&app.logs);
            }
            self.table.remove(id);
        }
        let mut pending = std::mem::take(&mut self.waiters);
        pending.retain(|w| !w.reply.is_closed());
        for waiter in pending {
            if self.holds(&waiter.ids, waiter.until) {
                let response = match waiter.until {
                    Until::Gone => Response::Ok,
                    Until::Settled => self.infos(&waiter.ids, false),
                };
                let _ = waiter.reply.send(response);
            } else {
                self.waiters.push(waiter);
            }
        }
    }

    fn holds(&self, ids: &[u32], until: Until) -> bool {
        ids.iter().all(|&id| match (self.table.get(id), until) {
            (None, _) => true,
            (Some(_), Until::Gone) => false,
            (Some(app), Until::Settled) => app.lc.is_settled(),
        })
    }

    /// `Apps` with the apps' current state and usage (and specs if `with_spec`).
    fn infos(&mut self, ids: &[u32], with_spec: bool) -> Response {
        let mut infos = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(app) = self.table.get_mut(id) {
                let logs = self.logs.info(&app.logs);
                infos.push(app.info(logs, with_spec));
            }
        }
        Response::Apps(infos)
    }
}

/// Spawns an instance with its stdout and stderr captured into `app_logs`.
fn spawn_captured(
    spec: &AppSpec,
    app_logs: &AppLogs,
    logs: &mut Logs,
) -> std::io::Result<Instance> {
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let env = spec
        .env
        .iter()
        .filter(|(k, _)| !spawn::PRIVATE_ENV.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let launch = spawn::Launch {
        argv: spec.program.argv(&spec.args),
        env,
        cwd: spec.cwd.clone(),
        stdout: Some(&out_write),
        stderr: Some(&err_write),
        ..spawn::Launch::default()
    };
    let pid = spawn::spawn(&launch)?;
    drop((out_write, err_write));
    let captures = vec![
        logs.capture(out_read, &app_logs.out)?,
        logs.capture(err_read, &app_logs.err)?,
    ];
    Ok(Instance::new(pid, captures))
}

fn signal_group(instance: Option<&Instance>, sig: Signal) {
    if let Some(inst) = instance {
        // ESRCH: the group is already gone, which is what we wanted.
        let _ = killpg(Pid::from_raw(inst.pid as i32), sig);
    }
}

fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
