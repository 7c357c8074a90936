//! Starting processes: fork and exec by hand, because the child needs
//! things `std::process::Command` cannot give: listening sockets moved to
//! fds 3.. and `LISTEN_PID` set to its own pid (systemd's socket-activation
//! protocol), with nothing but async-signal-safe calls after the fork.

mod thread;
#[cfg(target_arch = "x86_64")]
mod vfork;

pub use thread::start as start_thread;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use sup_proto::spec::MAX_LISTEN;

/// Environment variables that belong to the daemon's own supervisor
/// (systemd) and must never leak into apps.
pub const PRIVATE_ENV: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "INVOCATION_ID",
];

/// Most fds passed beyond stdio: the held sockets and an IPC channel.
const MAX_PASSED: usize = MAX_LISTEN + 1;

/// Room for the decimal pid after `LISTEN_PID=`.
const PID_DIGITS: usize = 20;

/// Everything needed to start one process.
#[derive(Debug, Default)]
pub struct Launch<'a> {
    /// Program (an absolute path) and arguments.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
    /// stdin; /dev/null when None.
    pub stdin: Option<&'a OwnedFd>,
    /// stdout.
    pub stdout: Option<&'a OwnedFd>,
    /// stderr.
    pub stderr: Option<&'a OwnedFd>,
    /// Fds handed over as 3, 4, ... (held listening sockets, then an IPC
    /// channel; beyond [`MAX_PASSED`], the rest are not passed).
    pub pass_fds: Vec<RawFd>,
    /// Set `LISTEN_PID` to the child's own pid.
    pub listen_pid: bool,
    /// Run as this user instead of the daemon's.
    pub creds: Option<&'a crate::creds::Creds>,
    /// The directory of the cgroup the child is born in.
    pub cgroup: Option<RawFd>,
}

/// The fds a spawn hands on, by their numbers in the fd table it runs from
/// (the spawn thread's own numbers differ from the caller's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fds {
    /// Stdin, stdout and stderr; stdin is /dev/null when None.
    stdio: [Option<RawFd>; 3],
    /// The directory of the cgroup the child is born in.
    cgroup: Option<RawFd>,
    /// Handed over as 3, 4, ... (at most [`MAX_PASSED`]).
    pass: Vec<RawFd>,
}

impl Fds {
    /// The fds `launch` names.
    fn of(launch: &Launch) -> Fds {
        Fds {
            stdio: [launch.stdin, launch.stdout, launch.stderr]
                .map(|fd| fd.map(AsRawFd::as_raw_fd)),
            cgroup: launch.cgroup,
            pass: launch.pass_fds.iter().take(MAX_PASSED).copied().collect(),
        }
    }

    /// Every fd, in one order: stdio, the cgroup, the passed ones.
    fn list(&self) -> Vec<RawFd> {
        let stdio = self.stdio.iter().flatten();
        stdio
            .chain(&self.cgroup)
            .chain(&self.pass)
            .copied()
            .collect()
    }

    /// The same fds under other numbers, given in [`Fds::list`]'s order.
    fn renumbered(&self, numbers: &[RawFd]) -> Fds {
        let mut numbers = numbers.iter().copied();
        let mut next = |fd: Option<RawFd>| fd.and_then(|_| numbers.next());
        Fds {
            stdio: self.stdio.map(&mut next),
            cgroup: next(self.cgroup),
            pass: self.pass.iter().filter_map(|&fd| next(Some(fd))).collect(),
        }
    }
}

/// The C-level pieces, all allocated before the fork.
struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    listen_pid: Option<Vec<u8>>,
    cwd: CString,
}

fn cstring(s: impl AsRef<OsStr>) -> io::Result<CString> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "NUL byte in argument or environment",
        )
    })
}

/// Starts `launch` in its own process group and returns its pid. Nothing
/// waits for it here: the daemon's one reaper collects every exit status.
/// It runs on the spawn thread ([`start_thread`]) when that runs.
pub fn spawn(launch: Launch) -> io::Result<u32> {
    let (tx, rx) = std::sync::mpsc::channel();
    spawn_then(
        launch,
        Box::new(move |result| {
            let _ = tx.send(result);
        }),
    );
    rx.recv()
        .unwrap_or_else(|_| Err(io::Error::other("the spawn thread has stopped")))
}

/// Starts `launch` as [`spawn`] does, without waiting for it: `done` hears
/// the outcome, on a thread of its own (or here, before this returns, when
/// that thread does not run). The launch's fds may be closed once this
/// returns.
pub fn spawn_then(launch: Launch, done: thread::Done) {
    if thread::runs() {
        thread::submit(launch, done);
    } else {
        done(spawn_here(launch.program(), &Fds::of(&launch)));
    }
}

