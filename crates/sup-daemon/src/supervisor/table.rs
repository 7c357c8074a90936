//! The process table: apps by id, and the pid index that routes exits.

use crate::logs::{AppLogs, Capture, Stop};
use crate::machine::{AppMachine, ProbeKind};
use crate::notify::NotifySocket;
use crate::ownership::{Ownership, Usage, UsageSource};
use crate::procstat::CpuMeter;
use crate::sockets::Held;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Instant;
use sup_proto::{
    AppInfo, AppSpec, ErrorKind, EventRecord, InstanceInfo, LogInfo, Response, Status, Target,
};
use tokio::sync::oneshot;

/// How long an instance's CPU and memory figures are shown before they are
/// read again: as often as PM2 refreshes its own, and no timer runs.
pub const FIGURES_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Figures older than [`FIGURES_FOR`] but younger than this are shown
/// while fresh ones are read off the loop (a `list` a second, as `watch`,
/// `monit` and the dashboard do, never waits for 1,000 reads); older ones
/// are read before the answer.
pub const FIGURES_KEPT: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads instances' figures for an answer: at once where they are missing
/// or too old, later (into `later`) where they are only a little stale.
pub struct FigureReader<'a> {
    /// Where each instance's usage is read from.
    pub owner: &'a Ownership,
    /// Instances to read off the loop, with where from.
    pub later: Vec<(u32, UsageSource)>,
    /// Whether figures are read at all: an answer that shows none (what
    /// `start` or `restart` prints) takes them as they were last read.
    pub reads: bool,
}

/// The resources of a running process of an app (an instance, a reload's
/// new one, or a retired one): what the pure machine does not hold.
#[derive(Debug)]
pub struct Instance {
    /// Pid of the main process; also its process group id.
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    /// CPU rate between queries.
    pub meter: CpuMeter,
    /// The captures of its stdout and stderr.
    pub captures: Vec<Capture>,
    /// Its own sd_notify socket, when the app reports readiness that way.
    pub notify: Option<NotifySocket>,
    /// Its stdout and stderr read ends while `sup update` hands them over
    /// (empty otherwise: its captures own them).
    pub pipes: Vec<OwnedFd>,
    /// The HTTP connection of its last probe, for the next one.
    pub probe_conn: Option<(ProbeKind, crate::probe::Kept)>,
    /// Its Node IPC channel, as kept for `sup update`.
    pub channel: Option<super::channel::Kept>,
    /// What its Node preload said of the app's `listen()`.
    pub listen: Option<sup_proto::ListenNote>,
    /// Its last figures: when read, CPU percent, memory bytes, CPU time
    /// in microseconds.
    figures: Option<(Instant, f64, u64, u64)>,
    /// Its start time after boot (clock ticks), read once at spawn: with
    /// the pid, it identifies the process in the state file.
    pub start_time: Option<u64>,
}

impl Instance {
    /// A fresh instance of `pid` whose output `captures` read.
    pub fn new(pid: u32, captures: Vec<Capture>) -> Instance {
        let started = Instant::now();
        Instance {
            pid,
            started,
            meter: CpuMeter::new(started),
            captures,
            notify: None,
            pipes: Vec::new(),
            probe_conn: None,
            channel: None,
            listen: None,
            figures: None,
            start_time: crate::procstat::read_stat(pid).map(|s| s.start_time),
        }
    }

    /// Tells the captures the instance is gone: they drain their pipes and
    /// end; its notify socket goes too.
    pub fn end_captures(&mut self) -> Vec<Option<oneshot::Receiver<()>>> {
        self.notify = None;
        self.captures
            .iter_mut()
            .map(|c| c.stop(Stop::Drain))
            .collect()
    }

    /// Stops the captures at once, for `sup update`; returns their sources,
    /// and their pipes once they come back.
    pub fn detach_captures(&mut self) -> (Vec<u64>, Vec<tokio::sync::oneshot::Receiver<OwnedFd>>) {
        let (mut sources, mut pipes) = (Vec::new(), Vec::new());
        for c in &mut self.captures {
            sources.push(c.source);
            pipes.extend(c.detach());
        }
        (sources, pipes)
    }

