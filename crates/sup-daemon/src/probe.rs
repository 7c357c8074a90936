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

/// GET `url`; a 2xx or 3xx status passes.
pub async fn http(url: &str, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let Some((connect, host, path)) = parse_http_url(url) else {
        return Outcome::new(false, format!("bad URL {url}"), started);
    };
    let attempt = async {
        let mut stream = TcpStream::connect(&connect).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sup-probe\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < head.len() && !head[..got].contains(&b'\n') {
            let n = stream.read(&mut head[got..]).await?;
            if n == 0 {
                break;
            }
            got += n;
        }
        // The status line is all we need, but reading the answer to its end
        // (within reason) spares the app a reset connection.
        let mut rest = [0u8; 4096];
        let mut left = MAX_BODY;
        while left > 0 {
            match stream.read(&mut rest).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..got]).into_owned())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::new(false, format!("timed out after {timeout:?}"), started),
        Ok(Err(e)) => Outcome::new(false, e.to_string(), started),
        Ok(Ok(head)) => match status_code(&head) {
            Some(code) if (200..400).contains(&code) => {
                Outcome::new(true, format!("HTTP {code}"), started)
            }
            Some(code) => Outcome::new(false, format!("HTTP {code}"), started),
            None => Outcome::new(false, "not an HTTP answer", started),
        },
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
        assert!(http(&url, Duration::from_secs(2)).await.ok);
        let bad = http(&url, Duration::from_secs(2)).await;
        assert!(!bad.ok && bad.detail == "HTTP 503", "{bad:?}");
        let refused = tcp("127.0.0.1:1", Duration::from_secs(2)).await;
        assert!(!refused.ok);
    }
}