/// What a spawn runs, apart from its fds.
#[derive(Debug, Clone, Copy)]
struct Program<'a> {
    argv: &'a [String],
    env: &'a [(String, String)],
    cwd: &'a str,
    listen_pid: bool,
    creds: Option<&'a crate::creds::Creds>,
}

impl Launch<'_> {
    fn program(&self) -> Program<'_> {
        Program {
            argv: &self.argv,
            env: &self.env,
            cwd: &self.cwd,
            listen_pid: self.listen_pid,
            creds: self.creds,
        }
    }
}

/// [`spawn`] on this thread, with `fds` (the launch's, numbered in this
/// thread's fd table).
fn spawn_here(launch: Program, fds: &Fds) -> io::Result<u32> {
    let mut prepared = Prepared {
        argv: launch.argv.iter().map(cstring).collect::<io::Result<_>>()?,
        envp: launch
            .env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}")))
            .collect::<io::Result<_>>()?,
        listen_pid: launch.listen_pid.then(|| {
            let mut slot = b"LISTEN_PID=".to_vec();
            slot.resize(slot.len() + PID_DIGITS + 1, 0);
            slot
        }),
        cwd: cstring(launch.cwd)?,
    };
    let program = launch
        .argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty argv"))?;
    let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prepared.envp.iter().map(|c| c.as_ptr()).collect();
    let pid_slot = prepared.listen_pid.as_mut().map(|slot| slot.as_mut_ptr());
    if let Some(slot) = pid_slot {
        envp.push(slot as *const libc::c_char);
    }
    envp.push(std::ptr::null());
    let (_devnull, stdio) = stdio_fds(fds)?;
    let (err_read, err_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let child = Child {
        argv: &argv,
        envp: &envp,
        cwd: &prepared.cwd,
        stdio,
        pass_fds: &fds.pass,
        pid_slot,
        err_write: err_write.as_raw_fd(),
        creds: launch.creds,
        cgroup: fds.cgroup,
    };
    // Every signal blocked across the fork: the daemon's handlers must not
    // run in the child before it resets them.
    let saved = block_all_signals();
    // SAFETY: the child only runs `Child::exec`, which makes
    // async-signal-safe system calls on memory prepared above (and kept
    // until the child has exec'd: the vfork-style clone waits for that).
    let pid = match unsafe { clone_vm(&child) } {
        Some(pid) => pid,
        None => {
            let (pid, born) = unsafe { fork_into(fds.cgroup) };
            if pid == 0 {
                // SAFETY: in the child, see above; never returns.
                unsafe { child.exec(born) }
            }
            pid
        }
    };
    let forked = if pid < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    restore_signals(&saved);
    forked?;
    drop(err_write);
    match read_errno(&err_read) {
        None => Ok(pid as u32),
        Some(errno) => Err(annotate(
            io::Error::from_raw_os_error(errno),
            program,
            launch.cwd,
        )),
    }
}

/// What the child needs, as raw pointers and fds.
struct Child<'a> {
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    cwd: &'a CString,
    stdio: [Option<RawFd>; 3],
    pass_fds: &'a [RawFd],
    pid_slot: Option<*mut u8>,
    err_write: RawFd,
    creds: Option<&'a crate::creds::Creds>,
    cgroup: Option<RawFd>,
}

