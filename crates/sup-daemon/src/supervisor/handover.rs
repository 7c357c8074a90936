//! `sup update`: the daemon re-executes the new binary in place (same pid,
//! so the apps stay its children) and hands it the process table, the apps'
//! pipes, the held sockets and the daemon lock, as open fds and a file.

use super::table::{Instance, Role};
use super::Supervisor;
use crate::lifecycle::Lifecycle;
use crate::logs::{AppLogs, Logs};
use crate::sockets::Held;
use serde::{Deserialize, Serialize};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, EventRecord, Response, Status};
use tracing::{error, info, warn};

/// What one daemon hands the next.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The fd holding the daemon lock.
    pub lock_fd: RawFd,
    /// The apps.
    pub apps: Vec<HandedApp>,
    /// Recent events, so `sup events` keeps its history.
    pub events: Vec<EventRecord>,
}

/// One app, handed over.
#[derive(Debug, Serialize, Deserialize)]
pub struct HandedApp {
    id: u32,
    spec: AppSpec,
    lc: Lifecycle,
    instance: Option<HandedInstance>,
    sockets: Vec<(String, RawFd)>,
}

/// A running instance, handed over.
#[derive(Debug, Serialize, Deserialize)]
struct HandedInstance {
    pid: u32,
    uptime_ms: u64,
    pipes: Vec<RawFd>,
    ready: bool,
}

impl Supervisor {
    /// Replaces this daemon with `binary`, keeping every app running. Only
    /// returns (with the error for the client) when that could not be done;
    /// then this daemon goes on as before.
    pub(super) async fn update(&mut self, binary: &str, lock_fd: RawFd) -> Response {
        if let Err(why) = check_binary(binary).and_then(|_| self.check_quiet()) {
            return Response::error("update", why);
        }
        info!(binary, "update: handing over to the new binary");
        // Stop reading the pipes: what the apps write from now on waits in
        // the pipes for the next daemon; what was read reaches the disk.
        for id in self.table.ids() {
            if let Some(inst) = self.table.get_mut(id).and_then(|a| a.instance.as_mut()) {
                inst.end_captures();
            }
        }
        let fresh = match Logs::start() {
            Ok(logs) => logs,
            Err(e) => return Response::error("update", format!("cannot restart logging: {e}")),
        };
        std::mem::replace(&mut self.logs, fresh)
            .finish(Duration::from_secs(5))
            .await;
        let handover = self.handover(lock_fd);
        let path = self.home.dir().join("handover.json");
        let result = serde_json::to_vec(&handover)
            .map_err(std::io::Error::other)
            .and_then(|data| crate::persist::write_atomic(&path, &data, false, false))
            .and_then(|()| exec(binary, &path, &handover));
        // Still here: the exec failed. Take the fds back and carry on.
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        error!("update failed, this daemon goes on: {err}");
        let _ = std::fs::remove_file(&path);
        self.resume_after_failed_update();
        Response::error(
            "update",
            format!("cannot start {binary}: {err}; the old daemon goes on"),
        )
    }

    /// Only a quiet table can be handed over: no timers or transitions in flight.
    fn check_quiet(&self) -> Result<(), String> {
        for app in self.table.iter() {
            let busy = !matches!(
                app.lc.status(),
                Status::Online | Status::Stopped | Status::Errored
            ) || app.reload.is_some()
                || !app.retired.is_empty()
                || app.hook_pid.is_some();
            if busy {
                return Err(format!(
                    "{} is {} right now; try `sup update` again in a moment",
                    app.spec.name,
                    app.lc.status().as_str()
                ));
            }
        }
        Ok(())
    }

    fn handover(&self, lock_fd: RawFd) -> Handover {
        let apps = self
            .table
            .iter()
            .map(|app| HandedApp {
                id: app.id,
                spec: app.spec.clone(),
                lc: app.lc.clone(),
                instance: app.instance.as_ref().map(|i| HandedInstance {
                    pid: i.pid,
                    uptime_ms: i.started.elapsed().as_millis() as u64,
                    pipes: i.pipes.iter().map(AsRawFd::as_raw_fd).collect(),
                    ready: i.ready,
                }),
                sockets: app
                    .sockets
                    .iter()
                    .map(|h| (h.addr.clone(), h.fd.as_raw_fd()))
                    .collect(),
            })
            .collect();
        Handover {
            lock_fd,
            apps,
            events: self.events.history(None),
        }
    }

