//! The one owner of the process table: an actor that receives client
//! requests, child exits, probe results and timers, and drives each app's
//! lifecycle.

mod events;
mod handover;
mod instances;
mod persistence;
mod probes;
mod reload;
mod table;

use crate::events::Events;
use crate::home::Home;
use crate::lifecycle::{Action, Event, ExitKind, TimerKind};
use crate::logs::{AppLogs, Logs};
use crate::probe::Outcome;
use crate::reaper;
pub use handover::{read_handover, Handover, HANDOVER_VERSION};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::VecDeque;
use std::str::FromStr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use sup_proto::{validate_name, AppSpec, EventRecord, Request, Response, Status, Target};
use table::{ProbeKind, Role, Table};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// A message for the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A client request and where to send its answer.
    Request(Request, oneshot::Sender<Response>),
    /// `sup events --follow`: past events now, then new ones into `tx`.
    Follow {
        /// Whose events.
        target: Option<Target>,
        /// Where new events go.
        tx: mpsc::UnboundedSender<EventRecord>,
        /// The past events (or an error).
        reply: oneshot::Sender<Response>,
    },
    /// A timer set by a lifecycle fired.
    Timer {
        /// App id.
        app: u32,
        /// Lifecycle generation it was set in.
        gen: u64,
        /// What it was for.
        kind: TimerKind,
    },
    /// Time to probe instance `pid` of `app`.
    ProbeDue {
        /// App id.
        app: u32,
        /// The instance probed.
        pid: u32,
        /// Which check.
        kind: ProbeKind,
    },
    /// An HTTP or TCP probe finished.
    ProbeDone {
        /// App id.
        app: u32,
        /// The instance probed.
        pid: u32,
        /// Which check.
        kind: ProbeKind,
        /// What it found.
        outcome: Outcome,
    },
    /// Instance `pid` of `app` said READY=1, or stayed up long enough to count as ready.
    Ready {
        /// App id.
        app: u32,
        /// The instance.
        pid: u32,
    },
    /// A reload's new instance ran out of time to get ready.
    ReloadTimeout {
        /// App id.
        app: u32,
        /// The new instance.
        pid: u32,
    },
    /// An instance retired by a reload ran out of time to stop.
    RetiredDeadline {
        /// App id.
        app: u32,
        /// Its pid (and process group).
        pid: u32,
    },
    /// Time to write the state file (changes are coalesced).
    FlushState,
    /// The kill timeout of a process an app left outside its group ran out.
    StrayDeadline {
        /// Its pid.
        pid: u32,
        /// Its start time, so that a reused pid is never hit.
        start_time: u64,
    },
    /// A process (command probe or hook) ran out of time: kill its group.
    Deadline {
        /// Its pid.
        pid: u32,
    },
}

/// What a pending reply waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Every app has an instance or has settled (not stopping).
    Spawned,
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

/// How long shutdown waits for the last log lines to reach the disk.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    events: Events,
    /// Running command probes: probe pid -> (instance probed, start).
    probe_cmds: std::collections::HashMap<u32, (u32, Instant)>,
    /// Counter for unique per-instance names.
    seq: u64,
    /// Apps whose next instance waits until the last one's group is gone.
    spawn_after: Vec<(u32, u32)>,
    /// Apps stopped by the user in this turn: their escaped processes go too.
    escaped_of: Vec<u32>,
    /// The live state file's writer, and whether the state changed.
    state: crate::persist::StateWriter,
    state_dirty: bool,
    /// The app set changed: the state file must be written this turn.
    state_urgent: bool,
    /// When the state file was last written, and whether a write is scheduled.
    state_written: Instant,
    state_flush_pending: bool,
    /// Set when the last resurrect had to use the dump's backup.
    dump_warning: Option<String>,
    /// The fd holding the daemon lock (handed to the next daemon by `update`).
    lock_fd: std::os::fd::RawFd,
    /// SIGCHLD, SIGTERM and SIGINT, registered at creation.
    signals: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
}

