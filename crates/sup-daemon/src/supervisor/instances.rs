//! Starting instances and helper processes (command probes, hooks).

use super::channel::Channel;
use super::spawning::PendingSpawn;
use super::table::{Instance, Role};
use super::{Msg, Supervisor};
use crate::logs::Output;
use crate::machine::Role as MRole;
use crate::ownership::tags::APP_VAR as TAG_VAR;
use crate::{creds, notify, preload, sockets, spawn};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use sup_proto::{AppSpec, Probe};

impl Supervisor {
    /// Hands the spawn thread a process for slot `slot` of app `id` (its
    /// instance, or a reload's new one): its output captured, the held
    /// sockets as fds 3.., and its own notify socket if it reports
    /// readiness by sd_notify. The outcome comes back as
    /// [`Msg::Spawned`]; meanwhile the loop goes on (see `spawning`).
    pub(super) fn spawn_instance(
        &mut self,
        id: u32,
        slot: usize,
        role: MRole,
    ) -> Result<(), SpawnError> {
        let files = self.table.get(id).ok_or("no such app")?.logs_of(slot);
        let outputs = [Output::to(&files.out)?, Output::to(&files.err)?];
        let Prepared {
            env,
            pass_fds,
            notify,
            pid_cell,
            channel,
            creds,
        } = self.prepare_instance(id, slot)?;
        let app = self.table.get_mut(id).ok_or("no such app")?;
        let leaf = self
            .owner
            .prepare(id, slot, &app.spec)
            .map_err(|e| format!("cannot make its cgroup: {e}"))?;
        let launch = spawn::Launch {
            argv: app.spec.program.argv(&app.spec.args),
            env,
            cwd: app.spec.cwd.clone(),
            stdout: Some(outputs[0].app_end()),
            stderr: Some(outputs[1].app_end()),
            listen_pid: !pass_fds.is_empty(),
            pass_fds,
            creds: creds.as_ref(),
            cgroup: leaf.as_ref().map(|l| l.fd()),
            ..spawn::Launch::default()
        };
        let seq = self.next_seq();
        let (tx, cell) = (self.tx.clone(), pid_cell.clone());
        spawn::spawn_then(
            launch,
            Box::new(move |result| {
                // Before the message: a READY=1 read meanwhile finds it.
                if let Ok(pid) = &result {
                    cell.store(*pid, Ordering::SeqCst);
                }
                let _ = tx.send(Msg::Spawned { seq, result });
            }),
        );
        // The app's ends close here (the spawn thread holds its own
        // copies): its output ends when the app's does.
        let pipes = outputs
            .into_iter()
            .zip([files.out.clone(), files.err.clone()])
            .filter_map(|(output, target)| Some((output.into_read()?, target)))
            .collect();
        let pending = PendingSpawn {
            id,
            slot,
            role,
            leaf,
            pipes,
            files,
            notify,
            pid_cell,
            channel,
        };
        self.in_flight.insert(seq, Box::new(pending));
        Ok(())
    }

    /// Sets up spawned instance `pid` as `p` asked: its output captured,
    /// its IPC channel served, its exit ours to reap.
    pub(super) fn set_up_spawned(&mut self, p: PendingSpawn, pid: u32) -> Result<u32, SpawnError> {
        let PendingSpawn {
            id,
            slot,
            role,
            pipes,
            files,
            notify,
            pid_cell,
            channel,
            ..
        } = p;
        if self.table.get(id).is_none() {
            // Its app went meanwhile: nothing would watch it.
            self.owner.kill(pid);
            return Err("no such app".into());
        }
        let channel = channel.and_then(|c| c.serve(self.tx.clone(), id, pid_cell));
        // Indexed at once: whatever happens next, its exit is ours to reap.
        self.table.index_pid(pid, id, Role::Instance);
        let app = self.table.get_mut(id).ok_or("no such app")?;
        let split = app.spec.logs.per_instance;
        if split {
            self.logs.open(&files);
        }
        // A slot's new instance writes after the last one's final lines.
        let gates = match role {
            MRole::Main => app.gates.remove(&slot).unwrap_or_default(),
            MRole::Incoming => Vec::new(),
        };
        match self.start_captures(pipes, gates, Vec::new()) {
            Ok(captures) => {
                if let Some(app) = self.table.get(id) {
                    // Several instances share the app's log files: each
                    // line says whose it is.
                    let several = app.machine.slots().indices().len() > 1;
                    // A new source is untagged: only a tag is news.
                    if several && !split {
                        for c in &captures {
                            self.logs.tag(c.source, Some(slot));
                        }
                    }
                }
                let mut instance = Instance::new(pid, captures);
                instance.notify = notify;
                instance.channel = channel;
                if let Some(app) = self.table.get_mut(id) {
                    app.procs.insert(pid, Box::new(instance));
                }
                Ok(pid)
            }
            Err(e) => {
                // Nothing would read its output: it must not run unseen.
                self.owner.kill(pid);
                Err(SpawnError {
                    transient: is_transient(&e),
                    message: format!("cannot capture its output: {}", with_fd_hint(&e)),
                })
            }
        }
    }

