//! The log pane's feed: one thread reads the last lines of the selection's
//! files, then follows them as `sup logs` does (inotify, through
//! [`Following`]). A new selection comes on a channel, announced by a byte
//! on a socket pair, so the thread waits on both at once and never polls.

use super::feed::{spawn, Msg};
use super::state::LogLine;
use crate::logs::{self, Following, Line, Source};
use anyhow::Result;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};

/// Lines read from the files when an app is selected.
const TAIL: usize = 200;

/// What the follower is asked to follow: sources, and their generation.
type Ask = (u64, Vec<Source>);

/// The way to the follower thread.
pub struct Follower {
    asks: Sender<Ask>,
    wake: UnixStream,
}

impl Follower {
    /// Starts the thread; it sends lines on `tx`.
    pub fn start(tx: Sender<Msg>) -> Result<Follower> {
        let (wake, woken) = UnixStream::pair()?;
        // A full buffer already holds a wake-up: never wait to add one.
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let (asks, asked) = mpsc::channel();
        spawn("logs", move || run(&asked, &woken, &tx))?;
        Ok(Follower { asks, wake })
    }

    /// Follows `sources` from now on (none: nothing); their lines carry `generation`.
    pub fn follow(&self, generation: u64, sources: Vec<Source>) {
        if self.asks.send((generation, sources)).is_ok() {
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// The sources followed now.
struct Current {
    generation: u64,
    sources: Vec<Source>,
    following: Following,
}

fn run(asked: &Receiver<Ask>, woken: &UnixStream, tx: &Sender<Msg>) {
    let mut current: Option<Current> = None;
    loop {
        let files = current.as_ref().map(|c| c.following.fd());
        let (ask, changed) = match wait(woken, files) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = tx.send(error(&current, &e.into()));
                return;
            }
        };
        if ask {
            drain(woken);
            match latest(asked) {
                Latest::Gone => return,
                Latest::New((generation, sources)) => {
                    current = begin(generation, sources, tx);
                    continue;
                }
                Latest::Nothing => {}
            }
        }
        let Some(now) = current.as_mut().filter(|_| changed) else {
            continue;
        };
        let msg = match now.following.next_lines(&now.sources) {
            Ok(lines) if lines.is_empty() => continue,
            Ok(lines) => Msg::Logs {
                generation: now.generation,
                lines: for_the_pane(lines),
            },
            Err(e) => error(&current.take(), &e),
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// Reading `current`'s files failed.
fn error(current: &Option<Current>, e: &anyhow::Error) -> Msg {
    Msg::LogError {
        generation: current.as_ref().map_or(0, |c| c.generation),
        error: format!("{e:#}"),
    }
}

/// Starts following `sources`, after sending their last lines.
fn begin(generation: u64, sources: Vec<Source>, tx: &Sender<Msg>) -> Option<Current> {
    if sources.is_empty() {
        return None;
    }
    match tail(&sources) {
        Ok((following, lines)) => {
            let _ = tx.send(Msg::Logs { generation, lines });
            Some(Current {
                generation,
                sources,
                following,
            })
        }
        Err(e) => {
            let error = format!("{e:#}");
            let _ = tx.send(Msg::LogError { generation, error });
            None
        }
    }
}

/// Watches first, then reads the tail up to where following starts: no
/// line falls in between, none comes twice.
fn tail(sources: &[Source]) -> Result<(Following, Vec<LogLine>)> {
    let following = Following::start(sources)?;
    let each: Vec<&Source> = sources.iter().collect();
    let recent = logs::recent(&each, Some(TAIL), None, Some(&following))?;
    Ok((following, for_the_pane(recent)))
}

/// Lines as the pane shows them: the app's text, and whether it is stderr.
fn for_the_pane(lines: Vec<(&Source, Line)>) -> Vec<LogLine> {
    lines
        .into_iter()
        .map(|(source, line)| LogLine::new(&line.text, source.is_err()))
        .collect()
}

/// What the channel holds after a wake-up.
enum Latest {
    /// The newest ask (older ones are moot).
    New(Ask),
    /// Nothing new.
    Nothing,
    /// The view is gone.
    Gone,
}

fn latest(asked: &Receiver<Ask>) -> Latest {
    let mut newest = Latest::Nothing;
    loop {
        match asked.try_recv() {
            Ok(ask) => newest = Latest::New(ask),
            Err(TryRecvError::Empty) => return newest,
            Err(TryRecvError::Disconnected) => return Latest::Gone,
        }
    }
}

/// Empties the wake-up socket (it is non-blocking).
fn drain(mut woken: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(woken.read(&mut buf), Ok(n) if n > 0) {}
}

/// Waits until a new ask is announced or a followed file may have changed;
/// says which (both may).
fn wait(woken: &UnixStream, files: Option<BorrowedFd>) -> io::Result<(bool, bool)> {
    let pollfd = |fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // A negative descriptor is one poll skips.
    let mut fds = [
        pollfd(woken.as_raw_fd()),
        pollfd(files.map_or(-1, |f| f.as_raw_fd())),
    ];
    loop {
        // SAFETY: `fds` is an array of two pollfd, which poll reads and
        // fills in; it outlives the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n >= 0 {
            return Ok((fds[0].revents != 0, fds[1].revents != 0));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
