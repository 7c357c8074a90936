//! Spawns run on a thread with an fd table of its own. An exec closes every
//! fd of the table it runs from, and the daemon's table grows with its apps
//! (two pipes an instance, and two log files while the app writes): at
//! 1,000 apps that closing was a fifth of the daemon's time spent starting
//! apps. This thread unshares its table when the daemon starts, keeps
//! nothing in it but its socket, and receives the fds of each spawn through
//! that socket (`SCM_RIGHTS`). The child is still the daemon's: children of
//! any thread are the process's.
//!
//! The caller does not wait: it hands a spawn over and goes on (with a
//! batch of apps, preparing the next while this one execs). The outcome
//! is told from a second thread, of the daemon's own fd table, since
//! waking the event loop writes to an fd the spawn thread's table lacks.

use super::{Fds, Launch};
use crate::creds::Creds;
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{mpsc, Mutex, OnceLock};

/// Where a spawn's outcome goes: its pid, or why it failed.
pub type Done = Box<dyn FnOnce(io::Result<u32>) + Send>;

/// A spawn handed to the thread: the launch without its fds (those went
/// through the socket, in [`Fds::list`]'s order), and where the outcome goes.
struct Job {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: String,
    listen_pid: bool,
    creds: Option<Creds>,
    /// The fds as the caller numbered them: which are there, in what order.
    fds: Fds,
    done: Done,
}

/// The caller's end of the thread.
struct Spawner {
    jobs: mpsc::Sender<Job>,
    sock: OwnedFd,
}

static SPAWNER: OnceLock<Option<Mutex<Spawner>>> = OnceLock::new();

/// Starts the thread, once. Where it cannot start (no `unshare`), spawns
/// stay on the caller's thread, as before.
pub fn start() {
    SPAWNER.get_or_init(|| match start_thread() {
        Ok(spawner) => Some(Mutex::new(spawner)),
        Err(e) => {
            tracing::warn!("spawns stay on the event loop's thread: {e}");
            None
        }
    });
}

/// Whether the thread runs (else spawns stay on the caller's thread).
pub fn runs() -> bool {
    SPAWNER.get().is_some_and(Option::is_some)
}

/// Hands `launch` to the thread and returns at once: `done` hears the
/// outcome, on a thread of its own. The launch's fds are the thread's to
/// pass on once this returns, so the caller may close its own.
pub fn submit(launch: Launch, done: Done) {
    let Some(spawner) = SPAWNER.get().and_then(Option::as_ref) else {
        return done(Err(io::Error::other("the spawn thread does not run")));
    };
    let spawner = spawner.lock().unwrap_or_else(|p| p.into_inner());
    let fds = Fds::of(&launch);
    // The fds first: a job is sent only with its fds queued.
    let list = fds.list();
    let iov = [IoSlice::new(&[0])];
    let rights = [ControlMessage::ScmRights(&list)];
    let cmsgs: &[ControlMessage] = if list.is_empty() { &[] } else { &rights };
    let sent = sendmsg::<()>(
        spawner.sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::empty(),
        None,
    );
    if let Err(e) = sent {
        return done(Err(io::Error::from(e)));
    }
    let job = Job {
        argv: launch.argv,
        env: launch.env,
        cwd: launch.cwd,
        listen_pid: launch.listen_pid,
        creds: launch.creds.cloned(),
        fds,
        done,
    };
    if let Err(mpsc::SendError(job)) = spawner.jobs.send(job) {
        (job.done)(Err(io::Error::other("the spawn thread has stopped")));
    }
}

