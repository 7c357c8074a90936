//! One HTTP POST to a webhook, over plain TCP or TLS (rustls, with the
//! system's CA certificates), with a deadline for the whole exchange.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use sup_proto::notify::NotifyTarget;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Longest time one attempt may take, connect to answer.
pub const ATTEMPT_DEADLINE: Duration = Duration::from_secs(5);

/// Why an attempt failed, and whether another may succeed.
#[derive(Debug)]
pub struct Failure {
    /// For the daemon's log.
    pub why: String,
    /// A network error, a timeout, 429 or 5xx: worth a retry.
    pub retry: bool,
}

/// POSTs `body` with `headers` to `target`; Ok once it answered 2xx.
pub async fn post(
    target: &NotifyTarget,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<(), Failure> {
    let attempt = async {
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| retry(format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let request = request(target, headers, body)?;
        let status = match target.https {
            true => exchange(tls(tcp, &target.host).await?, request).await?,
            false => exchange(tcp, request).await?,
        };
        match status.as_u16() {
            200..=299 => Ok(()),
            code => Err(Failure {
                why: format!("answered {status}"),
                retry: code == 429 || code >= 500,
            }),
        }
    };
    match tokio::time::timeout(ATTEMPT_DEADLINE, attempt).await {
        Ok(result) => result,
        Err(_) => Err(retry(format!(
            "no answer within {} s",
            ATTEMPT_DEADLINE.as_secs()
        ))),
    }
}

fn retry(why: String) -> Failure {
    Failure { why, retry: true }
}

fn request(
    target: &NotifyTarget,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, Failure> {
    let default_port = if target.https { 443 } else { 80 };
    let host = match (target.host.contains(':'), target.port == default_port) {
        (true, true) => format!("[{}]", target.host),
        (true, false) => format!("[{}]:{}", target.host, target.port),
        (false, true) => target.host.clone(),
        (false, false) => format!("{}:{}", target.host, target.port),
    };
    let mut builder = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::USER_AGENT,
            format!("sup/{}", sup_proto::SUP_VERSION),
        );
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| Failure {
            why: format!("cannot make the request: {e}"),
            retry: false,
        })
}

/// Sends `request` on `io` and returns the answer's status.
async fn exchange<S>(
    io: S,
    request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::StatusCode, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| retry(format!("handshake: {e}")))?;
    let conn = tokio::spawn(conn);
    let answer = sender.send_request(request).await;
    conn.abort();
    answer
        .map(|r| r.status())
        .map_err(|e| retry(format!("request: {e}")))
}

/// TLS over `tcp` to `host`, checked against the system's CAs.
async fn tls(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let config = client_config().map_err(|why| Failure { why, retry: false })?;
    let name = rustls_pki_types_name(host)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| retry(format!("TLS: {e}")))
}

fn rustls_pki_types_name(
    host: &str,
) -> Result<tokio_rustls::rustls::pki_types::ServerName<'static>, Failure> {
    tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| Failure {
        why: format!("{host}: not a name TLS can check: {e}"),
        retry: false,
    })
}

/// The TLS client settings, made once: the system's CA certificates.
fn client_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err("no CA certificates found on this system (install ca-certificates, or set SSL_CERT_FILE)".into());
            }
            // ring builds with a C compiler alone (aws-lc-rs wants cmake
            // too); rustls marks it deprecated for lacking post-quantum key
            // exchange, which a webhook's alert text does not call for.
            #[allow(deprecated)]
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("TLS settings: {e}"))
        })
        .clone()
}
