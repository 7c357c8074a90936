//! The process table: apps by id, and the pid index that routes exits.

use crate::health::Health;
use crate::lifecycle::{ExitKind, Lifecycle};
use crate::logs::{AppLogs, Capture, Stop};
use crate::notify::NotifySocket;
use crate::procstat::{tree_usage, CpuMeter};
use crate::sockets::Held;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::Instant;
use sup_proto::{AppInfo, AppSpec, EventRecord, InstanceInfo, LogInfo, Response, Target};
use tokio::sync::oneshot;

/// A running (or draining) copy of an app.
#[derive(Debug)]
pub struct Instance {
    /// Pid of the main process; also its process group id.
    pub pid: u32,
    /// When it was spawned.
    pub started: Instant,
    /// CPU rate between queries.
    pub meter: CpuMeter,
    /// Set once the main process exited while the rest of the group drains.
    pub exit: Option<ExitKind>,
    /// The captures of its stdout and stderr.
    pub captures: Vec<Capture>,
    /// Its own sd_notify socket, when the app reports readiness that way.
    pub notify: Option<NotifySocket>,
    /// It passed its readiness check.
    pub ready: bool,
    /// Copies of its stdout and stderr read ends, kept for `sup update`.
    pub pipes: Vec<OwnedFd>,
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
            exit: None,
            captures,
            notify: None,
            ready: false,
            pipes: Vec::new(),
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

    /// Stops the captures at once, for `sup update`; returns their sources.
    pub fn detach_captures(&mut self) -> Vec<u64> {
        self.captures
            .iter_mut()
            .map(|c| {
                c.stop(Stop::Detach);
                c.source
            })
            .collect()
    }
}

/// One app in the table.
#[derive(Debug)]
pub struct App {
    /// Stable numeric id.
    pub id: u32,
    /// Its spec.
    pub spec: AppSpec,
    /// Its lifecycle.
    pub lc: Lifecycle,
    /// Its log files.
    pub logs: AppLogs,
    /// The current instance, if one runs.
    pub instance: Option<Instance>,
    /// When the scheduled restart is due, while waiting.
    pub restart_due: Option<Instant>,
    /// Being deleted: removed once down.
    pub deleting: bool,
    /// Listening sockets held for the app while it may run.
    pub sockets: Vec<Held>,
    /// Liveness health of the current instance.
    pub health: Health,
    /// A reload in progress: the new instance, and who waits for the outcome.
    pub reload: Option<Reload>,
    /// Old instances stopping after a reload.
    pub retired: Vec<Instance>,
    /// Events waiting for the app's `on_event` hook, oldest first.
    pub hook_queue: VecDeque<EventRecord>,
    /// Pid of the hook running now.
    pub hook_pid: Option<u32>,
    /// Fire when the last instance's captures are done: the next instance's
    /// output waits for them, so lines keep their order across a restart.
    pub gates: Vec<Option<oneshot::Receiver<()>>>,
}

/// A reload in progress.
#[derive(Debug)]
pub struct Reload {
    /// The new instance, not yet ready.
    pub incoming: Instance,
    /// Told whether the reload succeeded (a note) or failed (why).
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

/// What a pid is to the daemon, so that its exit goes to the right owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The main process of the app's current instance.
    Main,
    /// The new instance of a reload.
    Incoming,
    /// An old instance stopping after a reload.
    Retired,
    /// A command probe.
    Probe(ProbeKind),
    /// The `on_event` hook.
    Hook,
}

/// Which check a probe serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Restart when it keeps failing.
    Liveness,
    /// Hold `launching` until it passes.
    Readiness,
}

