//! The daemon's HTTP listener (`sup web --listen`, `SUP_WEB_LISTEN`, or
//! `sup run --health-listen`): `/livez` (the daemon answers), `/readyz`
//! (every app online and ready) and `/metrics` (Prometheus). The probes
//! need no token: they tell only up or down. `/metrics` needs the token
//! (`Authorization: Bearer …`) when the listener is beyond loopback. Each
//! request is one GET with a bounded header, answered and closed
//! (HTTP/1.1, `Connection: close`).

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

/// Binds `addr` (`:9000` is every address) and serves it until aborted;
/// with `token`, `/metrics` asks for it.
pub fn start(
    addr: &str,
    tx: mpsc::UnboundedSender<Msg>,
    token: Option<String>,
) -> std::io::Result<JoinHandle<()>> {
    let fd = crate::sockets::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    let token = std::sync::Arc::new(token);
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
                        let (tx, token) = (tx.clone(), token.clone());
                        tokio::spawn(async move {
                            answer(stream, tx, &token).await;
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

async fn answer(mut stream: TcpStream, tx: mpsc::UnboundedSender<Msg>, token: &Option<String>) {
    let Ok(Some(head)) = tokio::time::timeout(READ_TIMEOUT, request_head(&mut stream)).await else {
        return;
    };
    let allowed = token
        .as_deref()
        .is_none_or(|t| head.bearer.as_deref().is_some_and(|b| same(b, t)));
    let (status, body) = match head.path.as_str() {
        "/livez" => ("200 OK", "ok\n".to_string()),
        "/metrics" if !allowed => (
            "401 Unauthorized",
            "a token is needed: Authorization: Bearer <SUP_HOME/web.token>\n".to_string(),
        ),
        "/metrics" => match metrics(&tx).await {
            Some(text) => ("200 OK", text),
            None => (
                "503 Service Unavailable",
                "the daemon is stopping\n".to_string(),
            ),
        },
        "/readyz" => match not_ready(&tx).await {
            None => ("200 OK", "ready\n".to_string()),
            Some(why) => ("503 Service Unavailable", format!("not ready: {why}\n")),
        },
        _ => ("404 Not Found", "try /livez or /readyz\n".to_string()),
    };
    let kind = if head.path == "/metrics" && status.starts_with("200") {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain"
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
}

/// What a request asks: its path, and the bearer token it shows.
struct Head {
    path: String,
    bearer: Option<String>,
}

/// The head of a `GET` request, once it has arrived whole.
async fn request_head(stream: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() + n > MAX_HEADER {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = std::str::from_utf8(&buf).ok()?;
    let mut lines = text.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let (method, target) = (words.next()?, words.next()?);
    if method != "GET" && method != "HEAD" {
        return None;
    }
    let bearer = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        let value = value.trim();
        (name.eq_ignore_ascii_case("authorization"))
            .then(|| value.strip_prefix("Bearer ").map(str::to_string))
            .flatten()
    });
    Some(Head {
        path: target.split('?').next().unwrap_or("").to_string(),
        bearer,
    })
}

/// Compares tokens in a time that doesn't depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The apps' metrics, from the same figures as `list`.
async fn metrics(tx: &mpsc::UnboundedSender<Msg>) -> Option<String> {
    let ask = |request: Request| {
        let (reply, answer) = oneshot::channel();
        tx.send(Msg::Request(request, reply)).ok().map(|()| answer)
    };
    let Ok(Response::Pong { started_at_ms, .. }) = ask(Request::Ping)?.await else {
        return None;
    };
    let Ok(Response::Apps(apps)) = ask(Request::List)?.await else {
        return None;
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let uptime = now_ms.saturating_sub(started_at_ms) as f64 / 1000.0;
    Some(crate::metrics::render(&apps, uptime))
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

/// The token beyond loopback, made at first need (0600 in `SUP_HOME`):
/// the token, and whether it was made now (it is shown once).
pub fn token(home: &sup_home::Home) -> std::io::Result<(String, bool)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.web_token();
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((text.trim().to_string(), false));
    }
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    Ok((token, true))
}

/// Whether `addr` is reachable from this machine only.
pub fn is_loopback(addr: &str) -> bool {
    match sup_proto::spec::ListenAddr::parse(addr) {
        Ok(sup_proto::spec::ListenAddr::Ip(a)) => a.ip().is_loopback(),
        Ok(sup_proto::spec::ListenAddr::Unix(_)) => true,
        _ => false,
    }
}
