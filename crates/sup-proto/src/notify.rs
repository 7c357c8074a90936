//! Where alerts go: a webhook URL, optionally with the body's form in
//! front (`ntfy+https://ntfy.sh/topic`). Parsed here so the CLI refuses a
//! bad one before the daemon sees it.

use std::fmt;

/// How an alert's body looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// JSON with a `text` field (what Slack-style receivers show) and the
    /// event's fields.
    Json,
    /// The text as the body, with `Title`, `Priority` and `Tags` headers
    /// (ntfy's own way).
    Ntfy,
}

/// A parsed webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// The body's form.
    pub format: NotifyFormat,
    /// `https` (else plain `http`).
    pub https: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port (80 or 443 unless given).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl NotifyTarget {
    /// Reads `[json+|ntfy+|slack+]http[s]://host[:port][/path]`.
    pub fn parse(text: &str) -> Result<NotifyTarget, String> {
        let bad = |why: &str| Err(format!("notify target {text:?}: {why}"));
        let (format, url) = match text.split_once('+') {
            Some(("json" | "slack", url)) => (NotifyFormat::Json, url),
            Some(("ntfy", url)) => (NotifyFormat::Ntfy, url),
            _ => (NotifyFormat::Json, text),
        };
        let (https, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return bad("an http:// or https:// URL, optionally after json+ or ntfy+"),
        };
        if rest.chars().any(|c| c.is_control() || c == ' ') {
            return bad("a URL cannot hold spaces or control characters");
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return bad("credentials in the URL are not supported; put a token in the path");
        }
        let (host, port) = match split_port(authority) {
            Some(parts) => parts,
            None => return bad("a host, and a port from 1 to 65535 if given"),
        };
        let path = match path.starts_with('?') {
            true => format!("/{path}"),
            false => path.to_string(),
        };
        Ok(NotifyTarget {
            format,
            https,
            host,
            port: port.unwrap_or(if https { 443 } else { 80 }),
            path,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`: the host and the port given.
fn split_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']')?;
            addr.parse::<std::net::Ipv6Addr>().ok()?;
            (addr, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|&p| p > 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

impl fmt::Display for NotifyTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = match self.host.contains(':') {
            true => format!("[{}]", self.host),
            false => self.host.clone(),
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_forms() {
        let t = NotifyTarget::parse("https://hooks.example/T0/B0").unwrap();
        assert_eq!(
            (t.format, t.https, t.host.as_str(), t.port, t.path.as_str()),
            (NotifyFormat::Json, true, "hooks.example", 443, "/T0/B0")
        );
        let t = NotifyTarget::parse("ntfy+http://[::1]:8080?x=1").unwrap();
        assert_eq!(
            (t.format, t.https, t.host.as_str(), t.port, t.path.as_str()),
            (NotifyFormat::Ntfy, false, "::1", 8080, "/?x=1")
        );
        assert_eq!(t.to_string(), "http://[::1]:8080/?x=1");
        assert_eq!(
            NotifyTarget::parse("slack+http://h").unwrap().format,
            NotifyFormat::Json
        );
        for bad in [
            "hooks.example/x",
            "ftp://h/x",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u:p@h/",
            "http://h/a b",
            "http://[zz]/",
        ] {
            assert!(NotifyTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