    /// What an instance of app `id` gets besides its spec: the held sockets
    /// (bound again if they were closed) with `LISTEN_*`, and its own
    /// `NOTIFY_SOCKET` when it reports readiness by sd_notify.
    fn prepare_instance(&mut self, id: u32, slot: usize) -> Result<Prepared, SpawnError> {
        let home_dir = self.home.dir().to_path_buf();
        let seq = self.next_seq();
        let notify_path = self.home.notify_dir().join(format!("{id}-{seq}.sock"));
        let tx = self.tx.clone();
        let app = self.table.get_mut(id).ok_or("no such app")?;
        if !app.spec.listen.is_empty() && app.sockets.is_empty() {
            app.sockets = sockets::bind_all(&app.spec.listen)?;
        }
        let mut env = app_env(&app.spec, &home_dir, id);
        let creds = creds::for_app(&app.spec, &mut env)?;
        for (var, value) in app.spec.instance_env(slot) {
            env.retain(|(k, _)| *k != var);
            env.push((var, value));
        }
        let mut pass_fds: Vec<i32> = app.sockets.iter().map(|h| h.fd.as_raw_fd()).collect();
        // The preload lives in the private SUP_HOME, where another user
        // cannot read it: such an app binds what it listens on itself.
        let preload = creds.is_none() && preload::is_node(&app.spec.program);
        // Never bind an address the user did not ask for: with `--listen`
        // given, a listen elsewhere is a mismatch to show, not to serve.
        let user_gave = app.spec.listen.iter().any(|a| !app.bound_here.contains(a));
        let bind = preload && preload::binds_on_listen(&app.spec) && !user_gave;
        // The IPC channel, if any, comes after the held sockets. The
        // preload tells through it what the app's listen() did.
        let tells = preload && !pass_fds.is_empty();
        let channel = if bind || tells || app.spec.health.readiness == Some(Probe::Message) {
            let fd = 3 + pass_fds.len();
            // An io::Error keeps its kind: EMFILE heals, so the app is retried.
            Some(Channel::new(&mut env, fd, bind)?)
        } else {
            None
        };
        if !pass_fds.is_empty() {
            env.push(("LISTEN_FDS".into(), pass_fds.len().to_string()));
            let names = vec![app.spec.name.as_str(); pass_fds.len()].join(":");
            env.push(("LISTEN_FDNAMES".into(), names));
        }
        if preload && (bind || !pass_fds.is_empty()) {
            let addrs: Vec<&str> = app.sockets.iter().map(|h| h.addr.as_str()).collect();
            // Without it the app may still take fd 3 itself.
            if let Err(e) = preload::add_env(&mut env, &home_dir, &addrs) {
                tracing::warn!(app = %app.spec.name, "cannot install the Node preload: {e}");
            }
        }
        // The spawn thread sets the pid once the spawn returned; a READY=1
        // read before the loop heard of the spawn waits for it (`spawning`).
        let pid_cell = Arc::new(AtomicU32::new(0));
        let notify = if app.spec.health.readiness == Some(Probe::Notify) {
            let cell = pid_cell.clone();
            let on_ready = move || {
                let _ = tx.send(Msg::Notified {
                    app: id,
                    cell: cell.clone(),
                });
            };
            let socket = notify::listen(notify_path, on_ready)?;
            env.push(("NOTIFY_SOCKET".into(), socket.path().display().to_string()));
            Some(socket)
        } else {
            None
        };
        pass_fds.extend(channel.as_ref().map(|c| c.theirs.as_raw_fd()));
        Ok(Prepared {
            env,
            pass_fds,
            notify,
            pid_cell,
            channel,
            creds,
        })
    }

    /// Starts capturing each pipe into its target, after its gate, continuing
    /// its seed (an unfinished line); keeps a copy of each pipe for `update`.
    pub(super) fn start_captures(
        &mut self,
        pipes: Vec<(OwnedFd, std::sync::Arc<crate::logs::Target>)>,
        gates: Vec<Option<tokio::sync::oneshot::Receiver<()>>>,
        seeds: Vec<Option<crate::logs::Partial>>,
    ) -> std::io::Result<Vec<crate::logs::Capture>> {
        let mut gates = gates.into_iter();
        let mut seeds = seeds.into_iter();
        let mut captures = Vec::new();
        for (pipe, target) in pipes {
            captures.push(self.logs.capture(
                pipe,
                &target,
                gates.next().flatten(),
                seeds.next().flatten(),
            )?);
        }
        Ok(captures)
    }

