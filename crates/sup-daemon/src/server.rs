//! The Unix socket server: checks who connects, reads framed requests,
//! hands them to the supervisor and writes back its answers.

use crate::supervisor::Msg;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sup_proto::{
    decode_len, decode_request, encode_frame, ErrorKind, Request, Response, ResponseEnvelope,
    HEADER_LEN,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// How long a client may take to send the body of a frame whose header it sent.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a connection may wait before sending a request's header: the
/// CLI sends at once, so an idle connection is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections open at once. Past it, the one idle the longest is
/// closed for the newcomer: idle connections can't starve the CLI, nor take
/// the fds that respawns need.
const MAX_CONNECTIONS: usize = 512;

/// Repeated warnings of the server (a failing accept) are said at most
/// this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Largest request body. Nothing a client sends comes near it (a spec with
/// a large environment is a few KiB); answers may be larger.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// Bodies up to this size are read without asking the budget: their cost is
/// that of a connection.
const SMALL_REQUEST: usize = 64 * 1024;

/// Most bytes of larger request bodies held at once, over all connections:
/// a client over budget waits (up to [`BODY_TIMEOUT`]) or is refused, while
/// small requests are still served.
const REQUEST_BUDGET: usize = 16 * 1024 * 1024;

/// Binds the socket at `path` (replacing a stale one) and makes it 0600.
/// The caller holds the daemon lock, so no live daemon owns an existing file.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections for ever. Each connection holds a strong `inflight`
/// sender only while it handles a request, so that shutdown can wait for the
/// last answers to be written.
pub async fn serve(
    listener: UnixListener,
    tx: mpsc::UnboundedSender<Msg>,
    inflight: mpsc::WeakSender<()>,
    warnings: watch::Receiver<Vec<String>>,
) {
    let budget = Arc::new(Semaphore::new(REQUEST_BUDGET));
    let mut accept_warnings = crate::selflog::RateLimit::new(WARN_EVERY);
    let conns = Arc::new(Connections::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                conns.make_room();
                let conn = connection(
                    stream,
                    tx.clone(),
                    inflight.clone(),
                    budget.clone(),
                    warnings.clone(),
                    conns.clone(),
                );
                tokio::spawn(conn);
            }
            Err(err) => {
                // EMFILE and friends: don't spin; the next accept may succeed.
                if let Some(held) = accept_warnings.allow(std::time::Instant::now()) {
                    warn!(
                        "accept failed: {err} ({held} more such failures since the last warning)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    mut stream: UnixStream,
    tx: mpsc::UnboundedSender<Msg>,
    inflight: mpsc::WeakSender<()>,
    budget: Arc<Semaphore>,
    warnings: watch::Receiver<Vec<String>>,
    conns: Arc<Connections>,
) {
    let me = conns.open();
    let _closed = Closed(&conns, me);
    if let Err(refusal) = check_peer(&stream) {
        let _ = write_response(&mut stream, refusal).await;
        return;
    }
    loop {
        let mut header = [0u8; HEADER_LEN];
        let evicted = conns.idle(me);
        let read = tokio::time::timeout(IDLE_TIMEOUT, stream.read_exact(&mut header));
        let got = tokio::select! {
            got = read => matches!(got, Ok(Ok(_))),
            _ = evicted => false,
        };
        conns.busy(me);
        if !got {
            return; // EOF, a broken peer, idle too long, or evicted.
        }
        let len = match decode_len(header) {
            Ok(len) if len <= MAX_REQUEST => len,
            Ok(len) => {
                let why =
                    format!("request of {len} bytes is larger than the {MAX_REQUEST}-byte limit");
                let _ =
                    write_response(&mut stream, Response::error(ErrorKind::BadRequest, why)).await;
                return;
            }
            Err(err) => {
                let _ = write_response(
                    &mut stream,
                    Response::error(ErrorKind::BadRequest, err.to_string()),
                )
                .await;
                return; // The stream is out of step; drop it.
            }
        };
        let held = match reserve(&budget, len).await {
            Ok(permit) => permit,
            Err(refusal) => {
                let _ = write_response(&mut stream, refusal).await;
                return;
            }
        };
        let mut body = vec![0u8; len];
        match tokio::time::timeout(BODY_TIMEOUT, stream.read_exact(&mut body)).await {
            Ok(Ok(_)) => {}
            _ => return, // Truncated or too slow.
        }
        let parsed = decode_request(&body);
        drop((body, held));
        let Some(guard) = inflight.upgrade() else {
            return;
        };
        let response = match parsed {
            Ok(Request::Events {
                target,
                follow: true,
            }) => {
                drop(guard);
                return stream_events(stream, &tx, target).await;
            }
            Ok(request) => ask(&tx, request).await,
            Err(response) => response,
        };
        let mut envelope = ResponseEnvelope::new(response);
        envelope.warnings = warnings.borrow().clone();
        if write_envelope(&mut stream, envelope).await.is_err() {
            return;
        }
    }
}

/// The open connections, and which of them wait idle for a request (oldest
/// first), each with the means to close it.
#[derive(Default)]
struct Connections {
    inner: std::sync::Mutex<ConnectionsInner>,
}

#[derive(Default)]
struct ConnectionsInner {
    open: usize,
    next: u64,
    /// Idle connections by when they went idle (a sequence number), each
    /// with its id and the means to close it.
    idle: std::collections::BTreeMap<u64, (u64, oneshot::Sender<()>)>,
    /// Connection id -> its key in `idle`.
    idle_since: std::collections::HashMap<u64, u64>,
}

impl ConnectionsInner {
    fn not_idle(&mut self, id: u64) {
        if let Some(since) = self.idle_since.remove(&id) {
            self.idle.remove(&since);
        }
    }
}

/// Counts a connection out when it ends, however it ends.
struct Closed<'a>(&'a Connections, u64);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.open -= 1;
        inner.not_idle(self.1);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, ConnectionsInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: its id.
    fn open(&self) -> u64 {
        let mut inner = self.lock();
        inner.open += 1;
        inner.next += 1;
        inner.next
    }

    /// Before a new connection is served: at the cap, the connection idle
    /// the longest is closed.
    fn make_room(&self) {
        let mut inner = self.lock();
        if inner.open >= MAX_CONNECTIONS {
            if let Some((_, (id, evict))) = inner.idle.pop_first() {
                inner.idle_since.remove(&id);
                let _ = evict.send(());
            }
        }
    }

    /// Connection `id` waits for a request; resolves if it is evicted.
    fn idle(&self, id: u64) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next += 1;
        let since = inner.next;
        inner.idle.insert(since, (id, tx));
        inner.idle_since.insert(id, since);
        rx
    }

    /// Connection `id` has a request (or is ending).
    fn busy(&self, id: u64) {
        self.lock().not_idle(id);
    }
}

/// Takes `len` bytes from the request budget (nothing for a small body).
async fn reserve(
    budget: &Arc<Semaphore>,
    len: usize,
) -> Result<Option<OwnedSemaphorePermit>, Response> {
    if len <= SMALL_REQUEST {
        return Ok(None);
    }
    let wanted = budget.clone().acquire_many_owned(len as u32);
    match tokio::time::timeout(BODY_TIMEOUT, wanted).await {
        Ok(Ok(permit)) => Ok(Some(permit)),
        _ => Err(Response::error(
            ErrorKind::Busy,
            "the daemon is holding too many large requests; try again",
        )),
    }
}

/// `sup events --follow`: the past events, then each new one as a frame,
/// until the client hangs up.
async fn stream_events(
    mut stream: UnixStream,
    tx: &mpsc::UnboundedSender<Msg>,
    target: Option<sup_proto::Target>,
) {
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = oneshot::channel();
    let follow = Msg::Follow {
        target,
        tx: events_tx,
        reply: reply_tx,
    };
    if tx.send(follow).is_err() {
        return;
    }
    let Ok(first) = reply_rx.await else { return };
    let failed = matches!(first, Response::Error { .. });
    if write_response(&mut stream, first).await.is_err() || failed {
        return;
    }
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            event = events_rx.recv() => {
                let Some(event) = event else { return };
                if write_response(&mut stream, Response::Events(vec![event])).await.is_err() {
                    return;
                }
            }
            // Anything from the client (or EOF) ends the stream.
            _ = stream.read(&mut probe) => return,
        }
    }
}

