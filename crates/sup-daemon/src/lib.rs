//! The sup daemon: supervises apps, reaps every child, and serves the CLI
//! over a Unix socket in `SUP_HOME`. `sup daemon` runs [`run`].

mod alerts;
mod creds;
mod events;
mod groupwatch;
mod health;
mod ipc;
mod lifecycle;
mod logs;
mod machine;
mod memtrim;
mod metrics;
mod notify;
mod ownership;
mod persist;
mod plural;
mod preload;
mod probe;
mod procstat;
mod reaper;
mod selflog;
mod server;
mod signal;
mod sockcheck;
mod sockets;
mod spawn;
mod supervisor;
mod watch;
mod web;

pub use supervisor::{Reloader, HANDOVER_VERSION};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use std::time::Duration;
use sup_home::{Home, HomeError, LockError};
use supervisor::Supervisor;
use tokio::sync::mpsc;
use tracing::info;

/// How long shutdown waits for the last answers (`sup kill`'s) to be written.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// `SUP_HOME` is unusable.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// Another daemon runs, or the lock file is unusable.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The socket cannot be bound.
    #[error("cannot listen on {path}")]
    Bind {
        /// The socket path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `SUP_CGROUPS=on` and no cgroup subtree can be had, or a bad setting.
    #[error("{0}")]
    Ownership(String),
    /// The HTTP listener (`SUP_WEB_LISTEN`, `--health-listen`) cannot serve.
    #[error("cannot serve HTTP on {0}")]
    Web(String),
    /// Any other system failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How to start the daemon.
#[derive(Default)]
pub struct Options {
    /// Bring back the saved apps (`sup daemon --resurrect`, the systemd unit).
    pub resurrect: bool,
    /// Take over from the daemon `sup update` replaced (its handover file).
    pub handover: Option<std::path::PathBuf>,
    /// `sup run`: the daemon as a container's entrypoint.
    pub run: Option<RunMode>,
}

/// `sup run`: what to run and how (see `docs/containers.md`).
pub struct RunMode {
    /// The apps, from the file or the flags; never from a state file or dump.
    pub apps: Vec<sup_proto::AppSpec>,
    /// One JSON object per log line (`--json`).
    pub json: bool,
    /// Also write the log files under `SUP_HOME` (`--log-files`).
    pub log_files: bool,
    /// End as soon as an app turns errored (`--exit-on-error`).
    pub exit_on_error: bool,
    /// Serve `/livez` and `/readyz` here (`--health-listen`).
    pub health_listen: Option<String>,
    /// Reads the file again (SIGHUP); none for apps from flags.
    pub reload: Option<Reloader>,
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or `sup kill`,
/// logging to stderr. Returns once every app has stopped, with the exit
/// code (`sup run`'s worst app exit, else 0).
pub fn run(home: Home, options: Options) -> Result<i32, DaemonError> {
    memtrim::one_arena();
    // Whatever fds the daemon's parent leaked to it must not reach apps.
    spawn::close_on_exec_from(3);
    // Spawns run on a thread whose own fd table holds only stdio and its
    // socket (see spawn/thread.rs).
    spawn::start_thread();
    home.prepare()?;
    // `sup run` shares stderr with the apps: only its warnings, by default.
    init_tracing(match options.run {
        Some(_) => tracing::Level::WARN,
        None => tracing::Level::INFO,
    });
    // After `sup update` the lock is already ours: its fd came with the exec.
    let handover = options
        .handover
        .as_deref()
        .map(supervisor::read_handover)
        .transpose()?;
    let lock = match &handover {
        // SAFETY: the previous daemon handed this fd over open, and nothing else owns it.
        Some(h) => unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(h.lock_fd) },
        None => home.acquire_daemon_lock()?,
    };
    // Ours, close-on-exec again (it was cleared for the handover).
    let _ = fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&lock),
        FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC),
    );
    sup_home::write_daemon_pid(&lock);
    record_unit(&home);
    reaper::become_subreaper()?;
    if let Some((soft, hard)) = handover.as_ref().map(supervisor::Handover::app_nofile) {
        spawn::APP_NOFILE.store(soft, std::sync::atomic::Ordering::Relaxed);
        spawn::APP_NOFILE_HARD.store(hard, std::sync::atomic::Ordering::Relaxed);
    }
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lock_fd = std::os::fd::AsRawFd::as_raw_fd(&lock);
    let running = options.run.is_some();
    let result = runtime.block_on(serve(home.clone(), options, handover, lock_fd));
    drop(runtime);
    if result.is_ok() && !running {
        // A clean exit: no unit will start this daemon again on its own.
        let _ = home.forget_unit();
    }
    // Released by the kernel as the process exits, not a moment before: a
    // CLI waiting on the lock (`sup kill`) then finds the daemon gone.
    std::mem::forget(lock);
    result
}

