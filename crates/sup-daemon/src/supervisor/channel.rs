//! Node instances' IPC channels (see [`crate::ipc`]): set up at spawn,
//! and the binds their preload asks for, held for the app from then on.

use super::{Msg, Supervisor};
use crate::ipc::{self, BindReply, Request};
use crate::sockets::{self, Held};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use sup_proto::spec::{too_many_sockets, MAX_LISTEN};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tracing::info;

/// Tells the preload that the daemon binds what the app listens on.
pub const BIND_VAR: &str = "SUP_BIND";

/// A channel made for an instance about to be spawned.
#[derive(Debug)]
pub(super) struct Channel {
    ours: UnixStream,
    /// Passed as the fd after the held sockets; closed once spawned.
    pub theirs: OwnedFd,
    /// Whether this instance may ask the daemon to bind: only one whose
    /// preload does it (a `--wait-ready` channel, or an app run as another
    /// user, must not get sockets from the daemon that way).
    bind: bool,
}

impl Channel {
    /// A channel whose instance end will be fd `fd`, named in `env`;
    /// `bind`: the preload asks the daemon to bind what the app listens on.
    pub(super) fn new(
        env: &mut Vec<(String, String)>,
        fd: usize,
        bind: bool,
    ) -> std::io::Result<Self> {
        let (ours, theirs) = ipc::pair()?;
        env.retain(|(k, _)| k != BIND_VAR);
        if bind {
            env.push((BIND_VAR.into(), "1".into()));
        }
        for (key, value) in [
            ("NODE_CHANNEL_FD", fd.to_string()),
            ("NODE_CHANNEL_SERIALIZATION_MODE", "json".to_string()),
        ] {
            env.retain(|(k, _)| k != key);
            env.push((key.into(), value));
        }
        Ok(Channel { ours, theirs, bind })
    }

    /// Serves the channel of instance `pid` (set once spawned) of app
    /// `id`, through the supervisor's queue. Returns a copy of the daemon's
    /// end, to hand to the next daemon at `sup update`.
    pub(super) fn serve(
        self,
        tx: tokio::sync::mpsc::UnboundedSender<Msg>,
        id: u32,
        pid: Arc<AtomicU32>,
    ) -> Option<Kept> {
        let kept = self.ours.as_fd().try_clone_to_owned().ok();
        let task = serve_stream(self.ours, self.bind, tx, id, pid);
        kept.map(|fd| Kept {
            fd,
            bind: self.bind,
            task,
        })
    }

    /// Serves a channel handed over by the previous daemon (its end is
    /// `fd`), as [`Channel::serve`] does.
    pub(super) fn resume(
        fd: OwnedFd,
        bind: bool,
        tx: tokio::sync::mpsc::UnboundedSender<Msg>,
        id: u32,
        pid: u32,
    ) -> std::io::Result<Kept> {
        let std = std::os::unix::net::UnixStream::from(fd);
        std.set_nonblocking(true)?;
        let stream = UnixStream::from_std(std)?;
        let kept = stream.as_fd().try_clone_to_owned()?;
        let task = serve_stream(stream, bind, tx, id, Arc::new(AtomicU32::new(pid)));
        Ok(Kept {
            fd: kept,
            bind,
            task,
        })
    }
}

/// An instance's channel as the supervisor keeps it: a copy of the
/// daemon's end (for `sup update`), whether it may ask for binds, and the
/// task serving it (stopped before a handover, so that nothing it reads
/// is lost in the exec).
#[derive(Debug)]
pub struct Kept {
    /// The copy of the daemon's end.
    pub fd: OwnedFd,
    /// It may ask the daemon to bind.
    pub bind: bool,
    /// The task reading it.
    pub task: tokio::task::AbortHandle,
}

fn serve_stream(
    ours: UnixStream,
    may_bind: bool,
    tx: tokio::sync::mpsc::UnboundedSender<Msg>,
    id: u32,
    pid: Arc<AtomicU32>,
) -> tokio::task::AbortHandle {
    ipc::serve(ours, move |request| match request {
        Request::Ready => {
            let pid = pid.load(Ordering::SeqCst);
            let _ = tx.send(Msg::Ready { app: id, pid });
            None
        }
        Request::Listened(note) => {
            let pid = pid.load(Ordering::SeqCst);
            let _ = tx.send(Msg::Listened { app: id, pid, note });
            None
        }
        Request::Bind { .. } if !may_bind => None,
        Request::Bind { addr, .. } => {
            let (reply, answer) = oneshot::channel();
            let _ = tx.send(Msg::Bind {
                app: id,
                addr,
                reply,
            });
            Some(answer)
        }
    })
}

impl Supervisor {
    /// An instance of app `id` asks for `addr`: the socket already held
    /// there, or a new one bound and held from now on (in the spec, so
    /// later instances get it at spawn and `save` keeps it).
    pub(super) fn bind_for(&mut self, id: u32, addr: String) -> BindReply {
        let app = self.table.get_mut(id).ok_or("the app is gone")?;
        let copy = |held: &Held| held.fd.try_clone().map_err(|e| e.to_string());
        if let Some(held) = app.sockets.iter().find(|h| h.addr == addr) {
            return Ok((copy(held)?, addr));
        }
        if app.sockets.len() >= MAX_LISTEN {
            return Err(too_many_sockets(app.sockets.len() + 1));
        }
        let fd = sockets::bind(&addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let held = Held {
            addr: addr.clone(),
            fd,
        };
        let reply = copy(&held)?;
        info!(app = %app.spec.name, %addr, fd = held.fd.as_raw_fd(), "holding the address an instance listens on");
        app.sockets.push(held);
        app.bound_here.push(addr.clone());
        if !app.spec.listen.contains(&addr) {
            app.spec.listen.push(addr.clone());
        }
        self.state_dirty.insert(id);
        Ok((reply, addr))
    }
}
