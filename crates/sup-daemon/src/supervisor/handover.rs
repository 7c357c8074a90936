//! `sup update`: the daemon re-executes the new binary in place (same pid,
//! so the apps stay its children) and hands it the process table, the apps'
//! pipes (with any unfinished line), the held sockets and the daemon lock,
//! as open fds and a file.

use super::channel::Channel;
use super::table::App;
use super::table::{Instance, Role};
use super::{Msg, Supervisor};
use crate::lifecycle::Lifecycle;
use crate::logs::{AppLogs, Logs, Partial, Partials};
use crate::machine::{Adopted, AppMachine, Proc, Slot};
use crate::procstat::CpuMeter;
use crate::sockets::Held;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};
use sup_proto::{AppSpec, ErrorKind, EventRecord, Response, Status};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

/// Version of the handover format. `sup update` refuses a binary that does
/// not speak it (`sup daemon --handover-version`).
pub const HANDOVER_VERSION: u32 = 1;

/// How long the new binary may take to say which handover format it reads.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the log writer may take to write what was read before the
/// exec. The loop waits for it (the table must not change until the exec),
/// so it is short: a writer stuck on a dead disk fails the update instead.
const WRITER_DRAIN: Duration = Duration::from_secs(2);

/// How long a detached capture may take to give its pipe back (it does at
/// its next turn on the loop).
const PIPE_BACK: Duration = Duration::from_secs(2);

/// What one daemon hands the next.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// [`HANDOVER_VERSION`] of the writer.
    pub version: u32,
    /// The fd holding the daemon lock.
    pub lock_fd: RawFd,
    /// The apps.
    apps: Vec<HandedApp>,
    /// Recent events, so `sup events` keeps its history.
    events: Vec<EventRecord>,
    /// The id the next new app gets, so that no id of a deleted app comes
    /// back (0.1.0 did not hand it over: then the highest id + 1).
    #[serde(default)]
    next_id: u32,
    /// The cgroup subtree of the apps (none in tag mode, or from 0.1.0).
    #[serde(default)]
    subtree: Option<crate::ownership::Subtree>,
    /// The fd limit apps get ([`crate::spawn::APP_NOFILE`]): the next
    /// daemon starts with the raised one and could not know it.
    #[serde(default)]
    app_nofile: u64,
    /// The hard fd limit apps get ([`crate::spawn::APP_NOFILE_HARD`]).
    #[serde(default)]
    app_nofile_hard: u64,
}

impl Handover {
    /// The cgroup subtree the previous daemon used, if any.
    pub fn subtree(&self) -> Option<crate::ownership::Subtree> {
        self.subtree.clone()
    }

    /// The fd limits apps get (soft, hard), 0 when the previous daemon
    /// raised none.
    pub fn app_nofile(&self) -> (u64, u64) {
        (self.app_nofile, self.app_nofile_hard)
    }
}

/// One app, handed over.
#[derive(Debug, Serialize, Deserialize)]
struct HandedApp {
    id: u32,
    spec: AppSpec,
    /// The first instance slot, flattened (the only one 0.1.0 knew).
    #[serde(flatten)]
    first: HandedSlot,
    sockets: Vec<(String, RawFd)>,
    /// The other instance slots.
    #[serde(default)]
    more: Vec<HandedSlot>,
}

/// One instance slot, handed over.
#[derive(Debug, Serialize, Deserialize)]
struct HandedSlot {
    /// Its index (0.1.0 had only 0).
    #[serde(default)]
    index: usize,
    lc: Lifecycle,
    instance: Option<HandedInstance>,
    /// Time left before a pending restart.
    restart_in_ms: Option<u64>,
}

/// A running instance, handed over.
#[derive(Debug, Serialize, Deserialize)]
struct HandedInstance {
    pid: u32,
    uptime_ms: u64,
    pipes: Vec<RawFd>,
    /// Per pipe, the line the app was in the middle of writing.
    partials: Vec<Option<Partial>>,
    ready: bool,
    /// The daemon's end of its Node IPC channel, and whether it may ask
    /// for binds (absent from 0.1.0's handovers: no channel then).
    #[serde(default)]
    channel: Option<(RawFd, bool)>,
}

/// Result of an update that did not happen: the reason for the client.
type Refusal = Response;