/// Under systemd (`INVOCATION_ID` set), records the unit that runs us, so
/// that a CLI finding us dead waits for the unit to restart us instead of
/// starting a daemon outside it.
fn record_unit(home: &Home) {
    let unit = std::env::var_os("INVOCATION_ID")
        .and_then(|_| std::fs::read_to_string("/proc/self/cgroup").ok())
        .and_then(|text| sup_home::ManagingUnit::from_cgroup(&text));
    if let Err(e) = home.record_unit(unit.as_ref()) {
        tracing::warn!("cannot record the daemon's systemd unit: {e}");
    }
}

async fn serve(
    home: Home,
    options: Options,
    handover: Option<supervisor::Handover>,
    lock_fd: std::os::fd::RawFd,
) -> Result<i32, DaemonError> {
    let socket = home.socket();
    let listener = server::bind(&socket).map_err(|source| DaemonError::Bind {
        path: socket.display().to_string(),
        source,
    })?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (inflight, mut flushed) = mpsc::channel::<()>(1);
    let (warnings, shown) = tokio::sync::watch::channel(Vec::new());
    let server = tokio::spawn(server::serve(
        listener,
        tx.clone(),
        inflight.downgrade(),
        shown,
    ));
    let subtree = handover.as_ref().and_then(supervisor::Handover::subtree);
    let owner = ownership::Ownership::setup(home.dir(), subtree).map_err(DaemonError::Ownership)?;
    let logs = logs::Logs::start()?;
    let mut supervisor = Supervisor::new(home.clone(), tx.clone(), logs, lock_fd, warnings, owner)?;
    let web = match (handover, options.run) {
        (Some(handover), _) => {
            supervisor.adopt(handover);
            std::env::var("SUP_WEB_LISTEN").ok()
        }
        (None, Some(run)) => {
            supervisor.forget_state();
            let console = logs::ConsoleMode {
                json: run.json,
                files: run.log_files,
            };
            supervisor.set_run(
                supervisor::RunState::new(run.exit_on_error, run.reload),
                console,
            );
            supervisor.run_apps(run.apps);
            run.health_listen
        }
        (None, None) => {
            supervisor.recover();
            if options.resurrect {
                supervisor.resurrect_at_boot();
            }
            std::env::var("SUP_WEB_LISTEN").ok()
        }
    };
    if let Some(addr) = web.filter(|a| !a.is_empty()) {
        let note = supervisor.web(Some(&addr)).map_err(DaemonError::Web)?;
        // Where the user sees it: the daemon log, or `sup run`'s stderr.
        tracing::warn!("{note}");
    }
    info!(pid = std::process::id(), version = sup_proto::SUP_VERSION, home = %home.dir().display(), "daemon ready");
    notify::notify_systemd("READY=1");
    let result = supervisor.run(rx).await;
    notify::notify_systemd("STOPPING=1");
    // Stop taking requests, then let the ones in flight write their answers.
    server.abort();
    let _ = std::fs::remove_file(&socket);
    drop(inflight);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, flushed.recv()).await;
    result.map_err(DaemonError::from)
}

/// Apps' pipes, held sockets and notify sockets take fds (two per instance
/// at least): use the hard limit, and as root (which may raise it) the
/// kernel's `fs.nr_open`, as systemd does for itself. Apps get the limits
/// the daemon started with.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let most = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(hard)
        .max(hard);
    let raised = match setrlimit(Resource::RLIMIT_NOFILE, most, most) {
        Ok(()) => most,
        Err(_) => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
    };
    if soft < raised {
        spawn::APP_NOFILE.store(soft, std::sync::atomic::Ordering::Relaxed);
        spawn::APP_NOFILE_HARD.store(hard, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The daemon's own log, at `SUP_LOG`'s level, else `default`.
fn init_tracing(default: tracing::Level) {
    let level = match std::env::var("SUP_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok("warn") => tracing::Level::WARN,
        Ok("info") => tracing::Level::INFO,
        _ => default,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(selflog::SelfLog)
        .log_internal_errors(false)
        .with_ansi(false)
        .try_init();
}
