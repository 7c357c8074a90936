//! `sup web`: `/metrics` in Prometheus' text format, read by Prometheus'
//! own Python parser, with the values `list --json` shows; beyond loopback
//! it asks for the token.

use crate::support::*;
use std::io::{Read, Write};
use std::time::Duration;

/// GET `path` with an optional bearer token: (status line, body).
fn fetch(port: u16, path: &str, token: Option<&str>) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The samples of a Prometheus text, as the official parser reads them.
fn parse(text: &str) -> Vec<serde_json::Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/apps/parse_metrics.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'prometheus_client'") {
        assert!(!skip("prometheus-client (PyPI) is not installed"));
        return Vec::new();
    }
    assert!(out.status.success(), "the parser refused it: {err}\n{text}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sample<'a>(
    samples: &'a [serde_json::Value],
    name: &str,
    app: &str,
) -> Option<&'a serde_json::Value> {
    samples
        .iter()
        .find(|s| s["name"] == name && s["labels"]["app"] == app)
        .map(|s| &s["value"])
}

#[test]
fn metrics_parse_match_list_and_need_the_token_beyond_loopback() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "web \"one\"", "-i", "2"]);
    sup.ok(&[
        "start",
        "sh -c 'exit 3'",
        "--name",
        "failing",
        "--restart",
        "no",
    ]);
    sup.wait("online", || all_online(&sup.app("web \"one\""), 2));
    sup.wait("failing stopped", || {
        sup.app("failing")["status"] == "stopped"
    });
    sup.ok(&["restart", "web \"one\""]);
    sup.wait("restarted", || all_online(&sup.app("web \"one\""), 2));
    // Figures are read at most once a second: wait for real ones.
    sup.wait("memory figures", || {
        sup.app("web \"one\"")["instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["memory"].as_u64() > Some(0))
    });
    let port = free_port();
    let out = sup.ok(&["web", "--listen", &format!("127.0.0.1:{port}")]);
    assert!(out.contains("/metrics"), "{out}");
    let (status, body) = fetch(port, "/metrics", None);
    assert!(status.contains("200"), "{status}");
    let samples = parse(&body);
    if samples.is_empty() {
        return;
    }
    let listed = sup.app("web \"one\"");
    let restarts = sample(&samples, "sup_app_restarts_total", "web \"one\"").unwrap();
    assert_eq!(restarts.as_f64(), listed["restarts"].as_f64());
    assert_eq!(
        sample(&samples, "sup_app_up", "web \"one\"")
            .unwrap()
            .as_f64(),
        Some(1.0)
    );
    assert_eq!(
        sample(&samples, "sup_app_instances", "web \"one\"")
            .unwrap()
            .as_f64(),
        Some(2.0)
    );
    assert_eq!(
        sample(&samples, "sup_app_last_exit_code", "failing")
            .unwrap()
            .as_f64(),
        Some(3.0)
    );
    assert_eq!(
        sample(&samples, "sup_app_up", "failing").unwrap().as_f64(),
        Some(0.0)
    );
    let memory: f64 = samples
        .iter()
        .filter(|s| s["name"] == "sup_instance_memory_bytes" && s["labels"]["app"] == "web \"one\"")
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert!(memory > 0.0);
    assert!(samples
        .iter()
        .any(|s| s["name"] == "sup_daemon_apps" && s["value"] == 2.0));
    // Beyond loopback, the token: made now, shown once, kept 0600.
    let wide = free_port();
    let out = sup.ok(&["web", "--listen", &format!(":{wide}")]);
    let token = out
        .split("needs the token ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let kept = sup.home.join("web.token");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), token);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(fetch(wide, "/metrics", None).0.contains("401"));
    assert!(fetch(wide, "/metrics", Some("wrong")).0.contains("401"));
    assert!(fetch(wide, "/metrics", Some(&token)).0.contains("200"));
    assert!(
        fetch(wide, "/livez", None).0.contains("200"),
        "probes need no token"
    );
    let again = sup.ok(&["web", "--listen", &format!(":{}", free_port())]);
    assert!(!again.contains(&token), "shown once: {again}");
    sup.ok(&["web", "--off"]);
    sup.ok(&["kill"]);
}
