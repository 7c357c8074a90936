//! `sup web`: `/metrics` in Prometheus' text format, read by Prometheus'
//! own Python parser, with the values `list --json` shows; the token the
//! dashboard's actions (and everything beyond loopback) need; the live
//! log stream. The dashboard in a real browser is `tests/dashboard.rs`.

use crate::support::*;
use std::io::{Read, Write};
use std::time::Duration;

/// GET `path` with an optional bearer token: (status line, body).
fn fetch(port: u16, path: &str, token: Option<&str>) -> (String, String) {
    request(port, "GET", path, token, "127.0.0.1")
}

/// One request on its own connection: (status line, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    host: &str,
) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The token a first `sup web` shows.
fn shown_token(out: &str) -> String {
    out.split("need the token ")
        .chain(out.split("needs the token "))
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no token shown: {out}"))
        .to_string()
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
        skip("prometheus-client (PyPI) is not installed");
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
    // One that works a little and says so: CPU seconds and log bytes.
    let talker = sup.script(
        "talker.sh",
        "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo done-counting; exec sleep 1000",
    );
    sup.ok(&["start", &talker, "--name", "talker"]);
    sup.wait("the talker's line", || {
        std::fs::read_to_string(sup.home.join("logs/talker-out.log"))
            .is_ok_and(|t| t.contains("done-counting"))
    });
    // Figures are read at most once a second (the start's answer read
    // them at 0): wait for a reading after the work.
    sup.wait("the talker's CPU time", || {
        sup.app("talker")["instances"][0]["cpu_seconds"].as_f64() > Some(0.0)
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
        .any(|s| s["name"] == "sup_daemon_apps" && s["value"] == 3.0));
    let logged = sample(&samples, "sup_app_log_bytes_total", "talker").unwrap();
    assert!(
        logged.as_f64().unwrap() >= "done-counting\n".len() as f64,
        "{logged}"
    );
    let cpu = samples
        .iter()
        .find(|s| s["name"] == "sup_instance_cpu_seconds_total" && s["labels"]["app"] == "talker")
        .unwrap();
    assert!(cpu["value"].as_f64().unwrap() > 0.0, "{cpu}");
    // The token: made by the first `sup web`, shown once, kept 0600.
    let token = shown_token(&out);
    let kept = sup.home.join("web.token");
    assert_eq!(std::fs::read_to_string(&kept).unwrap().trim(), token);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Beyond loopback everything but the probes needs it.
    let wide = free_port();
    let again = sup.ok(&["web", "--listen", &format!(":{wide}")]);
    assert!(!again.contains(&token), "shown once: {again}");
    assert!(again.contains("web.token"), "{again}");
    assert!(fetch(wide, "/metrics", None).0.contains("401"));
    assert!(fetch(wide, "/metrics", Some("wrong")).0.contains("401"));
    assert!(fetch(wide, "/metrics", Some(&token)).0.contains("200"));
    assert!(
        fetch(wide, "/livez", None).0.contains("200"),
        "probes need no token"
    );
    sup.ok(&["web", "--off"]);
    sup.ok(&["kill"]);
}

#[test]
fn the_token_guards_changes_always_and_everything_beyond_loopback() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    let pid = sup.wait_status("api", "online")["pid"].as_u64().unwrap();
    let id = sup.app("api")["id"].as_u64().unwrap();
    let port = free_port();
    let token = shown_token(&sup.ok(&["web", "--listen", &format!("127.0.0.1:{port}")]));
    let restart = format!("/api/apps/{id}/restart");
    // Loopback: reads are free; the page and the list are served.
    let (status, page) = fetch(port, "/", None);
    assert!(
        status.contains("200") && page.contains("<title>sup</title>"),
        "{status}"
    );
    let (status, apps) = fetch(port, "/api/apps", None);
    assert!(status.contains("200"), "{status}");
    let apps: serde_json::Value = serde_json::from_str(&apps).unwrap();
    assert_eq!(apps[0]["name"], "api");
    // A change needs the token, in the header: none, a wrong one, or one
    // in the query (a link someone else could make) is refused.
    for (token, path) in [
        (None, restart.clone()),
        (Some("wrong"), restart.clone()),
        (None, format!("{restart}?token={token}")),
    ] {
        let (status, body) = request(port, "POST", &path, token, "127.0.0.1");
        assert!(status.contains("401"), "{status} {body}");
    }
    assert_eq!(sup.pid("api") as u64, pid, "a refused restart restarted");
    // A page elsewhere that rebinds its name to 127.0.0.1 is refused.
    let (status, _) = request(port, "GET", "/api/apps", None, "rebind.example:80");
    assert!(status.contains("403"), "{status}");
    let (status, body) = request(port, "POST", &restart, Some(&token), "localhost");
    assert!(status.contains("200"), "{status} {body}");
    sup.wait("restarted", || {
        let app = sup.app("api");
        app["status"] == "online" && app["pid"].as_u64() != Some(pid)
    });
    let (status, _) = request(
        port,
        "POST",
        "/api/apps/999/stop",
        Some(&token),
        "localhost",
    );
    assert!(status.contains("404"), "{status}");
    // Beyond loopback: everything but the probes, by header or by query
    // for reads (a browser's event stream can't send headers).
    let wide = free_port();
    sup.ok(&["web", "--listen", &format!(":{wide}")]);
    for path in [
        "/",
        "/api/apps",
        "/api/events",
        "/metrics",
        &format!("/api/logs?app={id}"),
    ] {
        let (status, _) = request(wide, "GET", path, None, "box.example");
        assert!(status.contains("401"), "{path}: {status}");
    }
    let (status, _) = request(
        wide,
        "GET",
        &format!("/api/apps?token={token}"),
        None,
        "box.example",
    );
    assert!(status.contains("200"), "{status}");
    let (status, _) = request(wide, "GET", "/readyz", None, "box.example");
    assert!(status.contains("200"), "{status}");
    sup.ok(&["kill"]);
    // Off with no daemon: said, and no daemon started for it.
    assert!(sup.ok(&["web", "--off"]).contains("no daemon running"));
    assert_eq!(sup.daemon_pid(), None);
}

#[test]
fn the_log_stream_sends_recent_lines_then_live_ones() {
    let sup = Sup::new();
    let app = sup.script(
        "talk.sh",
        "echo before; trap 'echo after-$1' USR1; while :; do sleep 0.05; done",
    );
    sup.ok(&["start", &app, "--name", "talk"]);
    let pid = sup.wait_status("talk", "online")["pid"].as_u64().unwrap();
    let id = sup.app("talk")["id"].as_u64().unwrap();
    sup.wait("first line", || {
        std::fs::read_to_string(sup.home.join("logs/talk-out.log"))
            .is_ok_and(|t| t.contains("before"))
    });
    let port = free_port();
    sup.ok(&["web", "--listen", &format!("127.0.0.1:{port}")]);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /api/logs?app={id} HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut seen = String::new();
    let mut read_until = |want: &str, seen: &mut String| {
        wait_for(want, DEADLINE, || {
            let mut buf = [0u8; 4096];
            if let Ok(n) = s.read(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            seen.contains(want)
        })
    };
    read_until("before", &mut seen);
    assert!(seen.contains("text/event-stream"), "{seen}");
    signal(pid as u32, libc::SIGUSR1);
    read_until("after-", &mut seen);
    let line = seen
        .lines()
        .find(|l| l.contains("after-"))
        .unwrap()
        .strip_prefix("data: ")
        .unwrap();
    let message: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(message["stream"], "out");
    sup.ok(&["kill"]);
}