    fn resume_after_failed_update(&mut self) {
        for id in self.table.ids() {
            let Some(app) = self.table.get_mut(id) else {
                continue;
            };
            let logs = app.logs.clone();
            let Some(inst) = app.instance.as_mut() else {
                continue;
            };
            let targets = [&logs.out, &logs.err];
            let mut captures = Vec::new();
            for (pipe, target) in inst.pipes.iter().zip(targets) {
                set_cloexec(pipe.as_raw_fd(), true);
                match pipe
                    .try_clone()
                    .and_then(|fd| self.logs.capture(fd, target))
                {
                    Ok(capture) => captures.push(capture),
                    Err(e) => warn!("cannot resume capturing: {e}"),
                }
            }
            inst.captures = captures;
            for held in &app.sockets {
                set_cloexec(held.fd.as_raw_fd(), true);
            }
        }
    }

    /// In the new daemon: takes over the apps of `handover`.
    pub fn adopt(&mut self, handover: Handover) {
        for app in handover.apps {
            let logs = AppLogs::for_spec(&app.spec, &self.home.logs_dir());
            let id = self.table.insert_with_id(app.id, app.spec, logs.clone());
            let Some(entry) = self.table.get_mut(id) else {
                continue;
            };
            entry.lc = app.lc;
            // SAFETY: the old daemon passed these fds open and owns them no more.
            entry.sockets = app
                .sockets
                .into_iter()
                .map(|(addr, fd)| {
                    set_cloexec(fd, true);
                    Held {
                        addr,
                        fd: unsafe { OwnedFd::from_raw_fd(fd) },
                    }
                })
                .collect();
            if let Some(handed) = app.instance {
                let instance = self.adopt_instance(handed, &logs);
                self.table.index_pid(instance.pid, id, Role::Main);
                if let Some(entry) = self.table.get_mut(id) {
                    entry.instance = Some(instance);
                }
            }
            if let Some(entry) = self.table.get_mut(id) {
                let actions = entry.lc.resume(&entry.spec);
                for action in actions {
                    self.act(id, action);
                }
            }
            if self
                .table
                .get(id)
                .is_some_and(|a| a.lc.status() == Status::Online)
            {
                self.start_liveness(id);
            }
        }
        for event in handover.events {
            self.events.record(event);
        }
        self.state_dirty = true;
        info!("took over from the previous daemon");
    }

    fn adopt_instance(&mut self, handed: HandedInstance, logs: &AppLogs) -> Instance {
        let targets = [&logs.out, &logs.err];
        let mut captures = Vec::new();
        let mut pipes = Vec::new();
        for (fd, target) in handed.pipes.into_iter().zip(targets) {
            set_cloexec(fd, true);
            // SAFETY: the old daemon passed this fd open and owns it no more.
            let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
            match pipe
                .try_clone()
                .and_then(|dup| self.logs.capture(dup, target))
            {
                Ok(capture) => captures.push(capture),
                Err(e) => warn!("cannot capture a handed-over pipe: {e}"),
            }
            pipes.push(pipe);
        }
        let mut instance = Instance::new(handed.pid, captures);
        instance.started = Instant::now()
            .checked_sub(Duration::from_millis(handed.uptime_ms))
            .unwrap_or_else(Instant::now);
        instance.ready = handed.ready;
        instance.pipes = pipes;
        instance
    }
}

/// Runs `binary --version` and checks it is a sup.
fn check_binary(binary: &str) -> Result<(), String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {binary} --version: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.starts_with("sup ") {
        return Err(format!(
            "{binary} --version did not answer like sup ({})",
            text.trim()
        ));
    }
    Ok(())
}

/// Clears close-on-exec on every fd to hand over, then execs the new binary.
/// Returns only on failure.
fn exec(binary: &str, path: &Path, handover: &Handover) -> std::io::Result<()> {
    let mut fds = vec![handover.lock_fd];
    for app in &handover.apps {
        fds.extend(app.sockets.iter().map(|(_, fd)| *fd));
        if let Some(inst) = &app.instance {
            fds.extend(&inst.pipes);
        }
    }
    for &fd in &fds {
        set_cloexec(fd, false);
    }
    let program = CString::new(binary).map_err(std::io::Error::other)?;
    let args = [
        CString::new("sup").map_err(std::io::Error::other)?,
        CString::new("daemon").map_err(std::io::Error::other)?,
        CString::new("--handover").map_err(std::io::Error::other)?,
        CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?,
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: valid NUL-terminated argv; on success this never returns.
    unsafe { libc::execv(program.as_ptr(), argv.as_ptr()) };
    let err = std::io::Error::last_os_error();
    set_cloexec(handover.lock_fd, true);
    Err(err)
}

fn set_cloexec(fd: RawFd, on: bool) {
    // SAFETY: fcntl on an fd we hold.
    unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) };
}

/// Reads the handover file the previous daemon wrote, and removes it.
pub fn read_handover(path: &Path) -> std::io::Result<Handover> {
    let data = std::fs::read(path)?;
    let _ = std::fs::remove_file(path);
    serde_json::from_slice(&data).map_err(std::io::Error::other)
}
