//! Reading an instance's stdout or stderr pipe on the event loop and
//! handing the bytes to the writer, never faster than it writes them.

use super::writer::{now_ms, Target, WriterMsg};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, Semaphore};

/// After a read smaller than this, the reader waits [`COALESCE`] before
/// the next one.
const COALESCE_BELOW: usize = 64 * 1024;

/// How long output may gather in the pipe after a small read.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

/// Most bytes read from a pipe at a time.
const READ_SIZE: usize = 256 * 1024;

/// Chunks of one source that may wait for the writer; when they are all
/// taken, the reader stops reading and the app blocks on its next write.
const IN_FLIGHT: usize = 16;

/// How a capture ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The instance is gone: read what the pipe holds, then end (without
    /// waiting for an EOF that a surviving grandchild could hold off).
    Drain,
    /// `sup update`: stop reading at once; the pipe goes to the next daemon.
    Detach,
}

/// A running capture.
#[derive(Debug)]
pub struct Capture {
    stop: Option<oneshot::Sender<Stop>>,
    done: Option<oneshot::Receiver<()>>,
    detached: Option<oneshot::Receiver<OwnedFd>>,
    /// Its source id at the writer.
    pub source: u64,
}

impl Capture {
    /// Ends the capture; returns what fires once its last bytes are with
    /// the writer (the next instance's capture waits for it).
    pub fn stop(&mut self, how: Stop) -> Option<oneshot::Receiver<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(how);
        }
        self.done.take()
    }

    /// Stops reading at once (`sup update`); the pipe comes back through
    /// the receiver, to be handed to the next daemon. The daemon keeps no
    /// copy of its pipes meanwhile: one fd per stream, not two.
    pub fn detach(&mut self) -> Option<oneshot::Receiver<OwnedFd>> {
        self.stop(Stop::Detach);
        self.detached.take()
    }
}