    /// Runs `line` under `/bin/sh -c` for app `id` (a command probe or a
    /// hook), with the app's environment plus `extra_env`.
    pub(super) fn spawn_helper(
        &mut self,
        id: u32,
        line: &str,
        extra_env: Vec<(String, String)>,
        stdin: Option<&OwnedFd>,
        quiet: bool,
        role: Role,
    ) -> std::io::Result<u32> {
        let home_dir = self.home.dir().to_path_buf();
        let app = self
            .table
            .get(id)
            .ok_or_else(|| std::io::Error::other("no such app"))?;
        let mut env = app_env(&app.spec, &home_dir, id);
        let creds = creds::for_app(&app.spec, &mut env).map_err(std::io::Error::other)?;
        env.extend(extra_env);
        let devnull = quiet
            .then(|| std::fs::OpenOptions::new().write(true).open("/dev/null"))
            .transpose()?
            .map(OwnedFd::from);
        let launch = spawn::Launch {
            argv: vec!["/bin/sh".into(), "-c".into(), line.into()],
            env,
            cwd: app.spec.cwd.clone(),
            stdin,
            stdout: devnull.as_ref(),
            stderr: devnull.as_ref(),
            creds: creds.as_ref(),
            ..spawn::Launch::default()
        };
        let pid = spawn::spawn(launch)?;
        self.table.index_pid(pid, id, role);
        Ok(pid)
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

/// Why a spawn failed, and whether trying again later may work.
#[derive(Debug)]
pub(super) struct SpawnError {
    pub message: String,
    pub transient: bool,
}

impl From<std::io::Error> for SpawnError {
    fn from(e: std::io::Error) -> Self {
        SpawnError {
            transient: is_transient(&e),
            message: with_fd_hint(&e),
        }
    }
}

/// An error, and what to do when it is the daemon's fd limit: each
/// instance holds two fds (its stdout and stderr pipes) while it runs, and
/// its two log files are open until it has been quiet for 10 s.
fn with_fd_hint(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => {
            let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .map_or("?".to_string(), |(soft, _)| soft.to_string());
            format!(
                "{e}: the daemon has reached its open-file limit ({limit}; each running instance holds 2, and 2 more until its logs have been quiet 10 s); \
                 raise it (LimitNOFILE= in the unit, or ulimit -Hn before the daemon starts) or run fewer apps"
            )
        }
        Some(libc::ENFILE) => format!("{e}: the system's open-file table is full (fs.file-max)"),
        _ => e.to_string(),
    }
}

impl From<String> for SpawnError {
    fn from(message: String) -> Self {
        SpawnError {
            message,
            transient: false,
        }
    }
}

impl From<&str> for SpawnError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Errors of a machine short of pids, memory or fds heal by themselves;
/// a missing file, a bad cwd or a permission does not.
fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EAGAIN | libc::ENOMEM | libc::ENFILE | libc::EMFILE | libc::ENOBUFS | libc::EINTR
        )
    )
}

/// An instance's environment and extra fds, ready to spawn.
struct Prepared {
    env: Vec<(String, String)>,
    pass_fds: Vec<i32>,
    notify: Option<crate::notify::NotifySocket>,
    pid_cell: Arc<AtomicU32>,
    channel: Option<Channel>,
    creds: Option<creds::Creds>,
}

/// The app's environment, without the variables that belong to the daemon's
/// own supervisor, plus `SUP_HOME`, `SUP_APP_NAME` and `SUP_APP_ID` (as PM2
/// sets `name` and `pm_id`). They also let a daemon that replaces a dead one
/// find every process the dead one started.
fn app_env(spec: &AppSpec, home: &Path, id: u32) -> Vec<(String, String)> {
    let ours = ["SUP_HOME", "SUP_APP_NAME", TAG_VAR];
    let mut env: Vec<(String, String)> = spec
        .full_env()
        .into_iter()
        .filter(|(k, _)| !spawn::PRIVATE_ENV.contains(&k.as_str()) && !ours.contains(&k.as_str()))
        .collect();
    env.push(("SUP_HOME".into(), home.display().to_string()));
    env.push(("SUP_APP_NAME".into(), spec.name.clone()));
    env.push((TAG_VAR.into(), id.to_string()));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shortages_are_transient() {
        let err = |n| SpawnError::from(std::io::Error::from_raw_os_error(n)).transient;
        assert!(err(libc::EAGAIN) && err(libc::ENOMEM) && err(libc::EMFILE));
        assert!(!err(libc::ENOENT) && !err(libc::EACCES) && !err(libc::ENOTDIR));
    }
}
