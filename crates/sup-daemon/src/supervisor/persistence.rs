//! `save`, `resurrect`, the live state file, and recovery after a daemon
//! that died without a clean shutdown.

use super::Supervisor;
use crate::groupwatch::pidfd_open;
use crate::logs::AppLogs;
use crate::machine::{stop_signal, Input};
use crate::persist::{self, is_running, should_start, LiveInstance, LoadError, SavedApp, Snapshot};
use crate::plural;
use crate::procstat::read_stat;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, ErrorKind, Response, Severity};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Least time between two writes of the state file for status changes.
const STATE_COALESCE: Duration = Duration::from_millis(200);

/// Kill timeout for a tagged process whose app the state file does not know.
const DEFAULT_KILL_TIMEOUT: Duration =
    Duration::from_millis(sup_proto::spec::DEFAULT_KILL_TIMEOUT_MS);

/// Longest time startup waits for a dead daemon's apps to stop.
const ORPHAN_STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long startup waits for an orphan after SIGKILL.
const ORPHAN_KILL_WAIT: Duration = Duration::from_secs(1);

/// What a restore did.
#[derive(Debug, Default)]
struct Restored {
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
    pub(super) fn resurrect(&mut self) -> Response {
        let (snapshot, warning) = match persist::read_dump(&self.home.dump()) {
            Ok(loaded) => loaded,
            Err(err @ LoadError::Missing(_)) => {
                return Response::error(ErrorKind::NotFound, err.to_string())
            }
            Err(err) => {
                warn!("{err}");
                return Response::error(ErrorKind::BadDump, err.to_string());
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
        Response::Note(note)
    }

    /// `sup daemon --resurrect`: as `resurrect`, but a missing dump is only
    /// worth a line in the log (a fresh machine has none).
    pub fn resurrect_at_boot(&mut self) {
        match self.resurrect() {
            Response::Note(note) => info!("{note}"),
            Response::Error { message, .. } => warn!("resurrect: {message}"),
            _ => {}
        }
    }

    /// Adds saved apps (same ids where free) and starts those that should run.
    /// Names already present are skipped, never duplicated.
    fn restore(&mut self, apps: Vec<SavedApp>) -> Restored {
        let mut done = Restored::default();
        for saved in apps {
            let name = saved.spec.name.clone();
            if self.table.find_name(&name).is_some() {
                done.skipped.push(name);
                continue;
            }
            let start = should_start(&saved);
            let logs = AppLogs::for_spec(&saved.spec, &self.home.logs_dir());
            self.logs.open(&logs);
            let id = self.table.insert_with_id(saved.id, saved.spec, logs);
            if let Some(app) = self.table.get_mut(id) {
                app.machine.set_user_stopped(saved.stopped_by_user);
            }
            if start {
                self.apply(id, Input::Start);
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

    /// At startup: if the previous daemon of this boot died without a clean
    /// shutdown, stop every process it left running (found by its live
    /// state and by their tags, so a corrupt file loses none), and start
    /// its apps afresh, so no app ever runs twice. What could not be read
    /// is kept aside and told on every answer until `sup save`.
    pub fn recover(&mut self) {
        let found = persist::state::recover(&self.home, &persist::boot_id());
        if !found.found {
            return;
        }
        warn!(
            apps = found.apps.len(),
            "the previous daemon died without a clean shutdown; restoring its apps"
        );
        stop_orphans(self.home.dir(), &found.apps);
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

impl Supervisor {
    /// After `sup stop` or `delete`: the processes an app started outside
    /// its process group (children that called `setsid`) get its stop
    /// signal, then SIGKILL after its kill timeout. One /proc pass for all
    /// the apps stopped in this turn of the loop, on a blocking thread.
    pub(super) fn stop_escaped(&mut self) {
        let ids = std::mem::take(&mut self.escaped_of);
        let apps: Vec<(u32, Signal, Duration, Vec<u32>)> = ids
            .iter()
            .filter_map(|&id| self.table.get(id))
            .map(|app| {
                let after = Duration::from_millis(app.spec.kill_timeout_ms);
                let own = app.procs.keys().copied().collect();
                (app.id, stop_signal(&app.spec), after, own)
            })
            .collect();
        if apps.is_empty() {
            return;
        }
        let home = self.home.dir().to_path_buf();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let scan = tokio::task::spawn_blocking(move || signal_escaped(&home, &apps));
            for (pid, start_time, after) in scan.await.unwrap_or_default() {
                let tx = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(super::Msg::StrayDeadline { pid, start_time });
                });
            }
        });
    }

    /// Live processes app `id` started, other than its instances, probes
    /// and hooks: children its main process left behind.
    pub(super) fn leftover_pids(&self, id: u32) -> Vec<u32> {
        let ancestors = ancestors();
        tagged_processes(self.home.dir())
            .into_iter()
            .filter(|&(pid, app_id, _)| {
                app_id == id && !ancestors.contains(&pid) && self.table.role_of(pid).is_none()
            })
            .map(|(pid, _, _)| pid)
            .collect()
    }

    /// The kill timeout of an escaped process ran out.
    pub(super) fn stray_deadline(&self, pid: u32, start_time: u64) {
        if read_stat(pid).map(|s| s.start_time) == Some(start_time) {
            // The very process we signalled (same start time).
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// At the end of a shutdown: stops what the apps started and left
    /// behind outside their process groups (children that called `setsid`),
    /// found by their tags, so `sup kill` leaves no process behind.
    pub(super) fn stop_strays(&self) {
        stop_orphans(self.home.dir(), &[]);
    }
}

/// A process a dead daemon left, pinned by a pidfd.
struct Orphan {
    pidfd: OwnedFd,
    pid: u32,
    signal: i32,
    deadline: Instant,
    /// SIGKILL was sent; `deadline` is then the end of the wait for it.
    killed: bool,
}

/// Sends each app's stop signal to the processes it left outside its
/// groups; returns them (pid, start time, kill timeout) for the SIGKILL.
fn signal_escaped(
    home: &Path,
    apps: &[(u32, Signal, Duration, Vec<u32>)],
) -> Vec<(u32, u64, Duration)> {
    let ancestors = ancestors();
    let mut signalled = Vec::new();
    for (pid, app_id, start_time) in tagged_processes(home) {
        let Some((_, sig, after, own)) = apps.iter().find(|a| a.0 == app_id) else {
            continue;
        };
        if ancestors.contains(&pid) || own.contains(&pid) {
            continue;
        }
        warn!(
            app_id,
            pid, "stopping a process the app left outside its group"
        );
        // The pid was read with its start time just now.
        let _ = kill(Pid::from_raw(pid as i32), *sig);
        signalled.push((pid, start_time, *after));
    }
    signalled
}

/// Stops everything a dead daemon left running, so no app runs twice and
/// Stops everything a dead daemon left running, so no app runs twice and
/// no orphan keeps a port: the instances it recorded (checked by pid and
/// start time, so a reused pid is never hit), and every other process that
/// carries its apps' tag (`SUP_HOME` and `SUP_APP_ID` in the environment):
/// reload instances, children, a spawn the state file had not caught up
/// with. Each gets its app's stop signal, then SIGKILL after its kill
/// timeout (at most 10 s), through a pidfd; group leaders with their group.
fn stop_orphans(home: &Path, apps: &[SavedApp]) {
    let mut orphans: Vec<Orphan> = apps
        .iter()
        .filter_map(|app| {
            pin(
                app.instance?.pid,
                app.instance.map(|i| i.start_time),
                Some(&app.spec),
            )
        })
        .collect();
    // A shell started from inside an app carries its tags too: the CLI that
    // started this daemon, and that shell, must be spared.
    let ancestors = ancestors();
    for (pid, app_id, start_time) in tagged_processes(home) {
        if !orphans.iter().any(|o| o.pid == pid) && !ancestors.contains(&pid) {
            let spec = apps.iter().find(|a| a.id == app_id).map(|a| &a.spec);
            orphans.extend(pin(pid, Some(start_time), spec));
        }
    }
    for o in &orphans {
        warn!(
            pid = o.pid,
            "stopping a process the dead daemon left running"
        );
        signal_orphan(o, o.signal);
    }
    // All at once: the wait is the longest kill timeout, not their sum.
    let mut left = orphans;
    while let Some(deadline) = left.iter().map(|o| o.deadline).min() {
        let exited = wait_any(&left, deadline.saturating_duration_since(Instant::now()));
        let now = Instant::now();
        left.retain(|o| !exited.contains(&o.pid));
        for o in left.iter_mut().filter(|o| o.deadline <= now) {
            signal_orphan(o, libc::SIGKILL);
            o.deadline = now + ORPHAN_KILL_WAIT;
            o.killed = true;
        }
        if left.iter().all(|o| o.killed && o.deadline <= now) {
            break;
        }
    }
}

/// Opens a pidfd on `pid` if it is (still) the process we mean: alive, and
/// started at `start_time` when that is known.
fn pin(pid: u32, start_time: Option<u64>, spec: Option<&AppSpec>) -> Option<Orphan> {
    if pid == std::process::id() {
        return None;
    }
    let pidfd = pidfd_open(pid)?;
    // Checked after the pidfd is open: the pidfd now pins this process.
    let now = read_stat(pid)?.start_time;
    if start_time.is_some_and(|t| t != now) {
        return None;
    }
    let signal = spec
        .map_or(sup_proto::spec::DEFAULT_STOP_SIGNAL, |s| s.stop_signal)
        .number();
    let timeout = spec.map_or(DEFAULT_KILL_TIMEOUT, |s| {
        Duration::from_millis(s.kill_timeout_ms)
    });
    let deadline = Instant::now() + timeout.min(ORPHAN_STOP_LIMIT);
    Some(Orphan {
        pidfd,
        pid,
        signal,
        deadline,
        killed: false,
    })
}

/// Signals an orphan, and its whole group when it leads one.
fn signal_orphan(o: &Orphan, sig: i32) {
    pidfd_signal(&o.pidfd, sig);
    let leads_group = read_stat(o.pid).map(|s| s.pgrp) == Some(o.pid);
    if leads_group {
        // A group whose leader the pidfd pins alive.
        if let Ok(sig) = Signal::try_from(sig) {
            let _ = killpg(Pid::from_raw(o.pid as i32), sig);
        }
    }
}

/// Our own ancestors: parent, grandparent, ... up to init.
fn ancestors() -> Vec<u32> {
    let mut found = Vec::new();
    let mut pid = std::process::id();
    while let Some(parent) = parent_of(pid).filter(|p| *p > 1 && !found.contains(p)) {
        found.push(parent);
        pid = parent;
    }
    found
}

fn parent_of(pid: u32) -> Option<u32> {
    read_stat(pid).map(|s| s.ppid)
}

/// (pid, app id, start time) of each process tagged for `home`; the start
/// time, read in the same pass, lets the caller check the pid was not reused.
fn tagged_processes(home: &Path) -> Vec<(u32, u32, u64)> {
    let home_var = format!("SUP_HOME={}", home.display());
    let tag = format!("{}=", super::instances::TAG_VAR);
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        if !vars.contains(&home_var.as_bytes()) {
            continue;
        }
        let app_id = vars
            .iter()
            .find_map(|v| v.strip_prefix(tag.as_bytes()))
            .and_then(|id| std::str::from_utf8(id).ok()?.parse().ok());
        let start_time = read_stat(pid).map(|s| s.start_time);
        if let (Some(app_id), Some(start_time)) = (app_id, start_time) {
            found.push((pid, app_id, start_time));
        }
    }
    found
}

fn pidfd_signal(pidfd: &OwnedFd, sig: i32) {
    // SAFETY: pidfd_send_signal on a pidfd we own.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Waits up to `timeout` until at least one of `orphans` exits (its pidfd
/// turns readable); returns the pids of those that did.
fn wait_any(orphans: &[Orphan], timeout: Duration) -> Vec<u32> {
    let mut pfds: Vec<libc::pollfd> = orphans
        .iter()
        .map(|o| libc::pollfd {
            fd: o.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfds` is a valid array of pollfds of the given length.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    orphans
        .iter()
        .zip(&pfds)
        .filter(|(_, p)| p.revents != 0)
        .map(|(o, _)| o.pid)
        .collect()
}