/// Starts reading `pipe` (the read end of an app's stdout or stderr) into
/// `target`, once `after` fires (the previous instance's capture of the
/// same stream finished), so that lines keep their order across restarts.
pub fn start(
    pipe: OwnedFd,
    target: Arc<Target>,
    source: u64,
    tx: Sender<WriterMsg>,
    after: Option<oneshot::Receiver<()>>,
) -> io::Result<Capture> {
    set_nonblocking(&pipe)?;
    // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the
    // same for the AsyncFd's whole life.
    let pipe = unsafe { AsyncFd::register(pipe) }?;
    let (stop_tx, mut stop_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel();
    let (detached_tx, detached_rx) = oneshot::channel();
    tokio::spawn(async move {
        let reader = Reader {
            pipe,
            target,
            source,
            tx,
            permits: Arc::new(Semaphore::new(IN_FLIGHT)),
        };
        if let Some(mut after) = after {
            tokio::select! {
                _ = &mut after => {}
                how = &mut stop_rx => {
                    // Stopped before it began: detached, the pipe goes
                    // back unread; else it is drained after the gate.
                    if how == Ok(Stop::Detach) {
                        let _ = detached_tx.send(reader.pipe.into_inner());
                        return;
                    }
                    let _ = after.await;
                    reader.drain().await;
                    reader.end();
                    let _ = done_tx.send(());
                    return;
                }
            }
        }
        if let Some(pipe) = reader.run(stop_rx).await {
            let _ = detached_tx.send(pipe);
        }
        let _ = done_tx.send(());
    });
    Ok(Capture {
        stop: Some(stop_tx),
        done: Some(done_rx),
        detached: Some(detached_rx),
        source,
    })
}

struct Reader {
    pipe: AsyncFd<OwnedFd>,
    target: Arc<Target>,
    source: u64,
    tx: Sender<WriterMsg>,
    permits: Arc<Semaphore>,
}

impl Reader {
    /// Reads until the pipe ends or the capture is stopped; a detached
    /// capture returns its pipe.
    async fn run(self, mut stop: oneshot::Receiver<Stop>) -> Option<OwnedFd> {
        // Set while output gathers in the pipe: when the reader last found
        // it empty, the arrival time of what it reads next (at the latest).
        let mut gathering_since: Option<i64> = None;
        let mut detached = false;
        loop {
            tokio::select! {
                biased;
                how = &mut stop => {
                    if how == Ok(Stop::Detach) {
                        detached = true;
                        break;
                    }
                    self.drain().await;
                    break;
                }
                ready = self.pipe.readable() => {
                    let Ok(mut guard) = ready else { break };
                    match guard.try_io(|fd| read_chunk(fd.get_ref())) {
                        Ok(Ok(Some(data))) => {
                            let small = data.len() < COALESCE_BELOW;
                            let at_ms = gathering_since.take().unwrap_or_else(now_ms);
                            if !self.send(data, at_ms).await {
                                return None;
                            }
                            if small {
                                // Let a chatty app's writes gather in the pipe:
                                // one wake-up and one write per millisecond
                                // instead of one per 4 KiB. What gathers is
                                // stamped with the start of the wait, so that
                                // stdout and stderr keep their order.
                                gathering_since = Some(now_ms());
                                tokio::time::sleep(COALESCE).await;
                            }
                        }
                        Err(_would_block) if gathering_since.is_some() => {
                            gathering_since = None;
                        }
                        Ok(Ok(None)) | Ok(Err(_)) => break, // EOF or a broken pipe
                        Err(_would_block) => {}
                    }
                }
            }
        }
        if detached {
            return Some(self.pipe.into_inner());
        }
        self.end();
        None
    }

    /// Tells the writer the source ended (its unfinished line is written).
    fn end(&self) {
        let _ = self.tx.send(WriterMsg::End {
            target: self.target.clone(),
            source: self.source,
        });
    }

    /// Reads what the pipe holds now, and no more: a process that escaped
    /// the group and goes on writing cannot hold the drain (and the next
    /// instance's log, which waits for it) forever.
    async fn drain(&self) {
        let mut left = pending_bytes(self.pipe.get_ref());
        while left > 0 {
            match read_chunk(self.pipe.get_ref()) {
                Ok(Some(data)) => {
                    left = left.saturating_sub(data.len());
                    if !self.send(data, now_ms()).await {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Hands a chunk to the writer once a permit is free; false if the writer is gone.
    async fn send(&self, data: Vec<u8>, at_ms: i64) -> bool {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let msg = WriterMsg::Chunk {
            target: self.target.clone(),
            source: self.source,
            at_ms,
            data,
            permit,
        };
        self.tx.send(msg).is_ok()
    }
}

/// Bytes waiting in a pipe (FIONREAD).
fn pending_bytes(fd: &OwnedFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc < 0 {
        0
    } else {
        n as usize
    }
}

/// One non-blocking read: `Some(bytes)`, `None` at EOF, or an error
/// (`WouldBlock` when the pipe is empty). Reads straight into a buffer of
/// the size the pipe holds (FIONREAD), so nothing is copied twice and no
/// large buffer stays allocated for quiet apps.
fn read_chunk(fd: &OwnedFd) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; pending_bytes(fd).clamp(1, READ_SIZE)];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = OFlag::from_bits_retain(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Where one output stream of an instance goes.
pub enum Output {
    /// Through a pipe the daemon reads: (the daemon's end, the app's end).
    Piped(OwnedFd, OwnedFd),
    /// Straight to `/dev/null`, when every line would be thrown away
    /// (PM2's way to turn an app's logs off): no pipe, no capture, and no
    /// fd of the daemon's is spent on it.
    Discarded(OwnedFd),
}

impl Output {
    /// The stream whose lines go to `target`.
    pub fn to(target: &super::Target) -> io::Result<Output> {
        if target.discards() {
            let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
            return Ok(Output::Discarded(null.into()));
        }
        let (read, write) = pipe()?;
        Ok(Output::Piped(read, write))
    }

    /// The end the app writes to.
    pub fn app_end(&self) -> &OwnedFd {
        match self {
            Output::Piped(_, fd) | Output::Discarded(fd) => fd,
        }
    }

    /// The end the daemon reads, when there is one.
    pub fn into_read(self) -> Option<OwnedFd> {
        match self {
            Output::Piped(read, _) => Some(read),
            Output::Discarded(_) => None,
        }
    }
}

/// A close-on-exec pipe, enlarged so a chatty app blocks less often:
/// (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // Best effort: the limit is /proc/sys/fs/pipe-max-size.
    let _ = fcntl(write.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(1024 * 1024));
    Ok((read, write))
}
