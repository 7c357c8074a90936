//! The one owner of the process table: an actor that receives client
//! requests, child exits, probe results and timers, and drives each app's
//! lifecycle.

mod apply;
mod appset;
mod channel;
mod effects;
mod events;
mod handover;
mod instances;
mod leftovers;
mod persistence;
mod probes;
mod reload;
mod run;
mod sockcheck;
mod spawning;
mod table;
mod triggers;

use crate::events::Events;
use crate::logs::Logs;
use crate::machine::{Input, ProbeKind, Timer};
use crate::ownership::Ownership;
use crate::persist::state::StateWriter;
use crate::probe::Outcome;
pub use handover::{read_handover, Handover, HANDOVER_VERSION};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
pub use run::{Reloader, RunState};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use sup_home::Home;
use sup_proto::spec::MAX_INSTANCES;
use sup_proto::{
    AppInfo, AppRow, AppSpec, ErrorKind, EventRecord, Request, Response, Scale, Target,
};
use table::{FigureReader, Table};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::info;

/// A message for the supervisor.
#[derive(Debug)]
pub enum Msg {
    /// A client request and where to send its answer.
    Request(Request, oneshot::Sender<Response>),
    /// `sup update`: the new binary was checked, off the loop.
    UpdateChecked {
        /// The binary.
        binary: String,
        /// Whether it can take over, or why not.
        checked: Result<(), String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
    /// `sup events --follow`: past events now, then new ones into `tx`.
    Follow {
        /// Whose events.
        target: Option<Target>,
        /// Where new events go.
        tx: mpsc::UnboundedSender<EventRecord>,
        /// The past events (or an error).
        reply: oneshot::Sender<Response>,
    },
    /// A timer armed by an app's machine fired.
    Timer {
        /// App id.
        app: u32,
        /// Which timer.
        timer: Timer,
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
        /// Its HTTP connection, kept for the instance's next probe.
        kept: Option<crate::probe::Kept>,
    },
    /// `sup run`: one of its apps was started (or could not be: `why`).
    RunAdded {
        /// The app.
        name: String,
        /// Why it could not be started.
        why: Option<String>,
    },
    /// `sup run`: its file, read again on SIGHUP.
    RunReloaded(Result<Vec<AppSpec>, String>),
    /// Instance `pid` of `app` told what its `listen()` did.
    Listened {
        /// App id.
        app: u32,
        /// The instance.
        pid: u32,
        /// What it did.
        note: sup_proto::ListenNote,
    },
    /// Instance `pid` of `app` said READY=1.
    Ready {
        /// App id.
        app: u32,
        /// The instance.
        pid: u32,
    },
    /// An instance of `app` said READY=1 on its notify socket; its pid is
    /// in `cell` once its spawn has returned.
    Notified {
        /// App id.
        app: u32,
        /// Where the spawn thread puts the instance's pid.
        cell: std::sync::Arc<std::sync::atomic::AtomicU32>,
    },
    /// The spawn thread's outcome for spawn `seq`.
    Spawned {
        /// Its sequence number.
        seq: u64,
        /// The pid, or why it failed.
        result: std::io::Result<u32>,
    },
    /// An instance of `app` asks the daemon to bind and hold `addr`.
    Bind {
        /// App id.
        app: u32,
        /// The address.
        addr: String,
        /// Where the socket goes.
        reply: tokio::sync::oneshot::Sender<crate::ipc::BindReply>,
    },
    /// A process group an app's machine watched is empty.
    GroupGone {
        /// App id.
        app: u32,
        /// The group id.
        pid: u32,
    },
    /// An instance does not take the sockets held for it.
    SocketNotTaken {
        /// App id.
        app: u32,
        /// The instance.
        pid: u32,
        /// What to tell the user.
        why: String,
    },
    /// The logs of an instance that exited say it could not bind an address
    /// the daemon holds for it.
    BindError {
        /// App id.
        app: u32,
        /// The held addresses.
        addrs: Vec<String>,
    },
    /// `sup save` wrote the dump: warnings about its backup, and about
    /// live state lost in a crash, are void now.
    Saved,
    /// A new app's state file was written (or could not be).
    Added(Box<appset::PendingAdd>, Result<(), String>),
    /// The state files of a `delete` were removed (or some could not be).
    Removed(appset::Removals, oneshot::Sender<Response>),
    /// The state files of a spec change (`Apply`, `scale`) are written,
    /// or could not be.
    Changed(Box<apply::PendingChange>, Result<(), String>),
    /// Time to write the state file (changes are coalesced).
    FlushState,
    /// The kill timeout of a process an app left outside its group ran out.
    StrayDeadline {
        /// A pidfd on it, so that a reused pid is never hit.
        pidfd: std::os::fd::OwnedFd,
    },
    /// The scan after a quick exit 0 of instance `pid` of `app` is back.
    QuickExit {
        /// App id.
        app: u32,
        /// The instance's main pid.
        pid: u32,
        /// How it exited.
        exit: crate::lifecycle::ExitKind,
        /// What carries the instance's tags.
        found: Vec<crate::ownership::tags::Candidate>,
    },
    /// The scan after a stop of one of `app`'s instances is back.
    Leftovers {
        /// App id.
        app: u32,
        /// What carries the instance's tags.
        found: Vec<crate::ownership::tags::Candidate>,
    },
    /// The kill timeout of what a stopped slot kept (a daemonized
    /// process's group or cgroup) ran out.
    KillLeftover {
        /// App id.
        app: u32,
        /// The instance index.
        slot: usize,
        /// The process the slot kept.
        pid: u32,
    },
    /// A process (command probe or hook) ran out of time: kill its group.
    Deadline {
        /// Its pid.
        pid: u32,
    },
    /// Time to read the memory of the apps with `--max-memory`.
    MemoryCheck,
    /// The daemon may have been quiet long enough to trim its heap.
    Trim,
    /// Instances' figures, read off the loop at `at` for a `list`.
    Figures {
        /// Each instance's pid and usage.
        read: Vec<(u32, crate::ownership::Usage)>,
        /// When they were read.
        at: Instant,
    },
    /// An app's cron schedule fires.
    Cron {
        /// App id.
        app: u32,
        /// Which arming of its timer (a spec change re-arms it).
        seq: u64,
    },
    /// An app's file watcher reports.
    Watch {
        /// App id.
        app: u32,
        /// What it saw.
        report: crate::watch::Report,
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
    /// This answer, once the apps reach a condition.
    After(Vec<u32>, Until, Response),
}

struct Waiter {
    ids: Vec<u32>,
    until: Until,
    reply: oneshot::Sender<Response>,
    /// `ids[..held]` held when last looked at: each turn goes on from
    /// there, so a batch of N apps costs O(N) to wait for, not O(N²).
    held: usize,
    /// The answer, made before; None: the apps' state when they hold.
    answer: Option<Response>,
}

impl Waiter {
    fn new(ids: Vec<u32>, until: Until, reply: oneshot::Sender<Response>) -> Waiter {
        Waiter {
            ids,
            until,
            reply,
            held: 0,
            answer: None,
        }
    }
}

/// How long shutdown waits for the last log lines to reach the disk.
const LOG_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The supervisor actor.
pub struct Supervisor {
    home: Home,
    table: Table,
    tx: mpsc::UnboundedSender<Msg>,
    waiters: Vec<Waiter>,
    /// Apps that do not take their held sockets (an instance listens
    /// elsewhere, or exits unable to bind the held address), and what to
    /// tell the user in `describe`, until the app is online again.
    socket_warnings: HashMap<u32, String>,
    /// Reload requests waiting for their outcome, by token.
    reloads: HashMap<u64, oneshot::Sender<Result<String, String>>>,
    /// Some while shutting down: the `kill` requests to answer once all is down.
    shutdown: Option<Vec<oneshot::Sender<Response>>>,
    started_at_ms: u64,
    logs: Logs,
    events: Events,
    /// Running command probes: probe pid -> (instance probed, start).
    probe_cmds: std::collections::HashMap<u32, (u32, Instant)>,
    /// Counter for unique per-instance names and reload tokens.
    seq: u64,
    /// Which processes are each instance's.
    owner: Ownership,
    /// The live state's writer, and the apps whose state changed.
    state: StateWriter,
    state_dirty: HashSet<u32>,
    /// Apps whose machine may be gone (deleted, and every process ended):
    /// those `apply` fed, so `settle` need not look at every app.
    gone: Vec<u32>,
    /// Spawns handed to the spawn thread, and what waits for them.
    in_flight: spawning::InFlight,
    /// The state must be written this turn, not coalesced.
    state_urgent: bool,
    /// New apps whose state file is being written: name -> reserved id.
    adding: HashMap<String, u32>,
    /// Apps whose state file is being removed by a `delete`.
    removing: HashSet<u32>,
    /// What the user must be told on every answer (live state the crash
    /// recovery could not read), until `sup save`.
    warnings: watch::Sender<Vec<String>>,
    /// When the state file was last written, and whether a write is scheduled.
    state_written: Instant,
    state_flush_pending: bool,
    /// Set when the last resurrect had to use the dump's backup.
    dump_warning: Option<String>,
    /// Instances' figures are being read off the loop.
    figures_reading: bool,
    /// Work since the heap was last trimmed.
    trimmer: crate::memtrim::Trimmer,
    /// The fd holding the daemon lock (handed to the next daemon by `update`).
    lock_fd: std::os::fd::RawFd,
    /// SIGCHLD, SIGTERM and SIGINT, registered at creation.
    signals: Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
    /// Memory check, cron timers, file watchers.
    triggers: triggers::Triggers,
    /// `sup run`: its settings and what it has seen.
    run: Option<RunState>,
    /// `sup run`: apps' lines go to the daemon's stdout and stderr.
    console: Option<crate::logs::ConsoleMode>,
    /// The HTTP listener (`sup web`), while one serves.
    web: Option<(String, tokio::task::JoinHandle<()>)>,
    /// Webhooks told about trouble.
    alerts: crate::alerts::Alerts,
}

impl Supervisor {
    /// A supervisor whose timers post back through `tx`, and whose
    /// standing warnings go to `warnings` (the server adds them to answers).
    pub fn new(
        home: Home,
        tx: mpsc::UnboundedSender<Msg>,
        logs: Logs,
        lock_fd: std::os::fd::RawFd,
        warnings: watch::Sender<Vec<String>>,
        owner: Ownership,
    ) -> std::io::Result<Supervisor> {
        // Registered before the first spawn, so no exit goes unnoticed.
        let signals = (
            signal(SignalKind::child())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        );
        let alerts = crate::alerts::Alerts::start(crate::alerts::daemon_targets(&home));
        Ok(Supervisor {
            lock_fd,
            signals: Some(signals),
            state: StateWriter::start(home.clone())?,
            state_dirty: HashSet::new(),
            gone: Vec::new(),
            in_flight: spawning::InFlight::default(),
            state_urgent: false,
            adding: HashMap::new(),
            removing: HashSet::new(),
            warnings,
            state_written: Instant::now(),
            state_flush_pending: false,
            dump_warning: None,
            figures_reading: false,
            trimmer: Default::default(),
            home,
            table: Table::default(),
            tx,
            waiters: Vec::new(),
            reloads: HashMap::new(),
            socket_warnings: HashMap::new(),
            shutdown: None,
            started_at_ms: epoch_ms(SystemTime::now()) as u64,
            logs,
            events: Events::default(),
            probe_cmds: std::collections::HashMap::new(),
            seq: 0,
            owner,
            triggers: triggers::Triggers::default(),
            run: None,
            console: None,
            web: None,
            alerts,
        })
    }

    /// `sup web --listen ADDR` (or `SUP_WEB_LISTEN`, or `--off`): starts,
    /// moves or stops the HTTP listener. Its token (for the dashboard's
    /// actions, and for everything beyond loopback) is made at first need
    /// and told once.
    pub fn web(&mut self, listen: Option<&str>) -> Result<String, String> {
        let Some(addr) = listen else {
            if let Some((_, old)) = self.web.take() {
                old.abort();
            }
            return Ok("the web listener is off".into());
        };
        if self
            .web
            .as_ref()
            .is_some_and(|(serving, _)| serving == addr)
        {
            return Ok(format!("the web listener serves {addr} already"));
        }
        if let Some((_, old)) = self.web.take() {
            old.abort();
        }
        let (token, made) = crate::web::token(&self.home).map_err(|e| e.to_string())?;
        let path = self.home.web_token();
        let needs = match crate::web::is_loopback(addr) {
            true => "the dashboard's actions need",
            false => "everything but /livez and /readyz needs",
        };
        let told = match made {
            true => format!(
                "{needs} the token {token} (kept in {}; shown once)",
                path.display()
            ),
            false => format!("{needs} the token in {}", path.display()),
        };
        let server = crate::web::start(addr, self.tx.clone(), token, self.logs.taps())
            .map_err(|e| e.to_string())?;
        self.web = Some((addr.to_string(), server));
        Ok(format!(
            "serving the dashboard, /metrics, /livez and /readyz on {addr}; {told}"
        ))
    }

    /// Makes this the daemon of `sup run`, logging to the console.
    pub fn set_run(&mut self, run: RunState, console: crate::logs::ConsoleMode) {
        self.run = Some(run);
        self.console = Some(console);
    }

    /// Runs until a shutdown (SIGTERM, SIGINT or `kill`) has stopped every app.
    /// Returns the exit code (`sup run`'s; 0 for the daemon).
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) -> std::io::Result<i32> {
        let (mut sigchld, mut sigterm, mut sigint) = self.signals.take().expect("run once");
        // `sup run` also stops on SIGQUIT and reloads its file on SIGHUP.
        let (mut sigquit, mut sighup) = match self.run {
            Some(_) => (
                Some(signal(SignalKind::quit())?),
                Some(signal(SignalKind::hangup())?),
            ),
            None => (None, None),
        };
        // Children that exited before the loop started.
        self.reap();
        self.settle();
        // The apps restored or handed over before the loop.
        self.sync_triggers();
        loop {
            tokio::select! {
                Some(msg) = rx.recv() => match msg {
                    Msg::UpdateChecked { binary, checked: Ok(()), reply } => {
                        let response = self.update(&binary, self.lock_fd).await;
                        let _ = reply.send(response);
                    }
                    other => self.on_msg(other),
                },
                _ = sigchld.recv() => self.reap(),
                _ = self.owner.changed() => self.cgroups_told(),
                _ = sigterm.recv() => self.stop_signal("SIGTERM"),
                _ = sigint.recv() => self.stop_signal("SIGINT"),
                Some(_) = recv_opt(sigquit.as_mut()) => self.stop_signal("SIGQUIT"),
                Some(_) = recv_opt(sighup.as_mut()) => self.run_reload(),
            }
            self.settle();
            self.run_check();
            self.sync_triggers();
            self.write_state();
            if rx.is_empty() && self.trimmer.idle() {
                self.after(crate::memtrim::QUIET_FOR, Msg::Trim);
            }
            if self.shutdown.is_some()
                && self
                    .table
                    .iter()
                    .all(|app| app.machine.is_quiet() && app.hook_pid.is_none())
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
        Ok(self.run.map_or(0, |r| r.code))
    }

    fn on_msg(&mut self, msg: Msg) {
        if !matches!(msg, Msg::Trim) {
            self.trimmer.note(1);
        }
        match msg {
            Msg::Request(Request::Update { binary }, reply) => self.begin_update(binary, reply),
            Msg::Request(request, reply) => self.on_request(request, reply),
            Msg::UpdateChecked { checked, reply, .. } => {
                let why = checked.err().unwrap_or_default();
                let _ = reply.send(Response::error(sup_proto::ErrorKind::Update, why));
            }
            Msg::Follow { target, tx, reply } => {
                let response = self.follow(target, tx);
                let _ = reply.send(response);
            }
            Msg::Timer { app, timer } => self.apply(app, Input::Timer(timer)),
            Msg::ProbeDue { app, pid, kind } => self.probe_due(app, pid, kind),
            Msg::ProbeDone {
                app,
                pid,
                kind,
                outcome,
                kept,
            } => {
                if let Some(inst) = self.table.get_mut(app).and_then(|a| a.procs.get_mut(&pid)) {
                    inst.probe_conn = kept.map(|k| (kind, k));
                }
                if !outcome.ok && kind == ProbeKind::Liveness {
                    self.check_sockets_taken(app, pid);
                }
                self.apply(app, Input::Probed { pid, kind, outcome })
            }
            Msg::Ready { app, pid } => self.apply(app, Input::Ready { pid }),
            Msg::Notified { app, cell } => self.notified(app, cell),
            Msg::Spawned { seq, result } => self.spawned(seq, result),
            Msg::RunAdded { name, why } => self.run_added(&name, why),
            Msg::RunReloaded(apps) => self.run_reloaded(apps),
            Msg::Listened { app, pid, note } => {
                if note.mismatch {
                    tracing::info!(app, pid, "{}", note.note);
                }
                if let Some(inst) = self.table.get_mut(app).and_then(|a| a.procs.get_mut(&pid)) {
                    inst.listen = Some(note);
                }
            }
            Msg::Bind { app, addr, reply } => {
                let _ = reply.send(self.bind_for(app, addr));
            }
            Msg::GroupGone { app, pid } => self.apply(app, Input::GroupGone { pid }),
            Msg::FlushState => self.state_flush_pending = false,
            Msg::Saved => {
                self.dump_warning = None;
                self.warnings.send_replace(Vec::new());
            }
            Msg::Added(pending, result) => self.added(pending, result),
            Msg::Removed(results, reply) => self.removed(results, reply),
            Msg::Changed(pending, result) => self.changed(*pending, result),
            Msg::StrayDeadline { pidfd } => crate::ownership::pidfd_signal(&pidfd, libc::SIGKILL),
            Msg::QuickExit {
                app,
                pid,
                exit,
                found,
            } => self.quick_exit(app, pid, exit, found),
            Msg::Leftovers { app, found } => self.leftovers_found(app, found),
            Msg::KillLeftover { app, slot, pid } => self.kill_leftover(app, slot, pid),
            Msg::BindError { app, addrs } => self.bind_error(app, addrs),
            Msg::SocketNotTaken { app, pid, why } => self.socket_not_taken(app, pid, why),
            Msg::MemoryCheck => self.memory_check(),
            Msg::Figures { read, at } => self.figures_read(read, at),
            Msg::Trim => {
                if self.trimmer.fired() {
                    self.after(crate::memtrim::QUIET_FOR, Msg::Trim);
                }
            }
            Msg::Cron { app, seq } => self.cron_fired(app, seq),
            Msg::Watch { app, report } => self.watch_report(app, report),
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
            Request::Rows => {
                let ids = self.table.ids();
                let infos = self.app_infos(&ids, false, true);
                Ok(Answer::Now(Response::Rows(
                    infos.iter().map(AppRow::from).collect(),
                )))
            }
            Request::Describe(target) => self
                .table
                .resolve(&target)
                .map(|ids| Answer::Now(self.infos(&ids, true))),
            Request::Events { target, .. } => self.past_events(target.as_ref()).map(Answer::Now),
            _ if self.shutdown.is_some() => Err(Response::error(
                ErrorKind::ShuttingDown,
                "the daemon is shutting down",
            )),
            Request::Add { spec, wait } => return self.add(*spec, wait, reply),
            Request::AddMany { specs } => return self.add_many(specs, reply),
            Request::Apply { spec, reload } => return self.apply_spec(*spec, reload, reply),
            Request::Start(target) => self.each(&target, Input::Start, Until::Settled),
            Request::Scale { target, scale } => return self.scale(&target, scale, reply),
            Request::Signal { target, signal } => self.signal(&target, signal),
            Request::Stop(target) => {
                self.each(&target, Input::Stop { by_user: true }, Until::Settled)
            }
            Request::Restart(target) => self.each(&target, Input::Restart, Until::Settled),
            Request::Delete(target) => return self.delete(&target, reply),
            Request::Flush(target) => return self.flush(&target, reply),
            Request::Reset(target) => self.reset(&target),
            Request::Web { listen } => match self.web(listen.as_deref()) {
                Ok(note) => Ok(Answer::Now(Response::Note(note))),
                Err(why) => Err(Response::error(ErrorKind::BadRequest, why)),
            },
            Request::Notify { targets } => match crate::alerts::keep(&self.home, &targets) {
                Ok(all) => {
                    let note = match all.len() {
                        0 => "no webhook is told about every app's trouble".to_string(),
                        n => format!(
                            "{} told about every app's trouble",
                            crate::plural::count(n as u64, "webhook")
                        ),
                    };
                    self.alerts.set_daemon_targets(all);
                    Ok(Answer::Now(Response::Note(note)))
                }
                Err(why) => Err(Response::error(ErrorKind::BadRequest, why)),
            },
            Request::Reload(target) => return self.reload(&target, reply),
            Request::Save { force } => return self.save(force, reply),
            Request::Update { .. } => Err(Response::error(
                ErrorKind::Internal,
                "update runs on the event loop",
            )),
            Request::Resurrect => Ok(self.resurrect()),
        };
        self.answer(answer, reply);
    }

    /// Sends `answer` now, or once its apps reach its condition.
    fn answer(&mut self, answer: Result<Answer, Response>, reply: oneshot::Sender<Response>) {
        match answer {
            Ok(Answer::Now(response)) | Err(response) => {
                let _ = reply.send(response);
            }
            Ok(Answer::When(ids, until)) => self.waiters.push(Waiter::new(ids, until, reply)),
            Ok(Answer::After(ids, until, answer)) => self.waiters.push(Waiter {
                answer: Some(answer),
                ..Waiter::new(ids, until, reply)
            }),
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

    /// Applies `input` to every app `target` names, or to the one instance
    /// it names (`api:2`).
    fn each(&mut self, target: &Target, input: Input, until: Until) -> Result<Answer, Response> {
        let (ids, slot) = self.table.resolve_slot(target)?;
        let input = match slot {
            None => input,
            Some(slot) => Input::OneSlot {
                slot,
                input: Box::new(input),
            },
        };
        for &id in &ids {
            self.apply(id, input.clone());
        }
        Ok(Answer::When(ids, until))
    }

    /// `sup scale`: every app named gets its new count, or none does; the
    /// new counts are on disk before they take effect.
    fn scale(&mut self, target: &Target, scale: Scale, reply: oneshot::Sender<Response>) {
        match self.scaled_specs(target, scale) {
            Ok(changes) => self.change_specs(changes, apply::Then::Settle, reply),
            Err(response) => {
                let _ = reply.send(response);
            }
        }
    }

    /// Each app's spec with its new instance count.
    fn scaled_specs(&self, target: &Target, scale: Scale) -> Result<Vec<(u32, AppSpec)>, Response> {
        if target.split().1.is_some() {
            let why = "scale takes an app, not one instance: `sup scale api 4`";
            return Err(Response::error(ErrorKind::BadRequest, why));
        }
        let mut changes = Vec::new();
        for id in self.table.resolve(target)? {
            let Some(app) = self.table.get(id) else {
                continue;
            };
            let now = i64::from(app.spec.instances);
            let wanted = match scale {
                Scale::To(n) => i64::from(n),
                Scale::By(d) => now + i64::from(d),
            };
            if wanted < 1 || wanted > i64::from(MAX_INSTANCES) {
                let why = format!(
                    "{} would run {wanted} instances; an app runs 1 to {MAX_INSTANCES} (`sup stop {}` stops it)",
                    app.spec.name, app.spec.name
                );
                return Err(Response::error(ErrorKind::BadRequest, why));
            }
            let spec = AppSpec {
                instances: wanted as u32,
                ..app.spec.clone()
            };
            changes.push((id, spec));
        }
        Ok(changes)
    }

    /// The app's set of instances changed: its spec says how many it has
    /// now, and with several, each line of its logs says whose it is.
    pub(super) fn instances_changed(&mut self, id: u32) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let staying = app.machine.instance_count();
        app.spec.instances = staying as u32;
        self.state_dirty.insert(id);
        self.state_urgent = true;
        let several = app.machine.slots().indices().len() > 1;
        for (slot, s) in app.machine.slots().iter() {
            let captures = s.running().and_then(|p| app.procs.get(&p.pid));
            for c in captures.into_iter().flat_map(|i| &i.captures) {
                self.logs.tag(c.source, several.then_some(slot));
            }
        }
    }

    /// `sup signal`: to the main process of each instance, or of one.
    fn signal(&mut self, target: &Target, signal: sup_proto::Signal) -> Result<Answer, Response> {
        let (ids, slot) = self.table.resolve_slot(target)?;
        let signal = crate::signal::to_nix(signal);
        for &id in &ids {
            self.apply(id, Input::Signal { slot, signal });
        }
        Ok(Answer::Now(Response::Ok))
    }

    /// `sup reset`: the restart counters of the apps `target` names back to 0.
    fn reset(&mut self, target: &Target) -> Result<Answer, Response> {
        let ids = self.table.resolve(target)?;
        for &id in &ids {
            if let Some(app) = self.table.get_mut(id) {
                app.machine.reset_counters();
            }
        }
        Ok(Answer::Now(self.infos(&ids, false)))
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
            .flat_map(|app| app.all_logs())
            .map(|logs| self.logs.truncate(&logs))
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
            self.apply(id, Input::Stop { by_user: false });
        }
    }

    /// Answers the waiters whose condition holds and forgets deleted apps.
    fn settle(&mut self) {
        for id in std::mem::take(&mut self.gone) {
            if let Some(app) = self.table.get_mut(id) {
                info!(app = %app.spec.name, "deleted");
                let gates = app.gates.drain().flat_map(|(_, g)| g).collect();
                for (_, own) in app.instance_logs() {
                    self.logs.close_after(&own, Vec::new());
                }
                self.logs.close_after(&app.logs, gates);
            }
            self.table.remove(id);
            self.alerts.forget(id);
        }
        let mut pending = std::mem::take(&mut self.waiters);
        pending.retain(|w| !w.reply.is_closed());
        for mut waiter in pending {
            if self.holds(&mut waiter) {
                let response = match (waiter.answer.take(), waiter.until) {
                    (Some(answer), _) => answer,
                    (None, Until::Gone) => Response::Ok,
                    // What the CLI prints of these shows no figures.
                    (None, Until::Settled | Until::Spawned) => {
                        Response::Apps(self.app_infos(&waiter.ids, false, false))
                    }
                };
                let _ = waiter.reply.send(response);
            } else {
                self.waiters.push(waiter);
            }
        }
    }

    /// Whether every app `waiter` waits for is as it wants, all at once:
    /// the apps past those that held last time are looked at first, and
    /// the rest only once those all hold.
    fn holds(&self, waiter: &mut Waiter) -> bool {
        let until = waiter.until;
        let fails = |ids: &[u32]| {
            ids.iter()
                .position(|&id| match (self.table.get(id), until) {
                    (None, _) => false,
                    (Some(_), Until::Gone) => true,
                    (Some(app), Until::Settled) => !app.machine.is_settled(),
                    (Some(app), Until::Spawned) => !app.machine.is_spawned(),
                })
        };
        if let Some(at) = fails(&waiter.ids[waiter.held..]) {
            waiter.held += at;
            return false;
        }
        match fails(&waiter.ids[..waiter.held]) {
            Some(at) => {
                waiter.held = at;
                false
            }
            None => true,
        }
    }

    /// `Apps` with the apps' current state and usage (and specs if `with_spec`).
    fn infos(&mut self, ids: &[u32], with_spec: bool) -> Response {
        Response::Apps(self.app_infos(ids, with_spec, true))
    }

    /// The apps' current state (and specs if `with_spec`), with their
    /// usage read as needed if `figures`, else as it was last read.
    fn app_infos(&mut self, ids: &[u32], with_spec: bool, figures: bool) -> Vec<AppInfo> {
        let mut infos = Vec::with_capacity(ids.len());
        self.trimmer.note(ids.len());
        // The same for every app: made once.
        let tracking = self.owner.tracking();
        let mut read = FigureReader {
            owner: &self.owner,
            later: Vec::new(),
            reads: figures,
        };
        for &id in ids {
            if let Some(app) = self.table.get_mut(id) {
                let logs = self.logs.info_of(&app.logs, &app.instance_logs());
                let mut info = app.info(logs, with_spec, &mut read, &tracking);
                if with_spec {
                    info.dump_warning = self.dump_warning.clone();
                    info.state_warnings = self.warnings.borrow().clone();
                    info.socket_warning = self.socket_warnings.get(&id).cloned();
                }
                infos.push(info);
            }
        }
        let later = read.later;
        if !later.is_empty() && !self.figures_reading {
            self.figures_reading = true;
            let tx = self.tx.clone();
            tokio::spawn(async move {
                // After this answer is out: the reads would compete with it.
                tokio::time::sleep(FIGURES_AFTER).await;
                let _ = tokio::task::spawn_blocking(move || {
                    let at = Instant::now();
                    let read = later.into_iter().map(|(pid, s)| (pid, s.read())).collect();
                    let _ = tx.send(Msg::Figures { read, at });
                })
                .await;
            });
        }
        infos
    }

    /// Keeps the figures read off the loop, for the instances still there.
    fn figures_read(&mut self, read: Vec<(u32, crate::ownership::Usage)>, at: Instant) {
        self.figures_reading = false;
        for (pid, usage) in read {
            // A pid taken again by a process started since is not the one read.
            if let Some(inst) = self.table.instance_mut(pid).filter(|i| i.started <= at) {
                inst.store_figures(usage, at);
            }
        }
    }
}

/// How long after a `list` the figures it found stale are read again.
const FIGURES_AFTER: Duration = Duration::from_millis(100);

/// Milliseconds since the Unix epoch.
fn epoch_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The next delivery of `signal`, or never when there is none.
async fn recv_opt(signal: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match signal {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}
