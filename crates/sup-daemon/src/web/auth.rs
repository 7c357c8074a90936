//! Who may do what on the web listener. The token is made once, kept 0600
//! in `SUP_HOME` and asked for: by every request that changes state, and
//! by every request but the probes when the listener is beyond loopback.
//! A loopback listener also refuses a `Host` that is not a loopback name
//! or an address, so a web page can't reach it through DNS rebinding.

use hyper::header::{HeaderMap, AUTHORIZATION, HOST};

/// The rules of one listener.
pub struct Guard {
    token: String,
    loopback: bool,
}

/// What a request may not do, and why.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or the wrong one.
    Token,
    /// A `Host` a loopback listener does not answer.
    Host,
}

impl Guard {
    /// The rules for a listener with `token`, on loopback or not.
    pub fn new(token: String, loopback: bool) -> Guard {
        Guard { token, loopback }
    }

    /// Whether a request with `headers` and `query` may go on; `changes`
    /// says whether it changes state.
    pub fn check(&self, headers: &HeaderMap, query: &str, changes: bool) -> Result<(), Refusal> {
        if self.loopback && !headers.get(HOST).is_none_or(|h| local_host(h.as_bytes())) {
            return Err(Refusal::Host);
        }
        if !changes && self.loopback {
            return Ok(());
        }
        let shown = bearer(headers).or_else(|| match changes {
            // A link can carry a query, not a header: a change must not be
            // one click on someone else's page away.
            true => None,
            // The dashboard's event streams: a browser's `EventSource`
            // can't send headers.
            false => super::query_value(query, "token"),
        });
        match shown.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes())) {
            true => Ok(()),
            false => Err(Refusal::Token),
        }
    }
}

/// The token of `Authorization: Bearer …`.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

/// Whether a `Host` header names this machine: `localhost`, or an address
/// (nobody can rebind an address), with or without a port.
fn local_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split(']')
                .next()
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.to_ascii_lowercase().ends_with(".localhost")
        || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Compares tokens in a time that doesn't depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The listener's token, made at first need (0600 in `SUP_HOME`): the
/// token, and whether it was made now (it is shown once).
pub fn token(home: &sup_home::Home) -> std::io::Result<(String, bool)> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = home.web_token();
    if let Ok(text) = std::fs::read_to_string(&path) {
        if !text.trim().is_empty() {
            return Ok((text.trim().to_string(), false));
        }
        std::fs::remove_file(&path)?;
    }
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(host: &str, auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(a) = auth {
            h.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn loopback_reads_are_free_changes_need_the_header() {
        let g = Guard::new("t0k".into(), true);
        assert_eq!(g.check(&headers("127.0.0.1:9615", None), "", false), Ok(()));
        assert_eq!(g.check(&headers("localhost", None), "", false), Ok(()));
        assert_eq!(g.check(&headers("[::1]:80", None), "", false), Ok(()));
        assert_eq!(
            g.check(&headers("evil.example:9615", None), "", false),
            Err(Refusal::Host)
        );
        assert_eq!(
            g.check(&headers("localhost", None), "token=t0k", true),
            Err(Refusal::Token)
        );
        assert_eq!(
            g.check(&headers("localhost", Some("Bearer t0x")), "", true),
            Err(Refusal::Token)
        );
        assert_eq!(
            g.check(&headers("localhost", Some("Bearer t0k")), "", true),
            Ok(())
        );
    }

    #[test]
    fn beyond_loopback_everything_needs_it_and_any_host_goes() {
        let g = Guard::new("t0k".into(), false);
        assert_eq!(
            g.check(&headers("box.example", None), "", false),
            Err(Refusal::Token)
        );
        assert_eq!(
            g.check(&headers("box.example", None), "a=1&token=t0k", false),
            Ok(())
        );
        assert_eq!(
            g.check(&headers("box.example", Some("Bearer t0k")), "", true),
            Ok(())
        );
        assert_eq!(
            g.check(&headers("box.example", Some("Bearer t0")), "", false),
            Err(Refusal::Token)
        );
    }
}
