//! Starting an app instance as a real process.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use sup_proto::AppSpec;

/// Environment variables that belong to the daemon's own supervisor
/// (systemd) and must never leak into apps.
const PRIVATE_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "INVOCATION_ID",
];

/// Spawns one instance of `spec` in its own process group, stdin from
/// /dev/null, stdout and stderr appended to the app's log files in `logs_dir`.
/// Returns its pid. The caller reaps it: no `Child` handle is kept, since
/// the daemon's one reaper owns every exit status.
pub fn spawn(spec: &AppSpec, logs_dir: &Path) -> io::Result<u32> {
    let argv = spec.program.argv(&spec.args);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(
            spec.env
                .iter()
                .filter(|(k, _)| !PRIVATE_ENV.contains(&k.as_str())),
        )
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(open_log(&logs_dir.join(format!("{}-out.log", spec.name)))?)
        .stderr(open_log(&logs_dir.join(format!("{}-err.log", spec.name)))?)
        // std resets the signal mask and SIGPIPE in the child before exec.
        .process_group(0);
    let child = cmd.spawn().map_err(|e| annotate(e, &argv[0], &spec.cwd))?;
    Ok(child.id())
}

/// Opens a log file for appending, private to the user.
fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open log {}: {e}", path.display())))
}

fn annotate(err: io::Error, program: &str, cwd: &str) -> io::Error {
    let what = match err.kind() {
        io::ErrorKind::NotFound if !Path::new(cwd).is_dir() => format!("working directory {cwd}"),
        _ => program.to_string(),
    };
    io::Error::new(err.kind(), format!("{what}: {err}"))
}
