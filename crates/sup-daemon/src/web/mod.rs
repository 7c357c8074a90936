//! The daemon's HTTP listener (`sup web --listen`, `SUP_WEB_LISTEN`, or
//! `sup run --health-listen`), on hyper over the daemon's tokio:
//! - `/livez` (the daemon answers) and `/readyz` (every app online and
//!   ready): no token, they tell only up or down;
//! - `/metrics`: Prometheus' text;
//! - `/`: the dashboard, one static page, fed by `/api/apps`,
//!   `/api/events` and `/api/logs?app=ID` (server-sent events), acting
//!   through `POST /api/apps/ID/{restart,reload,stop,start}`.
//!
//! Who may do what is [`auth`]'s: changes always need the token, and
//! everything but the probes needs it beyond loopback.

mod api;
mod auth;
mod stream;

use crate::logs::Taps;
use crate::supervisor::Msg;
use auth::{Guard, Refusal};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use auth::{is_loopback, token};

/// Most connections served at once (event streams included).
const MAX_OPEN: usize = 64;

/// How long a client may take to send a request's head (and how long a
/// kept-alive connection may sit idle).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The dashboard: one static page built into the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// A response body: whole, or a stream.
type Body = BoxBody<Bytes, Infallible>;

/// What every request handler shares.
struct Ctx {
    tx: mpsc::UnboundedSender<Msg>,
    guard: Guard,
    taps: Taps,
}

/// Binds `addr` (`:9615` is every address) and serves it until aborted,
/// with `token` asked for as [`auth`] says.
pub fn start(
    addr: &str,
    tx: mpsc::UnboundedSender<Msg>,
    token: String,
    taps: Taps,
) -> std::io::Result<JoinHandle<()>> {
    let fd = crate::sockets::bind(addr)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
    let std = std::net::TcpListener::from(fd);
    std.set_nonblocking(true)?;
    let listener = TcpListener::from_std(std)?;
    let ctx = Arc::new(Ctx {
        tx,
        guard: Guard::new(token, is_loopback(addr)),
        taps,
    });
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_OPEN));
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                // Past the cap a newcomer is closed at once: probes retry,
                // and a flood can't take the fds that respawns need.
                Ok((stream, _)) => match open.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let ctx = ctx.clone();
                        tokio::spawn(async move {
                            serve(stream, ctx).await;
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

/// Serves one connection's requests.
async fn serve(stream: tokio::net::TcpStream, ctx: Arc<Ctx>) {
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(req, &ctx).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

/// Answers one request.
async fn route(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    match path.as_str() {
        "/livez" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return match api::not_ready(&ctx.tx).await {
                None => text(StatusCode::OK, "ready\n"),
                Some(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            }
        }
        _ => {}
    }
    let changes = method == Method::POST;
    let reads = method == Method::GET || method == Method::HEAD;
    if let Err(refusal) = ctx.guard.check(req.headers(), &query, changes) {
        return match (refusal, reads, path.as_str()) {
            // The page holds no data, and it is what asks a browser for
            // the token; the status still says it is missing.
            (Refusal::Token, true, "/" | "/index.html") => {
                let mut r = page();
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r
            }
            (refusal, _, _) => refused(refusal),
        };
    }
    match (path.as_str(), reads) {
        ("/" | "/index.html", true) => page(),
        ("/metrics", true) => match api::metrics(&ctx.tx).await {
            Some(body) => with_type(
                text(StatusCode::OK, body),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            None => stopping(),
        },
        ("/api/apps", true) => match api::apps(&ctx.tx).await {
            Some(apps) => json(StatusCode::OK, &apps),
            None => stopping(),
        },
        ("/api/events", true) => match stream::events(&ctx.tx).await {
            Some(sse) => event_stream(sse),
            None => stopping(),
        },
        ("/api/logs", true) => {
            let id = query_value(&query, "app").unwrap_or_default();
            match api::app(&ctx.tx, &id).await {
                Ok(app) => event_stream(stream::logs(&app, &ctx.taps)),
                Err((status, why)) => error(status, &why),
            }
        }
        (path, _) if changes && path.starts_with("/api/apps/") => {
            let (status, body) = api::act(&ctx.tx, &path["/api/apps/".len()..]).await;
            json(status, &body)
        }
        ("/" | "/index.html" | "/metrics" | "/api/apps" | "/api/events" | "/api/logs", false) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
        }
        _ => error(StatusCode::NOT_FOUND, "no such page: try / or /metrics"),
    }
}

/// The value of `name=` in a query string, decoded.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| percent_decode(value))
    })
}

/// Decodes `%XX` and `+` of a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Token => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a token is needed: Authorization: Bearer <the token in SUP_HOME/web.token>",
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sup\""),
            );
            r
        }
        Refusal::Host => error(
            StatusCode::FORBIDDEN,
            "this listener answers only to localhost or an address in Host",
        ),
    }
}

fn page() -> Response<Body> {
    let mut r = with_type(text(StatusCode::OK, DASHBOARD), "text/html; charset=utf-8");
    let headers = r.headers_mut();
    // The page runs only its own inline code, is never framed (a click on
    // it can't be stolen) and sends no referrer (a token in the URL stays).
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

fn event_stream(sse: stream::Sse) -> Response<Body> {
    let mut r = Response::new(sse.boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn stopping() -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping")
}

fn error(status: StatusCode, why: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": why }))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = with_type(text(status, body), "application/json");
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    with_type(r, "text/plain; charset=utf-8")
}

fn with_type(mut r: Response<Body>, kind: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        assert_eq!(
            query_value("a=1&app=web%20one&x", "app").as_deref(),
            Some("web one")
        );
        assert_eq!(query_value("app=a+b%2", "app").as_deref(), Some("a b%2"));
        assert_eq!(query_value("apps=1", "app"), None);
    }
}
