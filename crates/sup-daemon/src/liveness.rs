//! `sup run --health-listen ADDR`: `/livez` (the daemon answers) and
//! `/readyz` (every app online and ready) for an orchestrator's probes.
//! No token: they tell only up or down. Each request is one GET with a
//! bounded header, answered and closed (HTTP/1.1, `Connection: close`).

use crate::supervisor::Msg;
use std::time::Duration;
use sup_proto::{Request, Response, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Longest request header read.
const MAX_HEADER: usize = 8 * 1024;

/// Most probe connections served at once.
const MAX_OPEN: usize = 64;

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` (`:9000` is every address) and serves it until aborted.
pub fn start(addr: &str, tx: mpsc::UnboundedSender<Msg>) -> std::io::Result<JoinHandle<()>> {
    let fd = crate::sockets::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("--health-listen {addr}: {e}")))?;
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let open = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_OPEN));
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                // Past the cap a newcomer is closed at once: probes retry,
                // and a flood can't take the fds that respawns need.
                Ok((stream, _)) => match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            answer(stream, tx).await;
                            drop(permit);
                        });
                    }
                    Err(_) => drop(stream),
                },
                // EMFILE and friends: don't spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }))
}

async fn answer(mut stream: TcpStream, tx: mpsc::UnboundedSender<Msg>) {
    let Ok(Some(path)) = tokio::time::timeout(READ_TIMEOUT, request_path(&mut stream)).await else {
        return;
    };
    let (status, body) = match path.as_str() {
        "/livez" => ("200 OK", "ok\n".to_string()),
        "/readyz" => match not_ready(&tx).await {
            None => ("200 OK", "ready\n".to_string()),
            Some(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        _ => ("404 Not Found", "try /livez or /readyz\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// The path of a `GET` request, once its header has arrived whole.
async fn request_path(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_HEADER {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = std::str::from_utf8(&buf).ok()?.lines().next()?;
    let mut words = line.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    (method == "GET" || method == "HEAD")
        .then(|| target.split('?').next().unwrap_or("").to_string())
}

/// Why not every app is online and ready, or None when all are.
async fn not_ready(tx: &mpsc::UnboundedSender<Msg>) -> Option<String> {
    let (reply, answer) = oneshot::channel();
    if tx.send(Msg::Request(Request::List, reply)).is_err() {
        return Some("the daemon is stopping".into());
    }
    let Ok(Response::Apps(apps)) = answer.await else {
        return Some("the daemon is stopping".into());
    };
    let waiting: Vec<String> = apps
        .iter()
        .filter(|a| a.status != Status::Online || a.ready_instances < a.instances.len() as u32)
        .map(|a| format!("{} ({})", a.name, a.status.as_str()))
        .collect();
    (!waiting.is_empty() || apps.is_empty()).then(|| match waiting.is_empty() {
        true => "no apps".into(),
        false => waiting.join(", "),
    })
}