impl Supervisor {
    /// A supervisor whose timers post back through `tx`.
    pub fn new(
        home: Home,
        tx: mpsc::UnboundedSender<Msg>,
        logs: Logs,
        lock_fd: std::os::fd::RawFd,
    ) -> std::io::Result<Supervisor> {
        // Registered before the first spawn, so no exit goes unnoticed.
        let signals = (
            signal(SignalKind::child())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        );
        Ok(Supervisor {
            lock_fd,
            signals: Some(signals),
            state: crate::persist::StateWriter::start(home.state())?,
            state_dirty: false,
            state_urgent: false,
            state_written: Instant::now(),
            state_flush_pending: false,
            dump_warning: None,
            home,
            table: Table::default(),
            tx,
            waiters: Vec::new(),
            draining: Vec::new(),
            shutdown: None,
            started_at_ms: epoch_ms(SystemTime::now()) as u64,
            logs,
            events: Events::default(),
            probe_cmds: std::collections::HashMap::new(),
            seq: 0,
            spawn_after: Vec::new(),
            escaped_of: Vec::new(),
        })
    }

    /// Runs until a shutdown (SIGTERM, SIGINT or `kill`) has stopped every app.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> std::io::Result<()> {
        let (mut sigchld, mut sigterm, mut sigint) = self.signals.take().expect("run once");
        // Children that exited before the loop started.
        self.reap();
        self.settle();
        loop {
            tokio::select! {
                Some(msg) = rx.recv() => match msg {
                    Msg::Request(Request::Update { binary }, reply) => {
                        let response = self.update(&binary, self.lock_fd).await;
                        let _ = reply.send(response);
                    }
                    other => self.on_msg(other),
                },
                _ = sigchld.recv() => self.reap(),
                _ = sigterm.recv() => self.begin_shutdown(None, "SIGTERM"),
                _ = sigint.recv() => self.begin_shutdown(None, "SIGINT"),
            }
            self.settle();
            self.write_state();
            if self.shutdown.is_some()
                && self
                    .table
                    .iter()
                    .all(|app| app.lc.is_down() && app.retired.is_empty() && app.hook_pid.is_none())
                && self.probe_cmds.is_empty()
            {
                break;
            }
        }
        self.reap();
        self.stop_strays();
        self.reap();
        self.state.finish_clean();
        self.logs.finish(LOG_FLUSH_TIMEOUT).await;
        for reply in self.shutdown.take().unwrap_or_default() {
            let _ = reply.send(Response::Ok);
        }
        info!("all apps stopped; daemon exits");
        Ok(())
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Request(request, reply) => self.on_request(request, reply),
            Msg::Follow { target, tx, reply } => {
                let response = self.follow(target, tx);
                let _ = reply.send(response);
            }
            Msg::Timer { app, gen, kind } => self.apply(app, Event::Timer { kind, gen }),
            Msg::ProbeDue { app, pid, kind } => self.probe_due(app, pid, kind),
            Msg::ProbeDone {
                app,
                pid,
                kind,
                outcome,
            } => self.probe_done(app, pid, kind, outcome),
            Msg::Ready { app, pid } => self.instance_ready(app, pid),
            Msg::ReloadTimeout { app, pid } => self.reload_timed_out(app, pid),
            Msg::RetiredDeadline { app, pid } => self.retired_deadline(app, pid),
            Msg::FlushState => self.state_flush_pending = false,
            Msg::StrayDeadline { pid, start_time } => self.stray_deadline(pid, start_time),
            Msg::Deadline { pid } => {
                // SIGKILL to a process group that is still ours (the pid is indexed until reaped).
                if self.table.role_of(pid).is_some() {
                    let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
            }
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
            Request::Events { target, .. } => self.past_events(target.as_ref()).map(Answer::Now),
            _ if self.shutdown.is_some() => Err(Response::error(
                "shutting_down",
                "the daemon is shutting down",
            )),
            Request::Add { spec, wait } => self.add(*spec, wait),
            Request::Start(target) => self.each(&target, Event::Start, Until::Settled),
            Request::Stop(target) => {
                self.each(&target, Event::Stop { by_user: true }, Until::Settled)
            }
            Request::Restart(target) => self.each(&target, Event::Restart, Until::Settled),
            Request::Delete(target) => self.delete(&target),
            Request::Flush(target) => return self.flush(&target, reply),
            Request::Reload(target) => return self.reload(&target, reply),
            Request::Save { force } => Ok(Answer::Now(self.save(force))),
            Request::Update { .. } => {
                Err(Response::error("internal", "update runs on the event loop"))
            }
            Request::Resurrect => Ok(Answer::Now(self.resurrect())),
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

    fn add(&mut self, spec: AppSpec, wait: bool) -> Result<Answer, Response> {
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
        // Bound before the first start, so that an address in use is an error now.
        let sockets = crate::sockets::bind_all(&spec.listen)
            .map_err(|e| Response::error("bad_request", e))?;
        info!(app = %spec.name, argv = ?spec.program.argv(&spec.args), "added");
        let logs = AppLogs::for_spec(&spec, &self.home.logs_dir());
        self.logs.open(&logs);
        let id = self.table.insert(spec, logs);
        self.state_urgent = true;
        if let Some(app) = self.table.get_mut(id) {
            app.sockets = sockets;
        }
        self.apply(id, Event::Start);
        Ok(Answer::When(
            vec![id],
            if wait { Until::Settled } else { Until::Spawned },
        ))
    }

    /// Applies `event` to every app `target` names.
    fn each(&mut self, target: &Target, event: Event, until: Until) -> Result<Answer, Response> {
        let ids = self.table.resolve(target)?;
        for &id in &ids {
            if matches!(event, Event::Stop { .. } | Event::Restart) {
                self.cancel_reload(id, "the app was stopped or restarted during the reload");
            }
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
            self.cancel_reload(id, "the app was deleted during the reload");
            self.apply(id, Event::Stop { by_user: true });
        }
        Ok(Answer::When(ids, Until::Gone))
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
            self.cancel_reload(id, "the daemon is shutting down");
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
                self.state_dirty = true;
                info!(app = %app.spec.name, from = before.as_str(), to = after.as_str());
                self.status_changed(id, before, after);
            }
            for action in actions {
                events.extend(self.act(id, action));
            }
        }
    }

    /// Side effects of a status change: events, probes, held sockets.
    fn status_changed(&mut self, id: u32, before: Status, after: Status) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let detail = match after {
            Status::WaitingRestart => app
                .restart_due
                .map(|due| {
                    format!(
                        "restart in {} ms",
                        due.saturating_duration_since(Instant::now()).as_millis()
                    )
                })
                .unwrap_or_default(),
            Status::Errored => app.lc.error().unwrap_or_default().to_string(),
            _ => String::new(),
        };
        if after == Status::Online {
            self.start_liveness(id);
        }
        if before == Status::Online {
            self.cancel_reload(id, "the app left `online` during the reload");
        }
        // A restart without a wait (the first after a crash, or `sup
        // restart`); one after a wait was recorded on entering the wait.
        if after == Status::Launching
            && matches!(
                before,
                Status::Online | Status::Launching | Status::Stopping
            )
        {
            self.record(id, "restarting", "now".into());
        }
        match after {
            Status::Online => self.record(id, "online", String::new()),
            Status::WaitingRestart => self.record(id, "restarting", detail),
            Status::Errored => self.record(id, "errored", detail),
            Status::Stopped => {
                if self.table.get(id).is_some_and(|a| a.lc.user_stopped()) {
                    self.escaped_of.push(id);
                }
                self.record(id, "stopped", String::new())
            }
            _ => {}
        }
        // Nobody will serve the held sockets: close them so that a proxy
        // fails fast instead of waiting for its timeout.
        if let Some(app) = self.table.get_mut(id) {
            if app.lc.is_down() && !app.sockets.is_empty() {
                info!(app = %app.spec.name, "closing held sockets");
                app.sockets.clear();
            }
        }
    }

    fn act(&mut self, id: u32, action: Action) -> Option<Event> {
        let app = self.table.get_mut(id)?;
        match action {
            Action::Spawn => {
                // What is left of the last instance's group (already sent
                // SIGKILL) may still hold a port: start once it is gone.
                let waiting = self
                    .spawn_after
                    .iter()
                    .find(|(i, _)| *i == id)
                    .map(|(_, g)| *g);
                let leftover = app
                    .instance
                    .as_ref()
                    .filter(|i| i.exit.is_some())
                    .map(|i| i.pid);
                self.spawn_after.retain(|(i, _)| *i != id);
                match waiting.or(leftover).filter(|&pgid| group_alive(pgid)) {
                    Some(pgid) => {
                        self.spawn_after.push((id, pgid));
                        None
                    }
                    None => Some(self.spawn_main(id)),
                }
            }
            Action::SignalStop => {
                let sig = Signal::from_str(&app.spec.stop_signal).unwrap_or(Signal::SIGTERM);
                match app.instance.as_ref().filter(|i| i.exit.is_none()) {
                    Some(inst) => {
                        signal_group(Some(inst.pid), sig);
                        None
                    }
                    // Nothing runs (its start waits for a leftover group):
                    // the stop is done at once. The wait stays on record, so
                    // a restart still waits for that group.
                    None => Some(Event::Exited(ExitKind::Signal(sig as i32))),
                }
            }
            Action::KillGroup => {
                signal_group(app.instance.as_ref().map(|i| i.pid), Signal::SIGKILL);
                None
            }
            Action::Schedule { kind, after, gen } => {
                if kind == TimerKind::Restart {
                    app.restart_due = Some(Instant::now() + after);
                }
                self.after(after, Msg::Timer { app: id, gen, kind });
                None
            }
        }
    }

    /// Posts `msg` to ourselves after `delay`.
    fn after(&self, delay: std::time::Duration, msg: Msg) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(msg);
        });
    }

    /// Collects every exited child and routes each to its owner.
    fn reap(&mut self) {
        for (pid, exit) in reaper::reap_all() {
            let Some((id, role)) = self.table.unindex_pid(pid) else {
                continue;
            };
            match role {
                Role::Main => self.main_exited(id, pid, exit),
                Role::Incoming => self.incoming_exited(id, pid, exit),
                Role::Retired => self.retired_exited(id, pid, exit),
                Role::Probe(kind) => self.probe_exited(id, pid, kind, exit),
                Role::Hook => self.hook_exited(id, exit),
            }
        }
        let draining = std::mem::take(&mut self.draining);
        for id in draining {
            self.finish_if_drained(id);
        }
        let ready: Vec<u32> = self
            .spawn_after
            .iter()
            .filter(|(_, pgid)| !group_alive(*pgid))
            .map(|(id, _)| *id)
            .collect();
        self.spawn_after.retain(|(id, _)| !ready.contains(id));
        for id in ready {
            let waiting = self.table.get(id).is_some_and(|a| {
                a.lc.status() == Status::Launching
                    && a.instance.as_ref().is_none_or(|i| i.exit.is_some())
            });
            if waiting {
                let event = self.spawn_main(id);
                self.apply(id, event);
            }
        }
        let with_retired: Vec<u32> = self
            .table
            .iter()
            .filter(|a| !a.retired.is_empty())
            .map(|a| a.id)
            .collect();
        for id in with_retired {
            self.prune_retired(id);
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
        let stopping = app.lc.status() == Status::Stopping;
        self.record(id, "exited", format!("pid {pid}, {exit}"));
        self.cancel_reload(id, "the old instance exited during the reload");
        if stopping {
            // A graceful stop waits for the rest of the group to finish too.
            self.finish_if_drained(id);
        } else if let Some(why) = self.daemonized(id, exit) {
            warn!(app = %self.table.get(id).map_or("", |a| &a.spec.name), "{why}");
            self.instance_gone(id, Event::Daemonized(why));
        } else {
            self.instance_gone(id, Event::Exited(exit));
        }
    }

    /// An app whose main process exits 0 at once but leaves processes
    /// running has daemonized itself: restarting it would only start more
    /// copies. It turns errored, and what it left keeps running.
    fn daemonized(&self, id: u32, exit: ExitKind) -> Option<String> {
        let app = self.table.get(id)?;
        let inst = app.instance.as_ref()?;
        let quick =
            inst.started.elapsed() < std::time::Duration::from_millis(app.spec.min_uptime_ms);
        if !exit.success() || !quick {
            return None;
        }
        let left = self.leftover_pids(id);
        let pid = left.first()?;
        Some(format!(
            "exited 0 at once and left pid {pid} running: it seems to daemonize itself; \
             run it in the foreground so that sup supervises the real process"
        ))
    }

    fn finish_if_drained(&mut self, id: u32) {
        let Some(inst) = self.table.get(id).and_then(|a| a.instance.as_ref()) else {
            return;
        };
        let Some(exit) = inst.exit else { return };
        if group_alive(inst.pid) {
            self.draining.push(id);
        } else {
            self.instance_gone(id, Event::Exited(exit));
        }
    }

    /// The instance is gone: `event` says how (an exit, or daemonized).
    fn instance_gone(&mut self, id: u32, event: Event) {
        // Its pipes are drained before a new instance can write, so the
        // last words of this one come first in the log.
        let old = self.table.get_mut(id).and_then(|a| {
            let inst = a.instance.as_mut()?;
            a.gates = inst.end_captures();
            Some(inst.pid)
        });
        self.apply(id, event);
        if let Some(app) = self.table.get_mut(id) {
            if app.instance.as_ref().map(|i| i.pid) == old {
                app.instance = None;
            }
        }
    }

    /// Answers the waiters whose condition holds and forgets deleted apps.
    fn settle(&mut self) {
        self.stop_escaped();
        let gone: Vec<u32> = self
            .table
            .iter()
            .filter(|a| a.deleting && a.lc.is_down() && a.retired.is_empty())
            .map(|a| a.id)
            .collect();
        for id in gone {
            self.state_urgent = true;
            if let Some(app) = self.table.get_mut(id) {
                info!(app = %app.spec.name, "deleted");
                let gates = std::mem::take(&mut app.gates);
                self.logs.close_after(&app.logs, gates);
            }
            self.table.remove(id);
        }
        let mut pending = std::mem::take(&mut self.waiters);
        pending.retain(|w| !w.reply.is_closed());
        for waiter in pending {
            if self.holds(&waiter.ids, waiter.until) {
                let response = match waiter.until {
                    Until::Gone => Response::Ok,
                    Until::Settled | Until::Spawned => self.infos(&waiter.ids, false),
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
            (Some(app), Until::Spawned) => {
                app.lc.is_settled()
                    || (app.lc.status() == Status::Launching && app.instance.is_some())
            }
        })
    }

    /// `Apps` with the apps' current state and usage (and specs if `with_spec`).
    fn infos(&mut self, ids: &[u32], with_spec: bool) -> Response {
        let mut infos = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(app) = self.table.get_mut(id) {
                let logs = self.logs.info(&app.logs);
                let mut info = app.info(logs, with_spec);
                if with_spec {
                    info.dump_warning = self.dump_warning.clone();
                }
                infos.push(info);
            }
        }
        Response::Apps(infos)
    }
}

fn signal_group(pgid: Option<u32>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH: the group is already gone, which is what we wanted.
        let _ = killpg(Pid::from_raw(pgid as i32), sig);
    }
}

/// Whether a process group still has a live member. Zombies don't count: a
/// member whose parent left the group (and never reaps it) must not hold a
/// stop or a restart forever.
fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok() && crate::procstat::group_has_live_member(pgid)
}

/// Milliseconds since the Unix epoch.
fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
