//! The sup daemon: supervises apps, reaps every child, and serves the CLI
//! over a Unix socket in `SUP_HOME`. `sup daemon` runs [`run`].

mod events;
mod health;
mod home;
mod lifecycle;
mod lock;
mod logs;
mod notify;
mod probe;
mod procstat;
mod reaper;
mod server;
mod sockets;
mod spawn;
mod supervisor;

pub use home::{Home, HomeError};
pub use lock::{open_lock_file, LockError};

use std::time::Duration;
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
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// The socket path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Any other system failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs the daemon in the foreground until SIGTERM, SIGINT or `sup kill`,
/// logging to stderr. Returns once every app has stopped.
pub fn run(home: Home) -> Result<(), DaemonError> {
    // Whatever fds the daemon's parent leaked to it must not reach apps.
    spawn::close_on_exec_from(3);
    home.prepare()?;
    let _lock = lock::acquire(&home.daemon_lock())?;
    init_tracing();
    reaper::become_subreaper()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(home))
}

async fn serve(home: Home) -> Result<(), DaemonError> {
    let socket = home.socket();
    let listener = server::bind(&socket).map_err(|source| DaemonError::Bind {
        path: socket.display().to_string(),
        source,
    })?;
    info!(pid = std::process::id(), version = sup_proto::SUP_VERSION, home = %home.dir().display(), "daemon ready");
    let (tx, rx) = mpsc::unbounded_channel();
    let (inflight, mut flushed) = mpsc::channel::<()>(1);
    let server = tokio::spawn(server::serve(listener, tx.clone(), inflight.downgrade()));
    let logs = logs::Logs::start()?;
    let result = Supervisor::new(home, tx, logs).run(rx).await;
    // Stop taking requests, then let the ones in flight write their answers.
    server.abort();
    let _ = std::fs::remove_file(&socket);
    drop(inflight);
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, flushed.recv()).await;
    result.map_err(DaemonError::from)
}

fn init_tracing() {
    let level = match std::env::var("SUP_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("trace") => tracing::Level::TRACE,
        Ok("warn") => tracing::Level::WARN,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