    /// What `list` shows of it: its usage, on top of what its slot says.
    /// The figures are read at most once per [`FIGURES_FOR`], and off the
    /// loop while they are younger than [`FIGURES_KEPT`].
    fn info(&mut self, base: InstanceInfo, now: Instant, read: &mut FigureReader) -> InstanceInfo {
        let age = self
            .figures
            .map(|(at, ..)| now.saturating_duration_since(at));
        let (cpu, memory, cpu_usec) = match (self.figures, age) {
            (figures, _) if !read.reads => figures.map_or((0.0, 0, 0), |(_, c, m, u)| (c, m, u)),
            (Some((_, cpu, memory, usec)), Some(age)) if age < FIGURES_KEPT => {
                if age >= FIGURES_FOR {
                    read.later
                        .push((self.pid, read.owner.usage_source(self.pid)));
                }
                (cpu, memory, usec)
            }
            _ => self.store_figures(read.owner.usage(self.pid), now),
        };
        InstanceInfo {
            pid: Some(self.pid),
            uptime_ms: Some(now.duration_since(self.started).as_millis() as u64),
            cpu,
            memory,
            cpu_seconds: cpu_usec as f64 / 1e6,
            listen: self.listen.clone(),
            ..base
        }
    }

    /// Keeps `usage`, read at `at`, as its figures; returns them as CPU
    /// percent, memory bytes and CPU microseconds.
    pub fn store_figures(&mut self, usage: Usage, at: Instant) -> (f64, u64, u64) {
        let cpu = self.meter.percent(usage.cpu_usec, at);
        self.figures = Some((at, cpu, usage.rss_bytes, usage.cpu_usec));
        (cpu, usage.rss_bytes, usage.cpu_usec)
    }
}

/// One app in the table: its spec, its machine, and the resources the
/// machine's effects act on.
#[derive(Debug)]
pub struct App {
    /// Stable numeric id.
    pub id: u32,
    /// When this daemon took it in, ms since the epoch.
    pub added_at_ms: i64,
    /// Its spec.
    pub spec: AppSpec,
    /// Its state: every instance, pure.
    pub machine: AppMachine,
    /// Its log files.
    pub logs: AppLogs,
    /// Resources of its running processes, by pid.
    /// Boxed: most apps have one, and a map's least room is for three.
    pub procs: HashMap<u32, Box<Instance>>,
    /// Listening sockets held for the app while it may run.
    pub sockets: Vec<Held>,
    /// The addresses among them that the daemon bound when an instance
    /// listened (cluster mode without `--listen`), not ones the user gave.
    pub bound_here: Vec<String>,
    /// Events waiting for the app's `on_event` hook, oldest first.
    pub hook_queue: VecDeque<EventRecord>,
    /// Pid of the hook running now.
    pub hook_pid: Option<u32>,
    /// Per slot: fire when the last instance's captures are done; the next
    /// instance's output waits for them, so lines keep their order across a
    /// restart.
    pub gates: HashMap<usize, Vec<Option<oneshot::Receiver<()>>>>,
}

/// What a pid is to the daemon, so that its exit goes to the right owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A process of one of the app's instances (its machine knows which).
    Instance,
    /// A command probe.
    Probe(ProbeKind),
    /// The `on_event` hook.
    Hook,
}

impl App {
    /// The log files instance `slot` writes to: the app's, or its own
    /// (`--split-logs`).
    pub fn logs_of(&self, slot: usize) -> AppLogs {
        if self.spec.logs.per_instance {
            self.logs.of_instance(slot)
        } else {
            self.logs.clone()
        }
    }

    /// Every instance's own log files (none unless `--split-logs`).
    pub fn instance_logs(&self) -> Vec<(usize, AppLogs)> {
        if !self.spec.logs.per_instance {
            return Vec::new();
        }
        let slots = self.machine.slots().indices();
        slots
            .into_iter()
            .map(|i| (i, self.logs.of_instance(i)))
            .collect()
    }

    /// The app's log files and every instance's own.
    pub fn all_logs(&self) -> Vec<AppLogs> {
        let own = self.instance_logs().into_iter().map(|(_, l)| l);
        std::iter::once(self.logs.clone()).chain(own).collect()
    }

