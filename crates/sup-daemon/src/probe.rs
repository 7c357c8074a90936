//! HTTP and TCP probes, run as tasks on the daemon's event loop (no thread
//! per probe). Command probes are processes, started by the supervisor.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes of an HTTP answer a probe reads before it hangs up.
const MAX_BODY: usize = 64 * 1024;

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Passed.
    pub ok: bool,
    /// `ok`, `HTTP 503`, `connection refused`, `timed out after 2s`...
    pub detail: String,
    /// How long it took.
    pub latency: Duration,
}

impl Outcome {
    /// An outcome measured from `started`.
    pub fn new(ok: bool, detail: impl Into<String>, started: Instant) -> Outcome {
        Outcome {
            ok,
            detail: detail.into(),
            latency: started.elapsed(),
        }
    }
}

/// `http://host:port/path` split into (`host:port`, `host`, `/path`).
pub fn parse_http_url(url: &str) -> Option<(String, String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_string();
    let connect = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Some((connect, host, path.to_string()))
}

/// A connection kept between two HTTP probes of one instance.
#[derive(Debug)]
pub struct Kept {
    stream: TcpStream,
    opened: Instant,
    used: Instant,
}

/// A kept connection serves probes for this long, then a probe connects
/// afresh: a probe must also prove, now and then, that the app still
/// accepts new connections (an app out of fds serves old ones only).
const FRESH_EVERY: Duration = Duration::from_secs(30);

/// A connection idle longer than this is not reused: servers close idle
/// ones after a few seconds (gunicorn after 2, Node after 5), and a probe
/// on a closing connection would only have to connect again.
const KEEP_IDLE: Duration = Duration::from_millis(1500);

/// GET `url`; a 2xx or 3xx status passes. The connection of the previous
/// probe is reused when it is fresh and recent enough (see [`Kept`]); the
/// one that stays open is returned for the next probe. After any failure
/// nothing is kept.
pub async fn http(url: &str, timeout: Duration, kept: Option<Kept>) -> (Outcome, Option<Kept>) {
    let started = Instant::now();
    let Some((connect, host, path)) = parse_http_url(url) else {
        return (Outcome::new(false, format!("bad URL {url}"), started), None);
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sup-probe\r\n\r\n");
    let reuse = kept.filter(|k| {
        started.duration_since(k.opened) < FRESH_EVERY && started.duration_since(k.used) < KEEP_IDLE
    });
    let attempt = async {
        if let Some(k) = reuse {
            // A server may have closed it meanwhile: that is no failure of
            // the app, and a fresh connection is tried at once.
            if let Ok(done) = exchange(k.stream, request.as_bytes()).await {
                return Ok((done, k.opened));
            }
        }
        let stream = TcpStream::connect(&connect).await?;
        let _ = stream.set_nodelay(true);
        Ok::<_, std::io::Error>((exchange(stream, request.as_bytes()).await?, Instant::now()))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => (
            Outcome::new(false, format!("timed out after {timeout:?}"), started),
            None,
        ),
        Ok(Err(e)) => (Outcome::new(false, e.to_string(), started), None),
        Ok(Ok(((code, stream), opened))) => {
            let ok = (200..400).contains(&code);
            let outcome = Outcome::new(ok, format!("HTTP {code}"), started);
            let kept = stream.filter(|_| ok).map(|stream| Kept {
                stream,
                opened,
                used: Instant::now(),
            });
            (outcome, kept)
        }
    }
}

/// Sends `request` and reads the answer to its end: its status, and the
/// connection when the server keeps it open.
async fn exchange(
    mut stream: TcpStream,
    request: &[u8],
) -> std::io::Result<(u16, Option<TcpStream>)> {
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("not an HTTP answer"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let code = status_code(&head).ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let framing = Framing::of(&head);
    let mut body = buf.split_off(head_end);
    let reusable = match framing {
        Framing::Length(n) if n <= MAX_BODY => {
            while body.len() < n {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await? {
                    0 => return Ok((code, None)),
                    got => body.extend_from_slice(&chunk[..got]),
                }
            }
            body.len() == n
        }
        Framing::Chunked => read_chunked(&mut stream, body).await?,
        // To its end, within reason: it spares the app a reset connection.
        _ => {
            drain(&mut stream).await;
            false
        }
    };
    Ok((
        code,
        (reusable && framing.keeps_alive(&head)).then_some(stream),
    ))
}

/// Longest answer head a probe reads.
const MAX_HEAD: usize = 16 * 1024;

/// How an answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// At the connection's end.
    Close,
}

impl Framing {
    fn of(head: &str) -> Framing {
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_ascii_lowercase())
            })
        };
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            return Framing::Chunked;
        }
        match header("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    }

    /// Whether the server keeps the connection open after this answer.
    fn keeps_alive(self, head: &str) -> bool {
        let lower = head.to_ascii_lowercase();
        let http11 = lower.starts_with("http/1.1");
        let close = lower.contains("\nconnection: close") || lower.contains("\nconnection:close");
        let keep = lower.contains("connection: keep-alive");
        self != Framing::Close && !close && (http11 || keep)
    }
}

