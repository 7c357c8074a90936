//! Starting an app instance as a real process.

use std::io;
use std::os::fd::OwnedFd;
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
/// /dev/null, stdout and stderr to the given fds (pipe write ends).
/// Returns its pid. The caller reaps it: no `Child` handle is kept, since
/// the daemon's one reaper owns every exit status.
pub fn spawn(spec: &AppSpec, stdout: OwnedFd, stderr: OwnedFd) -> io::Result<u32> {
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
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    // SAFETY: the hook only makes async-signal-safe system calls and touches
    // no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            close_on_exec_from(3);
            reset_signals()
        })
    };
    let child = cmd.spawn().map_err(|e| annotate(e, &argv[0], &spec.cwd))?;
    Ok(child.id())
}

/// Marks every fd from `first` up close-on-exec, so that no fd the daemon
/// inherited or opened reaches an app unless it is passed on deliberately.
/// Async-signal-safe: only system calls.
pub fn close_on_exec_from(first: u32) {
    // SAFETY: close_range only changes fd flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Kernels before 5.11: walk a generous range instead.
        for fd in first..4096 {
            // SAFETY: fcntl on a possibly closed fd just fails with EBADF.
            unsafe { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// Gives the app default signal dispositions and an empty mask. Ignored
/// signals survive exec: the daemon ignores SIGPIPE, a daemon started under
/// nohup ignores SIGHUP, and a parent that used glibc's posix_spawn leaves
/// glibc's internal signals 32 and 33 ignored. glibc's wrappers refuse to
/// touch those two, so this uses the raw system call.
fn reset_signals() -> io::Result<()> {
    /// The kernel's `struct sigaction` (x86_64 and aarch64 layout).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: rt_sigaction with a valid struct and an 8-byte mask;
            // async-signal-safe, as a system call.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                )
            };
        }
    }
    let empty: u64 = 0;
    // SAFETY: as above, with a valid 8-byte mask.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    Ok(())
}

fn annotate(err: io::Error, program: &str, cwd: &str) -> io::Error {
    let what = match err.kind() {
        io::ErrorKind::NotFound if !Path::new(cwd).is_dir() => format!("working directory {cwd}"),
        _ => program.to_string(),
    };
    io::Error::new(err.kind(), format!("{what}: {err}"))
}