/// Refuses peers of another uid; root may connect.
fn check_peer(stream: &UnixStream) -> Result<(), Response> {
    let cred = stream.peer_cred().map_err(|e| {
        Response::error(
            ErrorKind::Forbidden,
            format!("cannot read peer credentials: {e}"),
        )
    })?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == me || cred.uid() == 0 {
        return Ok(());
    }
    warn!(uid = cred.uid(), pid = ?cred.pid(), "refused a client of another user");
    Err(Response::error(
        ErrorKind::Forbidden,
        format!(
            "this daemon belongs to uid {me}; uid {} may not use it",
            cred.uid()
        ),
    ))
}

async fn ask(tx: &mpsc::UnboundedSender<Msg>, request: Request) -> Response {
    let (reply_tx, reply_rx) = oneshot::channel();
    if tx.send(Msg::Request(request, reply_tx)).is_err() {
        return Response::error(ErrorKind::ShuttingDown, "the daemon is shutting down");
    }
    reply_rx
        .await
        .unwrap_or_else(|_| Response::error(ErrorKind::ShuttingDown, "the daemon is shutting down"))
}

async fn write_response(stream: &mut UnixStream, response: Response) -> io::Result<()> {
    write_envelope(stream, ResponseEnvelope::new(response)).await
}

async fn write_envelope(stream: &mut UnixStream, envelope: ResponseEnvelope) -> io::Result<()> {
    let frame = encode_frame(&envelope).unwrap_or_else(|e| {
        encode_frame(&ResponseEnvelope::new(Response::error(
            ErrorKind::Internal,
            e.to_string(),
        )))
        .unwrap_or_default()
    });
    stream.write_all(&frame).await
}
