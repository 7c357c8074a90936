//! Server-sent event streams: the daemon's events, and an app's log lines
//! live. Each runs while its client reads; a comment every
//! [`KEEPALIVE`] finds a client that left (there is no timer otherwise).

use crate::logs::{Tapped, Taps};
use crate::supervisor::Msg;
use hyper::body::{Body, Bytes, Frame};
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use sup_proto::AppInfo;
use tokio::sync::{mpsc, oneshot};

/// How often an idle stream says it is alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Recent lines of each log file a log stream starts with.
const RECENT_LINES: usize = 100;

/// How far back in a file recent lines are looked for.
const RECENT_BYTES: u64 = 64 * 1024;

/// A response body fed by a task.
pub struct Sse(mpsc::Receiver<Bytes>);

impl Body for Sse {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// The daemon's events from now on, as `event: app` messages.
pub async fn events(tx: &mpsc::UnboundedSender<Msg>) -> Option<Sse> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (reply, past) = oneshot::channel();
    tx.send(Msg::Follow {
        target: None,
        tx: events_tx,
        reply,
    })
    .ok()?;
    past.await.ok()?;
    Some(feed(move |out| async move {
        while let Some(event) = events.recv().await {
            let json = serde_json::to_string(&event).unwrap_or_default();
            if !out.send(format!("event: app\ndata: {json}\n\n")).await {
                return;
            }
        }
    }))
}

/// `app`'s recent log lines, then its new ones as they are written.
pub fn logs(app: &AppInfo, taps: &Taps) -> Sse {
    let files = log_files(app);
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
    // Watch before reading back: a line written between the two is shown
    // twice rather than never.
    let mut live = taps.watch(&paths);
    feed(move |out| async move {
        let streams: Vec<&'static str> = files.iter().map(|(_, s)| *s).collect();
        let recent = tokio::task::spawn_blocking(move || recent(&files))
            .await
            .unwrap_or_default();
        for (stream, line) in recent {
            if !out.send(line_message(stream, &line)).await {
                return;
            }
        }
        while let Some(Tapped { file, data }) = live.recv().await {
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if !out.send(line_message(streams[file], line)).await {
                    return;
                }
            }
        }
    })
}

/// The files of an app's output: its out and err files, or the one file
/// both go to.
fn log_files(app: &AppInfo) -> Vec<(PathBuf, &'static str)> {
    let mut files = vec![(PathBuf::from(&app.logs.out), "out")];
    if app.logs.err != app.logs.out {
        files.push((PathBuf::from(&app.logs.err), "err"));
    }
    for instance in &app.logs.instances {
        files.push((PathBuf::from(&instance.out), "out"));
        if instance.err != instance.out {
            files.push((PathBuf::from(&instance.err), "err"));
        }
    }
    files
}

/// The last lines of each file, oldest first when they carry timestamps.
fn recent(files: &[(PathBuf, &'static str)]) -> Vec<(&'static str, Vec<u8>)> {
    let mut lines: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (path, stream) in files {
        let Ok(tail) = tail(path) else { continue };
        let all: Vec<&[u8]> = tail
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let skip = all.len().saturating_sub(RECENT_LINES);
        lines.extend(all[skip..].iter().map(|l| (*stream, l.to_vec())));
    }
    // Timestamped lines sort by their ISO prefix; others keep file order.
    lines.sort_by(|a, b| a.1.get(..23).cmp(&b.1.get(..23)));
    lines
}

/// The end of a file, from the first whole line.
fn tail(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    use sup_home::nofollow::{open, Last};
    let mut file = open(path, libc::O_RDONLY | libc::O_NONBLOCK, 0, Last::NoLink)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Vec::new());
    }
    let len = meta.len();
    let start = len.saturating_sub(RECENT_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut data = Vec::new();
    file.take(RECENT_BYTES).read_to_end(&mut data)?;
    if start > 0 {
        let first = memchr::memchr(b'\n', &data).map_or(data.len(), |i| i + 1);
        data.drain(..first);
    }
    Ok(data)
}

/// One log line as a message: `{"stream":"out","line":"..."}`.
fn line_message(stream: &str, line: &[u8]) -> String {
    let json = serde_json::json!({
        "stream": stream,
        "line": String::from_utf8_lossy(line),
    });
    format!("data: {json}\n\n")
}

/// Where a stream's task sends its messages.
pub struct Out(mpsc::Sender<Bytes>);

impl Out {
    /// Sends one message; false once the client is gone.
    async fn send(&self, message: String) -> bool {
        self.0.send(Bytes::from(message)).await.is_ok()
    }
}

/// A body fed by `task`, with a keep-alive comment while it is quiet; the
/// task ends when the client leaves.
fn feed<F, Fut>(task: F) -> Sse
where
    F: FnOnce(Out) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let keepalive = tx.clone();
    let work = tokio::spawn(task(Out(tx)));
    tokio::spawn(async move {
        let abort = work.abort_handle();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if keepalive.send(Bytes::from_static(b": alive\n\n")).await.is_err() {
                        break;
                    }
                }
                () = keepalive.closed() => break,
            }
        }
        abort.abort();
    });
    Sse(rx)
}