impl Child<'_> {
    /// Runs in the forked child: sets the process up and execs, or reports
    /// errno through the error pipe and exits 127.
    ///
    /// # Safety
    /// Only in the child of a fork, with every pointer in `self` still
    /// valid (prepared before the fork). It makes only async-signal-safe
    /// system calls and allocates nothing: the parent may have held a lock
    /// in another thread at the fork.
    unsafe fn exec(&self, born_in_cgroup: bool) -> ! {
        let fail = |err_write: RawFd| -> ! {
            let errno = *libc::__errno_location();
            libc::write(err_write, (&errno as *const i32).cast(), 4);
            libc::_exit(127)
        };
        // Born in its cgroup by clone3; where the kernel lacks that, moved
        // there first of all ("0" moves the writer itself), before setuid
        // while the right holds: no code of the app runs outside it.
        if let Some(dir) = self.cgroup.filter(|_| !born_in_cgroup) {
            let procs = libc::openat(
                dir,
                c"cgroup.procs".as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            );
            if procs < 0 || libc::write(procs, b"0".as_ptr().cast(), 1) != 1 {
                fail(self.err_write);
            }
        }
        libc::setpgid(0, 0);
        reset_signals();
        // Move every fd we keep above the range we are about to fill, so
        // that filling 0, 1, 2, 3.. clobbers none of them.
        let high = (3 + self.pass_fds.len() + 3) as libc::c_int;
        let err_write = libc::fcntl(self.err_write, libc::F_DUPFD_CLOEXEC, high);
        if err_write < 0 {
            fail(self.err_write);
        }
        let mut sources = [-1; 3 + MAX_PASSED];
        let wanted = self
            .stdio
            .iter()
            .map(|fd| fd.unwrap_or(-1))
            .chain(self.pass_fds.iter().copied());
        for (slot, fd) in sources.iter_mut().zip(wanted) {
            if fd >= 0 {
                *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, high);
                if *slot < 0 {
                    fail(err_write);
                }
            }
        }
        let count = (3 + self.pass_fds.len()).min(sources.len());
        for (target, &source) in sources[..count].iter().enumerate() {
            // dup2 clears close-on-exec on the new fd.
            if source >= 0 && libc::dup2(source, target as libc::c_int) < 0 {
                fail(err_write);
            }
        }
        close_on_exec_from(count as u32);
        // The daemon raised its own fd limit; the app gets the one it had.
        let soft = APP_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
        if soft > 0 {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
                let hard = APP_NOFILE_HARD.load(std::sync::atomic::Ordering::Relaxed);
                if hard > 0 {
                    lim.rlim_max = hard.min(lim.rlim_max);
                }
                lim.rlim_cur = soft.min(lim.rlim_max);
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
        // Groups first: after setuid there is no right to change them.
        // Raw system calls: glibc's wrappers would try to change the
        // credentials of the parent's other threads, which this child has not.
        if let Some(c) = self.creds {
            if libc::syscall(libc::SYS_setgroups, c.groups.len(), c.groups.as_ptr()) < 0
                || libc::syscall(libc::SYS_setgid, c.gid) < 0
                || libc::syscall(libc::SYS_setuid, c.uid) < 0
            {
                fail(err_write);
            }
        }
        // As the app's user: a directory it may not enter is an error.
        if libc::chdir(self.cwd.as_ptr()) < 0 {
            fail(err_write);
        }
        if let Some(slot) = self.pid_slot {
            write_pid(slot.add(b"LISTEN_PID=".len()), libc::getpid() as u32);
        }
        libc::execve(self.argv[0], self.argv.as_ptr(), self.envp.as_ptr());
        fail(err_write)
    }
}

/// The soft fd limit the daemon started with (0: it raised none): apps
/// get it back, so the daemon's own raise never leaks to them.
pub static APP_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The hard fd limit the daemon started with (0: unknown, as from a 0.2.0
/// handover without it): a root daemon raises its own past it.
pub static APP_NOFILE_HARD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The child of `child`, started vfork-style where this build can
/// ([`vfork`]); None: fork instead.
///
/// # Safety
/// As [`vfork::run`].
#[cfg(target_arch = "x86_64")]
unsafe fn clone_vm(child: &Child) -> Option<libc::pid_t> {
    /// What the child gets: the setup, and whether it was born in its cgroup.
    struct Call<'a, 'b>(&'a Child<'b>, bool);
    unsafe extern "C" fn entry(arg: *mut libc::c_void) -> ! {
        // SAFETY: `arg` is the `Call` below, alive until the child execs.
        let call = unsafe { &*(arg as *const Call) };
        unsafe { call.0.exec(call.1) }
    }
    let call = Call(child, child.cgroup.is_some());
    vfork::run(
        child.cgroup,
        entry,
        &call as *const Call as *mut libc::c_void,
    )
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone_vm(_child: &Child) -> Option<libc::pid_t> {
    None
}

/// `CLONE_INTO_CGROUP` (Linux 5.7), not yet in the libc crate.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` of clone3(2), up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Forks; with `cgroup` (a directory fd), the child is born in that cgroup
/// (clone3 with `CLONE_INTO_CGROUP`: no migration, so no wait on the
/// kernel's cgroup lock, and no moment outside it). On kernels without it,
/// a plain fork, and the child moves itself. Returns the pid (0 in the
/// child) and whether the child was born in the cgroup.
///
/// # Safety
/// As `fork`: the child may only make async-signal-safe calls.
unsafe fn fork_into(cgroup: Option<RawFd>) -> (libc::pid_t, bool) {
    let Some(dir) = cgroup else {
        return (libc::fork(), false);
    };
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    let pid = libc::syscall(
        libc::SYS_clone3,
        &args as *const CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    match pid {
        p if p >= 0 => (p as libc::pid_t, true),
        _ => (libc::fork(), false),
    }
}

/// Blocks every signal in this thread; returns the mask to restore.
fn block_all_signals() -> SigSet {
    let mut saved = SigSet::empty();
    let _ = pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    );
    saved
}

fn restore_signals(saved: &SigSet) {
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(saved), None);
}

/// Writes `pid` in decimal, NUL-terminated, at `at`. Async-signal-safe.
///
/// # Safety
/// `at` must be valid for writes of PID_DIGITS + 1 bytes.
unsafe fn write_pid(at: *mut u8, mut pid: u32) {
    let mut digits = [0u8; PID_DIGITS];
    let mut n = 0;
    loop {
        digits[n] = b'0' + (pid % 10) as u8;
        n += 1;
        pid /= 10;
        if pid == 0 {
            break;
        }
    }
    for i in 0..n {
        *at.add(i) = digits[n - 1 - i];
    }
    *at.add(n) = 0;
}

/// The fds that become 0, 1 and 2 (stdin from /dev/null unless given);
/// the /dev/null file must stay open until the fork.
fn stdio_fds(fds: &Fds) -> io::Result<(Option<std::fs::File>, [Option<RawFd>; 3])> {
    let devnull = match fds.stdio[0] {
        Some(_) => None,
        None => Some(std::fs::File::open("/dev/null")?),
    };
    let mut stdio = fds.stdio;
    stdio[0] = stdio[0].or(devnull.as_ref().map(AsRawFd::as_raw_fd));
    Ok((devnull, stdio))
}

/// Reads the child's errno from the error pipe; None when it closed empty
/// (the exec succeeded).
fn read_errno(pipe: &OwnedFd) -> Option<i32> {
    let mut buf = [0u8; 4];
    loop {
        match nix::unistd::read(pipe.as_raw_fd(), &mut buf) {
            Ok(4) => return Some(i32::from_ne_bytes(buf)),
            Err(nix::errno::Errno::EINTR) => {}
            _ => return None,
        }
    }
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
            // A closed fd just fails with EBADF.
            let _ = fcntl(fd as RawFd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
        }
    }
}