    /// A snapshot for clients, with usage from `owner`; `with_spec` adds the spec.
    pub fn info(
        &mut self,
        logs: LogInfo,
        with_spec: bool,
        read: &mut FigureReader,
        tracking: &sup_proto::Tracking,
    ) -> AppInfo {
        let listen = self.sockets.iter().map(|h| h.addr.clone()).collect();
        let now = Instant::now();
        let mut instances = Vec::new();
        for (index, slot) in self.machine.slots().iter() {
            let running = slot.running();
            let base = InstanceInfo {
                index: index as u32,
                pid: None,
                restarts: slot.lc().restarts(),
                ready: running.is_some_and(|p| p.ready) || slot.lc().status() == Status::Online,
                status: slot.lc().status(),
                uptime_ms: None,
                cpu: 0.0,
                memory: 0,
                cpu_seconds: 0.0,
                last_pid: slot.last_pid(),
                listen: None,
            };
            instances.push(match running.and_then(|p| self.procs.get_mut(&p.pid)) {
                Some(inst) => inst.info(base, now, read),
                None => base,
            });
        }
        let ready_instances = instances.iter().filter(|i| i.ready).count() as u32;
        let reloading = self.machine.reloading_slot();
        if let Some((slot, inst)) = self
            .machine
            .incoming()
            .zip(reloading)
            .and_then(|(p, slot)| Some((slot, self.procs.get_mut(&p.pid)?)))
        {
            let base = InstanceInfo {
                index: slot as u32,
                pid: None,
                restarts: 0,
                ready: false,
                status: Status::Launching,
                uptime_ms: None,
                cpu: 0.0,
                memory: 0,
                cpu_seconds: 0.0,
                last_pid: Some(inst.pid),
                listen: None,
            };
            instances.push(inst.info(base, now, read));
        }
        let first = self.machine.first();
        let lc = first.lc();
        let main = &instances[0];
        AppInfo {
            id: self.id,
            name: self.spec.name.clone(),
            pid: main.pid,
            status: self.machine.status(),
            restarts: self.machine.restarts(),
            unstable_restarts: lc.unstable_restarts(),
            stopped_by_user: lc.user_stopped(),
            uptime_ms: main.uptime_ms,
            // Over every instance (the figures of one are in `instances`).
            cpu: instances.iter().map(|i| i.cpu).sum(),
            memory: instances.iter().map(|i| i.memory).sum(),
            last_exit: lc.last_exit().map(|e| e.to_string()),
            last_exit_code: lc.last_exit().map(crate::lifecycle::ExitKind::code),
            error: lc.error().map(str::to_string),
            restart_reason: lc.restart_reason().map(str::to_string),
            restart_in_ms: first.restart_in(now).map(|d| d.as_millis() as u64),
            added_at_ms: Some(self.added_at_ms),
            instances,
            ready_instances,
            dump_warning: None,
            state_warnings: Vec::new(),
            socket_warning: None,
            logs,
            health: self.machine.health(&self.spec),
            listen,
            tracking: Some(tracking.clone()),
            spec: with_spec.then(|| self.spec.clone()),
        }
    }
}

/// Apps by id, with an index from live pids to app ids.
#[derive(Debug, Default)]
pub struct Table {
    /// Boxed: an `App` is 1.2 KiB, and a map's nodes hold room for eleven.
    apps: BTreeMap<u32, Box<App>>,
    by_pid: HashMap<u32, (u32, Role)>,
    next_id: u32,
    /// Apps added or removed, or whose spec was replaced, since the last
    /// [`Table::take_changed`].
    changed: Vec<u32>,
    /// The inherited environment last seen, which specs that inherited
    /// the same share (see [`Table::share_env`]).
    shared_env: Arc<BTreeMap<String, String>>,
    /// Ids by name, and by log stem (several: `a b` and `a-b`), so that a
    /// new app's checks do not visit every app.
    names: HashMap<String, u32>,
    stems: HashMap<String, std::collections::BTreeSet<u32>>,
}