/// Reads a chunked body to its end (`body` holds what came with the head);
/// false when it is too long to be worth keeping the connection for.
async fn read_chunked(stream: &mut TcpStream, mut body: Vec<u8>) -> std::io::Result<bool> {
    let mut at = 0;
    loop {
        // A size line, its data and CRLF; the last chunk is 0 and a CRLF.
        let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            if !fill(stream, &mut body).await? {
                return Ok(false);
            }
            continue;
        };
        let line = String::from_utf8_lossy(&body[at..at + eol]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("a bad chunk size"))?;
        let end = at + eol + 2 + size + 2;
        while body.len() < end {
            if !fill(stream, &mut body).await? {
                return Ok(false);
            }
        }
        if size == 0 {
            return Ok(true);
        }
        at = end;
    }
}

/// Reads more of an answer; false at its end or past [`MAX_BODY`].
async fn fill(stream: &mut TcpStream, body: &mut Vec<u8>) -> std::io::Result<bool> {
    if body.len() > MAX_BODY {
        return Ok(false);
    }
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    body.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Reads what is left of an answer, up to [`MAX_BODY`].
async fn drain(stream: &mut TcpStream) {
    let mut rest = [0u8; 4096];
    let mut left = MAX_BODY;
    while left > 0 {
        match stream.read(&mut rest).await {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn status_code(head: &str) -> Option<u16> {
    let mut parts = head.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

/// Opens a TCP connection to `addr`.
pub async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    let started = Instant::now();
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Outcome::new(false, format!("timed out after {timeout:?}"), started),
        Ok(Err(e)) => Outcome::new(false, e.to_string(), started),
        Ok(Ok(_)) => Outcome::new(true, "connected", started),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:3000/health"),
            Some((
                "127.0.0.1:3000".into(),
                "127.0.0.1".into(),
                "/health".into()
            ))
        );
        assert_eq!(
            parse_http_url("http://localhost"),
            Some(("localhost:80".into(), "localhost".into(), "/".into()))
        );
        assert_eq!(parse_http_url("https://x/"), None);
        assert_eq!(parse_http_url("http:///x"), None);
    }

    /// A server that answers every request on each connection it accepts
    /// with `answer`, counting the connections.
    async fn server(
        answer: &'static str,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{addr}/health"), accepted)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_kept_connection_serves_the_next_probes_unless_the_server_closes_it() {
        use std::sync::atomic::Ordering;
        let t = Duration::from_secs(2);
        for answer in [
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ] {
            let (url, accepted) = server(answer).await;
            let mut kept = None;
            for _ in 0..3 {
                let (outcome, next) = http(&url, t, kept).await;
                assert!(outcome.ok, "{outcome:?}");
                kept = next;
            }
            assert!(kept.is_some());
            assert_eq!(accepted.load(Ordering::SeqCst), 1, "{answer}");
        }
        let (url, accepted) =
            server("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await;
        let (outcome, kept) = http(&url, t, None).await;
        assert!(outcome.ok && kept.is_none());
        let (url, _) = server("HTTP/1.0 200 OK\r\n\r\nbye").await;
        let quick = Duration::from_millis(300);
        assert!(
            http(&url, quick, None).await.1.is_none(),
            "HTTP/1.0 without keep-alive"
        );
        // A kept connection the server has closed: a fresh one, no failure.
        let (url, accepted2) = server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let (_, kept) = http(&url, t, None).await;
        let mut kept = kept.unwrap();
        kept.stream = TcpStream::connect(
            url.trim_start_matches("http://")
                .trim_end_matches("/health"),
        )
        .await
        .unwrap();
        drop(kept.stream.shutdown().await);
        let (outcome, _) = http(&url, t, Some(kept)).await;
        assert!(outcome.ok, "{outcome:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert!(accepted2.load(Ordering::SeqCst) >= 2);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code("HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn probes_against_a_real_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            for code in [200, 503] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let url = format!("http://{addr}/health");
        assert!(http(&url, Duration::from_secs(2), None).await.0.ok);
        let bad = http(&url, Duration::from_secs(2), None).await.0;
        assert!(!bad.ok && bad.detail == "HTTP 503", "{bad:?}");
        let refused = tcp("127.0.0.1:1", Duration::from_secs(2)).await;
        assert!(!refused.ok);
    }
}