fn start_thread() -> io::Result<Spawner> {
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let (jobs, job_rx) = mpsc::channel::<Job>();
    let (ready_tx, ready) = mpsc::channel();
    // Outcomes are told from a thread of the daemon's own fd table: a
    // wake-up of the event loop writes to an fd this thread's table lacks.
    let (told_tx, told) = mpsc::channel::<(Done, io::Result<u32>)>();
    std::thread::Builder::new()
        .name("sup-spawn-told".into())
        .spawn(move || {
            for (done, result) in told {
                done(result);
            }
        })?;
    let kept = theirs.as_raw_fd();
    std::thread::Builder::new()
        .name("sup-spawn".into())
        .spawn(move || {
            // No signal handler runs here: the handlers write to fds of
            // the daemon's table, which this thread's table does not hold.
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), None);
            let unshared = own_table(kept);
            let ok = unshared.is_ok();
            let _ = ready_tx.send(unshared);
            if !ok {
                return;
            }
            for job in job_rx {
                let result = run(&theirs, &job);
                let _ = told_tx.send((job.done, result));
            }
        })?;
    let started = ready
        .recv()
        .unwrap_or_else(|_| Err(io::Error::other("the spawn thread did not start")));
    // SAFETY: the thread has its own table now, with its own copy of `kept`
    // (or has ended); this closes the daemon's copy, which nothing owns.
    unsafe { libc::close(kept) };
    started?;
    Ok(Spawner { jobs, sock: mine })
}

/// Gives this thread an fd table of its own, holding only 0, 1, 2 and
/// `kept`.
fn own_table(kept: RawFd) -> io::Result<()> {
    // SAFETY: unshare only changes this thread's fd table.
    if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let close = |first: RawFd, last: u32| {
        if first as u32 <= last {
            // SAFETY: closes fds of this thread's own table only.
            unsafe { libc::syscall(libc::SYS_close_range, first as u32, last, 0) };
        }
    };
    close(3, (kept - 1) as u32);
    close(kept + 1, u32::MAX);
    Ok(())
}

/// Takes the job's fds from the socket and spawns with them.
fn run(sock: &OwnedFd, job: &Job) -> io::Result<u32> {
    // Held until the spawn is done: the child gets its copies of them.
    let received = receive(sock, job.fds.list().len())?;
    let numbers: Vec<RawFd> = received.iter().map(AsRawFd::as_raw_fd).collect();
    let program = super::Program {
        argv: &job.argv,
        env: &job.env,
        cwd: &job.cwd,
        listen_pid: job.listen_pid,
        creds: job.creds.as_ref(),
    };
    super::spawn_here(program, &job.fds.renumbered(&numbers))
}

/// Receives one message and the `want` fds it carries.
fn receive(sock: &OwnedFd, want: usize) -> io::Result<Vec<OwnedFd>> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 3 + 1 + super::MAX_PASSED]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::with_capacity(want);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    if fds.len() != want || msg.flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(io::Error::other(format!(
            "the spawn thread got {} of the {want} fds to pass on",
            fds.len()
        )));
    }
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_thread_spawns_with_the_fds_it_was_handed_and_the_child_gets_only_those() {
        start();
        assert!(
            SPAWNER.get().is_some_and(Option::is_some),
            "the thread runs"
        );
        let (read, write) = nix::unistd::pipe().unwrap();
        let (_, ipc) = std::os::unix::net::UnixStream::pair().unwrap();
        let ipc = OwnedFd::from(ipc);
        let launch = Launch {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo out; ls /proc/self/fd".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/".into(),
            stdout: Some(&write),
            pass_fds: vec![ipc.as_raw_fd()],
            listen_pid: true,
            ..Launch::default()
        };
        let pid = super::super::spawn(launch).unwrap();
        drop(write);
        let mut out = String::new();
        std::fs::File::from(read).read_to_string(&mut out).unwrap();
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "out");
        // Its fds: stdio, the passed one (3), and the one `ls` opens.
        let fds: Vec<&str> = lines[1..].to_vec();
        assert_eq!(fds, ["0", "1", "2", "3", "4"], "{out}");
        let missing = Launch {
            argv: vec!["/nonexistent/program".into()],
            cwd: "/".into(),
            ..Launch::default()
        };
        let err = super::super::spawn(missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