impl App {
    /// A snapshot for clients, with usage read from /proc; `with_spec` adds the spec.
    pub fn info(&mut self, logs: LogInfo, with_spec: bool) -> AppInfo {
        let listen = self.sockets.iter().map(|h| h.addr.clone()).collect();
        let now = Instant::now();
        let status = self.lc.status();
        let live = self.instance.as_mut().filter(|i| i.exit.is_none());
        let (pid, uptime_ms, cpu, memory) = match live {
            Some(inst) => {
                let u = tree_usage(inst.pid);
                let (cpu, memory) = (inst.meter.percent(u.ticks, now), u.rss_bytes);
                let uptime = now.duration_since(inst.started).as_millis() as u64;
                (Some(inst.pid), Some(uptime), cpu, memory)
            }
            None => (None, None, 0.0, 0),
        };
        let mut instances = vec![InstanceInfo {
            pid,
            status,
            uptime_ms,
            cpu,
            memory,
        }];
        if let Some(reload) = &self.reload {
            let inst = &reload.incoming;
            let u = tree_usage(inst.pid);
            instances.push(InstanceInfo {
                pid: Some(inst.pid),
                status: sup_proto::Status::Launching,
                uptime_ms: Some(now.duration_since(inst.started).as_millis() as u64),
                cpu: 0.0,
                memory: u.rss_bytes,
            });
        }
        AppInfo {
            id: self.id,
            name: self.spec.name.clone(),
            pid,
            status,
            restarts: self.lc.restarts(),
            unstable_restarts: self.lc.unstable_restarts(),
            stopped_by_user: self.lc.user_stopped(),
            uptime_ms,
            cpu,
            memory,
            last_exit: self.lc.last_exit().map(|e| e.to_string()),
            error: self.lc.error().map(str::to_string),
            restart_reason: self.lc.restart_reason().map(str::to_string),
            restart_in_ms: self
                .restart_due
                .filter(|_| status == sup_proto::Status::WaitingRestart)
                .map(|due| due.saturating_duration_since(now).as_millis() as u64),
            instances,
            dump_warning: None,
            logs,
            health: self.health.info(self.spec.health.liveness.is_some()),
            listen,
            spec: with_spec.then(|| self.spec.clone()),
        }
    }
}

/// Apps by id, with an index from live pids to app ids.
#[derive(Debug, Default)]
pub struct Table {
    apps: BTreeMap<u32, App>,
    by_pid: HashMap<u32, (u32, Role)>,
    next_id: u32,
}

impl Table {
    /// Adds an app with the next id; the caller checked the name is free.
    pub fn insert(&mut self, spec: AppSpec, logs: AppLogs) -> u32 {
        self.insert_with_id(self.next_id, spec, logs)
    }

    /// Adds an app with id `wanted` if it is free (a restored app keeps its
    /// id), else with the next id.
    pub fn insert_with_id(&mut self, wanted: u32, spec: AppSpec, logs: AppLogs) -> u32 {
        let id = if self.apps.contains_key(&wanted) {
            self.next_id
        } else {
            wanted
        };
        self.next_id = self.next_id.max(id + 1);
        let app = App {
            id,
            spec,
            lc: Lifecycle::default(),
            logs,
            instance: None,
            restart_due: None,
            deleting: false,
            sockets: Vec::new(),
            health: Health::default(),
            reload: None,
            retired: Vec::new(),
            hook_queue: VecDeque::new(),
            hook_pid: None,
            gates: Vec::new(),
        };
        self.apps.insert(id, app);
        id
    }

    /// Removes an app.
    pub fn remove(&mut self, id: u32) {
        self.apps.remove(&id);
    }

    /// The app with this id.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut App> {
        self.apps.get_mut(&id)
    }

    /// The app with this id.
    pub fn get(&self, id: u32) -> Option<&App> {
        self.apps.get(&id)
    }

    /// Every id, in order.
    pub fn ids(&self) -> Vec<u32> {
        self.apps.keys().copied().collect()
    }

    /// Every app, by id.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// The id of the app named `name`.
    pub fn find_name(&self, name: &str) -> Option<u32> {
        self.apps
            .values()
            .find(|a| a.spec.name == name)
            .map(|a| a.id)
    }

    /// Ids a target names; an unknown name or id is a `not_found` error.
    pub fn resolve(&self, target: &Target) -> Result<Vec<u32>, Response> {
        let found = match target {
            Target::All => return Ok(self.apps.keys().copied().collect()),
            Target::Id(id) => self.apps.contains_key(id).then_some(*id),
            Target::Name(name) => self.find_name(name),
        };
        found
            .map(|id| vec![id])
            .ok_or_else(|| Response::error("not_found", format!("no app {target}")))
    }

    /// Records that `pid` plays `role` for app `id`.
    pub fn index_pid(&mut self, pid: u32, id: u32, role: Role) {
        self.by_pid.insert(pid, (id, role));
    }

    /// Changes what `pid` is (an incoming instance promoted, a main retired).
    pub fn set_role(&mut self, pid: u32, role: Role) {
        if let Some(entry) = self.by_pid.get_mut(&pid) {
            entry.1 = role;
        }
    }

    /// What `pid` is, while it has not been reaped.
    pub fn role_of(&self, pid: u32) -> Option<(u32, Role)> {
        self.by_pid.get(&pid).copied()
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
            self.insert(spec, logs)
        }
    }

    fn spec(name: &str) -> (AppSpec, AppLogs) {
        let spec = AppSpec {
            name: name.into(),
            ..AppSpec::default()
        };
        let logs = AppLogs::for_spec(&spec, std::path::Path::new("/tmp"));
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
        assert_eq!(kind, "not_found");
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
}