impl Table {
    /// Takes the next id for an app that is added later (with
    /// [`Table::insert_with_id`]), so no other app gets it meanwhile.
    pub fn reserve_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Adds an app with id `wanted` if it is free (a restored app keeps its
    /// id), else with the next id.
    pub fn insert_with_id(&mut self, wanted: u32, mut spec: AppSpec, logs: AppLogs) -> u32 {
        self.share_env(&mut spec);
        let id = if self.apps.contains_key(&wanted) {
            self.next_id
        } else {
            wanted
        };
        self.next_id = self.next_id.max(id + 1);
        self.changed.push(id);
        let app = App {
            id,
            added_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            machine: AppMachine::new(spec.instances.max(1) as usize),
            spec,
            logs,
            procs: HashMap::new(),
            sockets: Vec::new(),
            bound_here: Vec::new(),
            hook_queue: VecDeque::new(),
            hook_pid: None,
            gates: HashMap::new(),
        };
        self.names.insert(app.spec.name.clone(), id);
        self.stems
            .entry(sup_home::log_stem(&app.spec.name))
            .or_default()
            .insert(id);
        self.apps.insert(id, Box::new(app));
        id
    }

    /// Makes `spec` share the inherited environment of the specs before it
    /// when it is the same: apps started by one shell or from one file
    /// inherit the same variables, and 1,000 copies of them were a fifth
    /// of the daemon's memory.
    pub fn share_env(&mut self, spec: &mut AppSpec) {
        if Arc::ptr_eq(&spec.inherited_env, &self.shared_env) {
            return;
        }
        if spec.inherited_env == self.shared_env {
            spec.inherited_env = Arc::clone(&self.shared_env);
        } else {
            self.shared_env = Arc::clone(&spec.inherited_env);
        }
    }

    /// The id the next new app gets.
    pub fn next_id(&self) -> u32 {
        self.next_id
    }

    /// The stem of app `id`'s default log files: its name made a file name
    /// as PM2 makes it, with `-<id>` when an app of a lower id has the same
    /// stem (`a b` and `a-b`), so two apps never share files and adding an
    /// app never moves another's.
    pub fn log_stem(&self, id: u32, name: &str) -> String {
        let stem = sup_home::log_stem(name);
        let taken = self
            .stems
            .get(&stem)
            .is_some_and(|ids| ids.range(..id).next().is_some());
        if taken {
            format!("{stem}-{id}")
        } else {
            stem
        }
    }

    /// Makes ids below `next` unavailable to new apps (they belonged to
    /// apps a previous daemon deleted).
    pub fn skip_ids_below(&mut self, next: u32) {
        self.next_id = self.next_id.max(next);
    }

    /// Removes an app.
    pub fn remove(&mut self, id: u32) {
        self.changed.push(id);
        let Some(app) = self.apps.remove(&id) else {
            return;
        };
        self.names.remove(&app.spec.name);
        let stem = sup_home::log_stem(&app.spec.name);
        if let Some(ids) = self.stems.get_mut(&stem) {
            ids.remove(&id);
            if ids.is_empty() {
                self.stems.remove(&stem);
            }
        }
    }

    /// Notes that app `id`'s spec was replaced.
    pub fn spec_replaced(&mut self, id: u32) {
        self.changed.push(id);
    }

    /// The apps added, removed or given a new spec since the last call,
    /// each once.
    pub fn take_changed(&mut self) -> Vec<u32> {
        let mut ids = std::mem::take(&mut self.changed);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The app with this id.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut App> {
        self.apps.get_mut(&id).map(|a| &mut **a)
    }

    /// The app with this id.
    pub fn get(&self, id: u32) -> Option<&App> {
        self.apps.get(&id).map(|a| &**a)
    }

    /// Every id, in order.
    pub fn ids(&self) -> Vec<u32> {
        self.apps.keys().copied().collect()
    }

    /// Every app, by id.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values().map(|a| &**a)
    }

    /// Every app, by id.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut App> {
        self.apps.values_mut().map(|a| &mut **a)
    }

    /// The id of the app named `name`.
    pub fn find_name(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied()
    }

    /// Ids a target names (the app of `api:2`); an unknown name or id is a
    /// `not_found` error.
    pub fn resolve(&self, target: &Target) -> Result<Vec<u32>, Response> {
        let found = match target {
            Target::All => return Ok(self.apps.keys().copied().collect()),
            Target::Id(id) => self.apps.contains_key(id).then_some(*id),
            Target::Name(name) => self.find_name(name),
            Target::Instance { app, .. } => return self.resolve(app),
        };
        found
            .map(|id| vec![id])
            .ok_or_else(|| Response::error(ErrorKind::NotFound, format!("no app {target}")))
    }

    /// The apps a target names, with the one instance it names if any (an
    /// instance the app does not have is a `not_found` error).
    pub fn resolve_slot(&self, target: &Target) -> Result<(Vec<u32>, Option<usize>), Response> {
        let ids = self.resolve(target)?;
        let (_, index) = target.split();
        let Some(index) = index else {
            return Ok((ids, None));
        };
        let has = ids
            .iter()
            .filter_map(|id| self.get(*id))
            .all(|a| a.machine.slots().has(index as usize));
        if !has {
            let why = format!("no {target}");
            return Err(Response::error(ErrorKind::NotFound, why));
        }
        Ok((ids, Some(index as usize)))
    }