/// Gives the child default signal dispositions and an empty mask. Ignored
/// signals survive exec: the daemon ignores SIGPIPE, a daemon started under
/// nohup ignores SIGHUP, and a parent that used glibc's posix_spawn leaves
/// glibc's internal signals 32 and 33 ignored. Async-signal-safe.
fn reset_signals() {
    for sig in 1..=64 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            default_disposition(sig);
        }
    }
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Sets `sig` to SIG_DFL. glibc's `sigaction` refuses to touch its signals
/// 32 and 33, so this makes the system call itself, with the kernel's
/// `struct sigaction`, whose layout is only assumed where it is known.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn default_disposition(sig: libc::c_int) {
    /// The kernel's `struct sigaction` on x86_64 and aarch64.
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
    // SAFETY: rt_sigaction reads one valid struct in this architecture's
    // layout and an 8-byte mask; it writes nothing (no old action asked).
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

/// Sets `sig` to SIG_DFL through libc, which leaves glibc's signals 32 and
/// 33 as they are: elsewhere the kernel's struct layout is not assumed.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn default_disposition(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction is a valid "SIG_DFL, no flags, empty mask";
    // sigaction is async-signal-safe and reads only that struct.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

fn annotate(err: io::Error, program: &str, cwd: &str) -> io::Error {
    let what = match err.kind() {
        io::ErrorKind::NotFound if !Path::new(cwd).is_dir() => {
            format!("working directory {cwd}")
        }
        _ => program.to_string(),
    };
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_digits() {
        let mut buf = [0xffu8; PID_DIGITS + 1];
        // SAFETY: the buffer has room for any u32 and its NUL.
        unsafe { write_pid(buf.as_mut_ptr(), 4_194_304) };
        assert_eq!(&buf[..8], b"4194304\0");
        // SAFETY: as above.
        unsafe { write_pid(buf.as_mut_ptr(), 0) };
        assert_eq!(&buf[..2], b"0\0");
    }

    #[test]
    fn fds_are_listed_and_renumbered_in_one_order() {
        let fds = Fds {
            stdio: [None, Some(10), Some(11)],
            cgroup: Some(12),
            pass: vec![13, 14],
        };
        assert_eq!(fds.list(), [10, 11, 12, 13, 14]);
        let moved = fds.renumbered(&[20, 21, 22, 23, 24]);
        assert_eq!(
            moved,
            Fds {
                stdio: [None, Some(20), Some(21)],
                cgroup: Some(22),
                pass: vec![23, 24],
            }
        );
    }

    #[test]
    fn a_missing_program_is_an_error_not_a_child() {
        let launch = Launch {
            argv: vec!["/nonexistent/program".into()],
            cwd: "/".into(),
            ..Launch::default()
        };
        let err = spawn(launch).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/program"), "{err}");
    }
}