impl Supervisor {
    /// `sup update`: refused at once when the daemon is busy; else the new
    /// binary is checked on a blocking thread, with a deadline (a binary
    /// that hangs must not stall supervision), and the loop goes on until
    /// [`Msg::UpdateChecked`] comes back.
    pub(super) fn begin_update(&mut self, binary: String, reply: oneshot::Sender<Response>) {
        if self.run.is_some() {
            // The next daemon would not be `sup run`: its console, health
            // listener and exit code would be lost. A new image is the way.
            let why = "sup run cannot update in place: replace the container (or restart `sup run`) with the new sup";
            let _ = reply.send(Response::error(ErrorKind::Update, why));
            return;
        }
        if let Err(why) = self.check_quiet() {
            let _ = reply.send(Response::error(ErrorKind::Busy, why));
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let check = {
                let binary = binary.clone();
                tokio::task::spawn_blocking(move || check_binary(&binary))
            };
            let checked = match tokio::time::timeout(CHECK_TIMEOUT, check).await {
                Ok(joined) => joined.unwrap_or_else(|e| Err(e.to_string())),
                Err(_) => Err(format!(
                    "{binary} did not answer `sup daemon --handover-version` within {} s",
                    CHECK_TIMEOUT.as_secs()
                )),
            };
            let _ = tx.send(Msg::UpdateChecked {
                binary,
                checked,
                reply,
            });
        });
    }

    /// Replaces this daemon with `binary`, keeping every app running. Only
    /// returns (with the error for the client) when that could not be done;
    /// then this daemon goes on as before.
    pub(super) async fn update(&mut self, binary: &str, lock_fd: RawFd) -> Refusal {
        // Quiet when asked, but the check took a while.
        if let Err(why) = self.check_quiet() {
            return Response::error(ErrorKind::Busy, why);
        }
        info!(binary, "update: handing over to the new binary");
        // Stop reading the pipes at once: what the apps write from now on
        // waits in the pipes for the next daemon; what was read reaches the
        // disk, and unfinished lines are handed over.
        let mut sources = HashMap::new();
        let mut coming = Vec::new();
        for app in self.table.iter_mut() {
            for inst in app.procs.values_mut() {
                let (of_inst, pipes) = inst.detach_captures();
                sources.insert(inst.pid, of_inst);
                coming.push((app.id, inst.pid, pipes));
                // What an app sends from now on waits in its channel for
                // the next daemon.
                if let Some(kept) = &inst.channel {
                    kept.task.abort();
                }
            }
        }
        self.take_back_pipes(coming).await;
        let fresh = match Logs::start() {
            Ok(logs) => logs,
            Err(e) => return self.update_failed(format!("cannot restart logging: {e}"), None),
        };
        let Some(mut partials) = std::mem::replace(&mut self.logs, fresh)
            .finish(WRITER_DRAIN)
            .await
        else {
            return self.update_failed("the log writer did not finish in time".into(), None);
        };
        let handover = self.handover(lock_fd, &sources, &mut partials);
        let path = self.home.dir().join("handover.json");
        let result = serde_json::to_vec(&handover)
            .map_err(std::io::Error::other)
            .and_then(|data| crate::persist::write_atomic(&path, &data, false, false))
            .and_then(|()| exec(binary, &path, &handover));
        // Still here: the exec failed.
        let _ = std::fs::remove_file(&path);
        let err = result.err().map(|e| e.to_string()).unwrap_or_default();
        self.update_failed(format!("cannot start {binary}: {err}"), Some(handover))
    }

    /// Puts each instance's pipes, as its detached captures give them
    /// back, where the handover (or a failed update) finds them.
    async fn take_back_pipes(&mut self, coming: Vec<(u32, u32, Vec<oneshot::Receiver<OwnedFd>>)>) {
        for (id, pid, receivers) in coming {
            let mut pipes = Vec::new();
            for rx in receivers {
                match tokio::time::timeout(PIPE_BACK, rx).await {
                    Ok(Ok(fd)) => pipes.push(fd),
                    // Its capture ended meanwhile: the instance is gone.
                    _ => warn!(pid, "a capture did not give its pipe back"),
                }
            }
            if let Some(inst) = self.table.get_mut(id).and_then(|a| a.procs.get_mut(&pid)) {
                inst.pipes = pipes;
            }
        }
    }

    /// Takes the fds back and carries on as before.
    fn update_failed(&mut self, why: String, handover: Option<Handover>) -> Refusal {
        error!("update failed, this daemon goes on: {why}");
        let mut seeds: HashMap<u32, Vec<Option<Partial>>> = handover
            .into_iter()
            .flat_map(|h| h.apps)
            .flat_map(|a| std::iter::once(a.first).chain(a.more))
            .filter_map(|s| s.instance)
            .map(|i| (i.pid, i.partials))
            .collect();
        for id in self.table.ids() {
            let pids: Vec<u32> = self
                .table
                .get(id)
                .map(|a| a.procs.keys().copied().collect())
                .unwrap_or_default();
            for pid in pids {
                self.resume_captures(id, pid, seeds.remove(&pid).unwrap_or_default());
            }
        }
        Response::error(ErrorKind::Update, format!("{why}; the old daemon goes on"))
    }

    fn resume_captures(&mut self, id: u32, pid: u32, seeds: Vec<Option<Partial>>) {
        let tx = self.tx.clone();
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let slot = app.machine.slot_of_pid(pid).unwrap_or(0);
        let logs = app.logs_of(slot);
        for held in &app.sockets {
            set_cloexec(held.fd.as_raw_fd(), true);
        }
        let Some(inst) = app.procs.get_mut(&pid) else {
            return;
        };
        if let Some(kept) = inst.channel.take() {
            set_cloexec(kept.fd.as_raw_fd(), true);
            // Its serving task was stopped for the handover: a new one.
            inst.channel = kept
                .fd
                .try_clone()
                .and_then(|fd| Channel::resume(fd, kept.bind, tx, id, pid))
                .map_err(|e| warn!("cannot serve an IPC channel again: {e}"))
                .ok();
        }
        let pipes: Vec<OwnedFd> = inst.pipes.drain(..).collect();
        for fd in &pipes {
            set_cloexec(fd.as_raw_fd(), true);
        }
        match self.start_captures(logs.pair(pipes), Vec::new(), seeds) {
            Ok(captures) => {
                if let Some(inst) = self.table.get_mut(id).and_then(|a| a.procs.get_mut(&pid)) {
                    inst.captures = captures;
                }
            }
            Err(e) => warn!("cannot resume capturing: {e}"),
        }
    }

    /// Only a table without transitions in flight can be handed over.
    fn check_quiet(&self) -> Result<(), String> {
        for app in self.table.iter() {
            let status = app.machine.status();
            let quiet = matches!(
                status,
                Status::Online | Status::Stopped | Status::Errored | Status::WaitingRestart
            );
            // A process whose group still drains is not handed over.
            let draining = app
                .machine
                .slots()
                .iter()
                .any(|(_, s)| s.process() != s.running());
            let moving =
                app.machine.incoming().is_some() || app.machine.retired_pids().next().is_some();
            if !quiet || draining || moving || app.hook_pid.is_some() {
                return Err(format!(
                    "{} is busy ({}) right now; try again in a moment",
                    app.spec.name,
                    status.as_str()
                ));
            }
        }
        Ok(())
    }

    fn handover(
        &self,
        lock_fd: RawFd,
        sources: &HashMap<u32, Vec<u64>>,
        partials: &mut Partials,
    ) -> Handover {
        let mut apps = Vec::new();
        for app in self.table.iter() {
            let mut slots = app
                .machine
                .slots()
                .iter()
                .map(|(index, slot)| hand_slot(app, index, slot, sources, partials));
            let Some(first) = slots.next() else { continue };
            let more = slots.collect();
            apps.push(HandedApp {
                id: app.id,
                spec: app.spec.clone(),
                first,
                sockets: app
                    .sockets
                    .iter()
                    .map(|h| (h.addr.clone(), h.fd.as_raw_fd()))
                    .collect(),
                more,
            });
        }
        Handover {
            version: HANDOVER_VERSION,
            lock_fd,
            apps,
            events: self.events.history(None),
            next_id: self.table.next_id(),
            subtree: self.owner.subtree(),
            app_nofile: crate::spawn::APP_NOFILE.load(std::sync::atomic::Ordering::Relaxed),
            app_nofile_hard: crate::spawn::APP_NOFILE_HARD
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// In the new daemon: takes over the apps of `handover`.
    pub fn adopt(&mut self, handover: Handover) {
        self.table.skip_ids_below(handover.next_id);
        for app in handover.apps {
            let stem = self.table.log_stem(app.id, &app.spec.name);
            let logs = AppLogs::for_spec(&app.spec, &self.home.logs_dir(), &stem, self.console);
            let split = app.spec.logs.per_instance;
            let id = self.table.insert_with_id(app.id, app.spec, logs.clone());
            let several = !app.more.is_empty();
            let mut slots = Vec::new();
            for handed in std::iter::once(app.first).chain(app.more) {
                let tag = (several && !split).then_some(handed.index);
                let files = match split {
                    true => logs.of_instance(handed.index),
                    false => logs.clone(),
                };
                let index = handed.index;
                let main = handed.instance.map(|i| {
                    self.owner.adopt(id, index, i.pid);
                    self.adopt_instance(id, i, &files, tag)
                });
                let restart_in = handed.restart_in_ms.map(Duration::from_millis);
                slots.push(Adopted {
                    index: handed.index,
                    lc: handed.lc,
                    main,
                    restart_in,
                });
            }
            let Some(entry) = self.table.get_mut(id) else {
                continue;
            };
            entry.sockets = app
                .sockets
                .into_iter()
                .map(|(addr, fd)| {
                    set_cloexec(fd, true);
                    // SAFETY: the old daemon passed this fd open and owns it no more.
                    Held {
                        addr,
                        fd: unsafe { OwnedFd::from_raw_fd(fd) },
                    }
                })
                .collect();
            let (machine, effects) = AppMachine::adopt(&entry.spec, slots, Instant::now());
            entry.machine = machine;
            for effect in effects {
                if let Some(input) = self.execute(id, effect) {
                    self.apply(id, input);
                }
            }
        }
        for event in handover.events {
            self.events.record(event);
        }
        self.state_dirty.extend(self.table.ids());
        self.state_urgent = true;
        info!("took over from the previous daemon");
    }

    /// Resumes capturing a handed-over instance's pipes; what the machine
    /// will know of it.
    fn adopt_instance(
        &mut self,
        id: u32,
        handed: HandedInstance,
        logs: &AppLogs,
        tag: Option<usize>,
    ) -> Proc {
        let since = Instant::now()
            .checked_sub(Duration::from_millis(handed.uptime_ms))
            .unwrap_or_else(Instant::now);
        let mut proc = Proc::new(handed.pid, since);
        proc.ready = handed.ready;
        self.table.index_pid(handed.pid, id, Role::Instance);
        let pipes = handed
            .pipes
            .into_iter()
            .map(|fd| {
                set_cloexec(fd, true);
                // SAFETY: the old daemon passed these fds open and owns them no more.
                unsafe { OwnedFd::from_raw_fd(fd) }
            })
            .collect();
        let captures = self
            .start_captures(logs.pair(pipes), Vec::new(), handed.partials)
            .unwrap_or_else(|e| {
                warn!("cannot capture a handed-over pipe: {e}");
                Vec::new()
            });
        // A new source is untagged: only a tag is news.
        for c in captures.iter().filter(|_| tag.is_some()) {
            self.logs.tag(c.source, tag);
        }
        let mut instance = Instance::new(handed.pid, captures);
        // Its CPU ticks count from its spawn, so its first rate does too.
        instance.started = since;
        instance.meter = CpuMeter::new(since);
        instance.channel = handed.channel.and_then(|(fd, bind)| {
            set_cloexec(fd, true);
            // SAFETY: the old daemon passed this fd open and owns it no more.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            Channel::resume(fd, bind, self.tx.clone(), id, handed.pid)
                .map_err(|e| warn!("cannot serve a handed-over IPC channel: {e}"))
                .ok()
        });
        if let Some(entry) = self.table.get_mut(id) {
            entry.procs.insert(handed.pid, Box::new(instance));
        }
        proc
    }
}

/// Slot `index` of `app`, with its running instance's fds and unfinished lines.
fn hand_slot(
    app: &App,
    index: usize,
    slot: &Slot,
    sources: &HashMap<u32, Vec<u64>>,
    partials: &mut Partials,
) -> HandedSlot {
    let instance = slot.running().and_then(|p| {
        let i = app.procs.get(&p.pid)?;
        let own = sources.get(&p.pid).map(Vec::as_slice).unwrap_or_default();
        Some(HandedInstance {
            pid: i.pid,
            uptime_ms: i.started.elapsed().as_millis() as u64,
            pipes: i.pipes.iter().map(AsRawFd::as_raw_fd).collect(),
            partials: own
                .iter()
                .map(|s| partials.remove(s).filter(|p| !p.is_empty()))
                .collect(),
            ready: p.ready,
            channel: i.channel.as_ref().map(|k| (k.fd.as_raw_fd(), k.bind)),
        })
    });
    HandedSlot {
        index,
        lc: slot.lc().clone(),
        instance,
        restart_in_ms: slot
            .restart_in(Instant::now())
            .map(|d| d.as_millis() as u64),
    }
}

/// Asks `binary` which handover format it reads; it must be ours.
fn check_binary(binary: &str) -> Result<(), String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot run {binary}: {e}");
    let mut child = std::process::Command::new(binary)
        .args(["daemon", "--handover-version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(cannot)?;
    let mut text = String::new();
    let read = child.stdout.take().map(|mut o| o.read_to_string(&mut text));
    // The loop goes on meanwhile, and its reaper takes every child.
    let exit = crate::reaper::wait_foreign(&mut child).map_err(cannot)?;
    read.transpose().map_err(cannot)?;
    match text.trim().parse::<u32>() {
        Ok(HANDOVER_VERSION) if exit.success() => Ok(()),
        Ok(other) => Err(format!(
            "{binary} reads handover format {other}, this daemon writes {HANDOVER_VERSION}; \
             stop the apps (`sup save && sup kill`), then `sup resurrect` with the new binary"
        )),
        Err(_) => Err(format!(
            "{binary} does not look like a sup that can take over a running daemon"
        )),
    }
}

/// Clears close-on-exec on every fd to hand over, then execs the new binary.
/// Returns only on failure.
fn exec(binary: &str, path: &Path, handover: &Handover) -> std::io::Result<()> {
    let mut fds = vec![handover.lock_fd];
    for app in &handover.apps {
        fds.extend(app.sockets.iter().map(|(_, fd)| *fd));
        for slot in std::iter::once(&app.first).chain(&app.more) {
            if let Some(inst) = &slot.instance {
                fds.extend(&inst.pipes);
                fds.extend(inst.channel.map(|(fd, _)| fd));
            }
        }
    }
    for &fd in &fds {
        set_cloexec(fd, false);
    }

    let arg = |s: &[u8]| CString::new(s).map_err(std::io::Error::other);
    let program = arg(binary.as_bytes())?;
    let args = [
        arg(b"sup")?,
        arg(b"daemon")?,
        arg(b"--handover")?,
        arg(path.as_os_str().as_bytes())?,
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
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
}

/// Reads the handover file the previous daemon wrote; removes it once read.
pub fn read_handover(path: &Path) -> std::io::Result<Handover> {
    let data = std::fs::read(path)?;
    let handover: Handover = serde_json::from_slice(&data).map_err(std::io::Error::other)?;
    if handover.version != HANDOVER_VERSION {
        return Err(std::io::Error::other(format!(
            "handover format {} is not {HANDOVER_VERSION}",
            handover.version
        )));
    }
    let _ = std::fs::remove_file(path);
    Ok(handover)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handover_of_0_1_0_reads_as_one_slot() {
        // 0.1.0 wrote one instance per app, its fields at the app's level.
        let old = serde_json::json!({
            "id": 4,
            "spec": AppSpec::default(),
            "lc": Lifecycle::default(),
            "instance": {"pid": 77, "uptime_ms": 5, "pipes": [8, 9], "partials": [null, null], "ready": true},
            "sockets": [],
            "restart_in_ms": null
        });
        let app: HandedApp = serde_json::from_value(old).unwrap();
        assert_eq!(app.first.index, 0);
        assert_eq!(app.first.instance.map(|i| i.pid), Some(77));
        assert!(app.more.is_empty());
    }

    #[test]
    fn a_handover_from_0_1_0_has_no_next_id_and_still_reads() {
        let old = r#"{"version":1,"lock_fd":3,"apps":[],"events":[]}"#;
        let handover: Handover = serde_json::from_str(old).unwrap();
        assert_eq!(handover.next_id, 0);
    }
}