    /// Records that `pid` plays `role` for app `id`.
    pub fn index_pid(&mut self, pid: u32, id: u32, role: Role) {
        self.by_pid.insert(pid, (id, role));
    }

    /// What `pid` is, while it has not been reaped.
    pub fn role_of(&self, pid: u32) -> Option<(u32, Role)> {
        self.by_pid.get(&pid).copied()
    }

    /// The running process `pid` of an app, if it still runs.
    pub fn instance_mut(&mut self, pid: u32) -> Option<&mut Instance> {
        let (app, _) = self.role_of(pid)?;
        self.apps
            .get_mut(&app)?
            .procs
            .get_mut(&pid)
            .map(|i| &mut **i)
    }

    /// Takes what `pid` was, as it exits.
    pub fn unindex_pid(&mut self, pid: u32) -> Option<(u32, Role)> {
        self.by_pid.remove(&pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Table {
        fn insert_pair(&mut self, (spec, logs): (AppSpec, AppLogs)) -> u32 {
            let id = self.reserve_id();
            self.insert_with_id(id, spec, logs)
        }
    }

    fn spec(name: &str) -> (AppSpec, AppLogs) {
        let spec = AppSpec {
            name: name.into(),
            ..AppSpec::default()
        };
        let logs = AppLogs::for_spec(&spec, std::path::Path::new("/tmp"), name, None);
        (spec, logs)
    }

    #[test]
    fn resolves_targets() {
        let mut t = Table::default();
        let a = t.insert_pair(spec("a"));
        let b = t.insert_pair(spec("b"));
        assert_eq!(t.resolve(&Target::All).unwrap(), vec![a, b]);
        assert_eq!(t.resolve(&Target::Name("b".into())).unwrap(), vec![b]);
        assert_eq!(t.resolve(&Target::Id(a)).unwrap(), vec![a]);
        let Err(Response::Error { kind, message }) = t.resolve(&Target::Name("zz".into())) else {
            panic!("expected an error")
        };
        assert_eq!(kind, ErrorKind::NotFound);
        assert!(message.contains("zz"), "{message}");
        assert!(t.resolve(&Target::Id(99)).is_err());
    }

    #[test]
    fn ids_are_never_reused() {
        let mut t = Table::default();
        let a = t.insert_pair(spec("a"));
        t.remove(a);
        assert_ne!(t.insert_pair(spec("a")), a);
    }

    #[test]
    fn apps_that_inherited_the_same_environment_share_one_copy() {
        let env = |v: &str| Arc::new(BTreeMap::from([("HOME".to_string(), v.to_string())]));
        let mut t = Table::default();
        let mut ids = Vec::new();
        for (name, home) in [("a", "/root"), ("b", "/root"), ("c", "/home/c")] {
            let (mut spec, logs) = spec(name);
            spec.inherited_env = env(home);
            ids.push(t.insert_with_id(t.next_id(), spec, logs));
        }
        let inherited = |id: u32| Arc::clone(&t.get(id).unwrap().spec.inherited_env);
        assert!(Arc::ptr_eq(&inherited(ids[0]), &inherited(ids[1])));
        assert!(!Arc::ptr_eq(&inherited(ids[1]), &inherited(ids[2])));
        assert_eq!(inherited(ids[2])["HOME"], "/home/c");
        assert_eq!(inherited(ids[0])["HOME"], "/root");
    }

    #[test]
    fn names_and_log_stems_are_found_without_a_scan_and_forgotten_on_removal() {
        let mut t = Table::default();
        let a = t.insert_pair(spec("a b"));
        assert_eq!(t.log_stem(a, "a b"), "a-b");
        let b = t.insert_pair(spec("a-b"));
        assert_eq!(t.log_stem(b, "a-b"), format!("a-b-{b}"));
        assert_eq!((t.find_name("a b"), t.find_name("a-b")), (Some(a), Some(b)));
        t.remove(a);
        assert_eq!(t.find_name("a b"), None);
        assert_eq!(t.log_stem(b, "a-b"), "a-b", "the lower id is gone");
        let c = t.insert_pair(spec("a b"));
        assert_eq!(t.log_stem(c, "a b"), format!("a-b-{c}"));
    }
}
