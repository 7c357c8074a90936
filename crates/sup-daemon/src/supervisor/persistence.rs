//! `save`, `resurrect`, the live state file, and recovery after a daemon
//! that died without a clean shutdown.

use super::Supervisor;
use crate::lifecycle::Event;
use crate::logs::AppLogs;
use crate::persist::{self, is_running, should_start, LiveInstance, LoadError, SavedApp, Snapshot};
use crate::procstat::read_stat;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};
use sup_proto::Response;
use tracing::{info, warn};

/// Longest time startup waits for a dead daemon's apps to stop.
const ORPHAN_STOP_LIMIT: Duration = Duration::from_secs(10);

/// What a restore did.
#[derive(Debug, Default)]
struct Restored {
    started: Vec<String>,
    stopped: Vec<String>,
    skipped: Vec<String>,
}

impl Supervisor {
    /// The apps as a snapshot; `live` adds each running instance's identity.
    fn snapshot(&self, live: bool) -> Snapshot {
        let apps = self
            .table
            .iter()
            .filter(|app| !app.deleting)
            .map(|app| SavedApp {
                id: app.id,
                spec: app.spec.clone(),
                stopped_by_user: app.lc.user_stopped(),
                was_running: is_running(app.lc.status()),
                instance: live
                    .then(|| app.instance.as_ref().filter(|i| i.exit.is_none()))
                    .flatten()
                    .and_then(|i| {
                        read_stat(i.pid).map(|s| LiveInstance {
                            pid: i.pid,
                            start_time: s.start_time,
                        })
                    }),
            })
            .collect();
        Snapshot {
            version: persist::FORMAT_VERSION,
            sup: sup_proto::SUP_VERSION.to_string(),
            written_at_ms: super::epoch_ms(SystemTime::now()),
            boot_id: persist::boot_id(),
            apps,
        }
    }

    /// `sup save`: writes the dump (fsynced, previous one kept as backup).
    pub(super) fn save(&mut self, force: bool) -> Response {
        let snapshot = self.snapshot(false);
        if snapshot.apps.is_empty() && !force {
            return Response::error(
                "bad_request",
                "there are no apps to save; `sup save --force` saves the empty list over the current dump",
            );
        }
        let path = self.home.dump();
        let data = match serde_json::to_vec_pretty(&snapshot) {
            Ok(data) => data,
            Err(e) => return Response::error("internal", e.to_string()),
        };
        match persist::write_atomic(&path, &data, true, true) {
            Ok(()) => {
                self.dump_warning = None;
                info!(apps = snapshot.apps.len(), "saved {}", path.display());
                Response::Note(format!(
                    "saved {} apps to {}",
                    snapshot.apps.len(),
                    path.display()
                ))
            }
            Err(e) => Response::error("internal", format!("cannot write {}: {e}", path.display())),
        }
    }

    /// `sup resurrect` (and `sup daemon --resurrect`): brings back the dump.
    pub(super) fn resurrect(&mut self) -> Response {
        let (snapshot, warning) = match persist::read_dump(&self.home.dump()) {
            Ok(loaded) => loaded,
            Err(err @ LoadError::Missing(_)) => {
                return Response::error("not_found", err.to_string())
            }
            Err(err) => {
                warn!("{err}");
                return Response::error("bad_dump", err.to_string());
            }
        };
        if let Some(w) = &warning {
            warn!("{w}");
        }
        self.dump_warning = warning.clone();
        let done = self.restore(snapshot.apps);
        let mut note = format!(
            "resurrected {} apps: {} started, {} kept stopped, {} already running",
            done.started.len() + done.stopped.len(),
            done.started.len(),
            done.stopped.len(),
            done.skipped.len()
        );
        if !done.skipped.is_empty() {
            note.push_str(&format!(" ({})", done.skipped.join(", ")));
        }
        if let Some(w) = warning {
            note = format!("warning: {w}\n{note}");
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
                app.lc.set_user_stopped(saved.stopped_by_user);
            }
            if start {
                self.apply(id, Event::Start);
                done.started.push(name);
            } else {
                done.stopped.push(name);
            }
        }
        self.state_dirty = true;
        done
    }

    /// Writes the live state file if anything changed (coalesced: at most
    /// once per turn of the event loop, by the state writer thread).
    pub(super) fn write_state(&mut self) {
        if !std::mem::take(&mut self.state_dirty) {
            return;
        }
        match serde_json::to_vec(&self.snapshot(true)) {
            Ok(data) => self.state.write(data),
            Err(e) => warn!("cannot serialize the state: {e}"),
        }
    }

    /// At startup: if the previous daemon of this boot died without a clean
    /// shutdown, stop the apps it left running and start them afresh, so no
    /// app ever runs twice. A state file of an earlier boot is void.
    pub fn recover(&mut self) {
        let path = self.home.state();
        let snapshot = match persist::read(&path) {
            Ok(snapshot) => snapshot,
            Err(LoadError::Missing(_)) => return,
            Err(err) => {
                warn!("ignoring the state file: {err}");
                return;
            }
        };
        if snapshot.boot_id != persist::boot_id() {
            info!("state file from an earlier boot; the dump (`sup resurrect`) brings apps back");
            let _ = std::fs::remove_file(&path);
            return;
        }
        warn!(
            apps = snapshot.apps.len(),
            "the previous daemon died without a clean shutdown; restoring its apps"
        );
        stop_orphans(&snapshot.apps);
        let done = self.restore(snapshot.apps);
        info!(
            started = done.started.len(),
            stopped = done.stopped.len(),
            "restored the previous daemon's apps"
        );
    }
}

/// Stops the instances a dead daemon left: each is checked by pid and start
/// time (a reused pid is never hit) and signalled through a pidfd; its
/// process group gets SIGTERM, then SIGKILL after its kill timeout.
fn stop_orphans(apps: &[SavedApp]) {
    let mut waiting = Vec::new();
    for app in apps {
        let Some(inst) = app.instance else { continue };
        let Some(pidfd) = pidfd_open(inst.pid) else {
            continue;
        };
        // Checked after the pidfd is open: the pidfd now pins this process.
        if read_stat(inst.pid).map(|s| s.start_time) != Some(inst.start_time) {
            continue;
        }
        warn!(app = %app.spec.name, pid = inst.pid, "stopping an instance the dead daemon left running");
        pidfd_signal(&pidfd, libc::SIGTERM);
        // SAFETY: kill(2) on the group this live process leads.
        unsafe { libc::kill(-(inst.pid as i32), libc::SIGTERM) };
        let limit = Duration::from_millis(app.spec.kill_timeout_ms).min(ORPHAN_STOP_LIMIT);
        waiting.push((pidfd, inst.pid, Instant::now() + limit));
    }
    for (pidfd, pid, deadline) in waiting {
        let left = deadline.saturating_duration_since(Instant::now());
        if !wait_exit(&pidfd, left) {
            pidfd_signal(&pidfd, libc::SIGKILL);
            wait_exit(&pidfd, Duration::from_secs(1));
        }
        // Whatever is left of its group goes too, so no orphan keeps a port.
        // SAFETY: kill(2) of a group that only old members can still hold.
        unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    // SAFETY: a fresh fd we own.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
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

/// Waits until the process behind `pidfd` exits (the pidfd turns readable).
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}
