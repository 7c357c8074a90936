//! Alerts to webhooks, against real local HTTP receivers
//! (`tests/apps/receiver.py`): each alert arrives once, within 2 s of its
//! event; a receiver that fails or hangs harms neither the others nor
//! supervision; the body suits Slack-style (JSON with `text`) and
//! ntfy-style (text with a title) receivers.

use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// A receiver process and what it got.
struct Receiver {
    child: Child,
    log: PathBuf,
    port: u16,
}

impl Receiver {
    fn start(sup: &Sup, mode: &str) -> Receiver {
        let port = free_port();
        let log = sup.path(&format!("received-{mode}-{port}.jsonl"));
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/apps/receiver.py");
        let child = Command::new("python3")
            .args([script, &port.to_string(), mode])
            .arg(&log)
            .spawn()
            .unwrap();
        wait_for("the receiver listens", DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Receiver { child, log, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, oldest first.
    fn got(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The JSON bodies so far whose `event` is `kind`.
    fn events(&self, kind: &str) -> Vec<Value> {
        self.got()
            .iter()
            .filter_map(|r| serde_json::from_str::<Value>(r["body"].as_str()?).ok())
            .filter(|b| b["event"] == kind)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When `app`'s last event of `kind` happened (ms since the epoch).
fn event_time(sup: &Sup, app: &str, kind: &str) -> i64 {
    sup.ok(&["events", app, "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["ts_ms"].as_i64())
        .next_back()
        .unwrap_or_else(|| panic!("no {kind} event of {app}"))
}

#[test]
fn trouble_and_recovery_arrive_once_each_and_bad_receivers_harm_nothing() {
    let sup = Sup::new();
    let (good, failing, hanging) = (
        Receiver::start(&sup, "ok"),
        Receiver::start(&sup, "fail"),
        Receiver::start(&sup, "hang"),
    );
    let flag = sup.path("ok-now");
    let app = sup.script(
        "flaky.sh",
        &format!("[ -e {} ] && exec sleep 1000; exit 3", flag.display()),
    );
    let hooks = [good.url("/hook"), failing.url("/"), hanging.url("/")];
    sup.ok(&[
        "start",
        &app,
        "--name",
        "flaky",
        "--max-restarts",
        "2",
        "--backoff-max",
        "20ms",
        "--notify",
        &hooks[0],
        "--notify",
        &hooks[1],
        "--notify",
        &hooks[2],
    ]);
    sup.wait_status("flaky", "errored");
    wait_for("the errored alert", DEADLINE, || {
        !good.events("errored").is_empty()
    });
    let errored = good.events("errored");
    let at = good.got()[0]["t"].as_i64().unwrap();
    let lag = at - event_time(&sup, "flaky", "errored");
    assert!(lag < 2_000, "the alert came {lag} ms after the event");
    assert_eq!(errored[0]["app"], "flaky");
    assert!(
        errored[0]["text"]
            .as_str()
            .unwrap()
            .contains("flaky errored"),
        "{errored:?}"
    );
    // The failing receiver is tried again; the hanging one holds a request.
    wait_for("retries", DEADLINE, || failing.got().len() >= 2);
    wait_for("the hanging receiver got it", DEADLINE, || {
        !hanging.got().is_empty()
    });
    // Supervision goes on meanwhile.
    let other = sup.script("other.sh", "exec sleep 1000");
    sup.ok(&["start", &other, "--name", "other"]);
    let pid = sup.wait_status("other", "online")["pid"].as_u64().unwrap();
    sup.ok(&["restart", "other"]);
    sup.wait("other restarted", || {
        let a = sup.app("other");
        a["status"] == "online" && a["pid"].as_u64() != Some(pid)
    });
    // Recovery is told once.
    std::fs::write(&flag, "").unwrap();
    sup.ok(&["restart", "flaky"]);
    sup.wait_status("flaky", "online");
    wait_for("the recovered alert", DEADLINE, || {
        !good.events("recovered").is_empty()
    });
    // Nothing more comes: no repeat of either.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(good.events("errored").len(), 1, "{:?}", good.got());
    assert_eq!(good.events("recovered").len(), 1, "{:?}", good.got());
    assert_eq!(good.got().len(), 2, "{:?}", good.got());
    assert_eq!(good.got()[0]["path"], "/hook");
    sup.ok(&["kill"]);
}

#[test]
fn a_crash_loop_is_told_once_in_ntfy_form_and_daemon_wide_targets_come_from_sup_toml() {
    let sup = Sup::new();
    let ntfy = Receiver::start(&sup, "ok");
    let wide = Receiver::start(&sup, "ok");
    let app = sup.script("loop.sh", "sleep 0.05; exit 1");
    let file = sup.path("sup.toml");
    std::fs::write(
        &file,
        format!(
            "[daemon]\nnotify = [\"{}\"]\n\n[[app]]\nname = \"looper\"\nscript = \"{app}\"\nrestart_delay_ms = 10\nbackoff_max_ms = 20\nnotify = [\"ntfy+{}\"]\n",
            wide.url("/all"),
            ntfy.url("/sup-alerts"),
        ),
    )
    .unwrap();
    sup.ok(&["start", file.to_str().unwrap()]);
    wait_for("a crash-loop alert", DEADLINE, || !ntfy.got().is_empty());
    wait_for("the daemon-wide one", DEADLINE, || {
        !wide.events("crash-loop").is_empty()
    });
    let first = &ntfy.got()[0];
    assert_eq!(first["path"], "/sup-alerts");
    assert_eq!(first["headers"]["title"], "looper crash-loop");
    assert_eq!(first["headers"]["priority"], "high");
    let body = first["body"].as_str().unwrap();
    assert!(body.starts_with("sup: looper crash-loop on "), "{body}");
    // It keeps looping: no second alert.
    let restarts = sup.app("looper")["restarts"].as_u64().unwrap();
    sup.wait("more restarts", || {
        sup.app("looper")["restarts"].as_u64().unwrap() >= restarts + 5
    });
    assert_eq!(ntfy.got().len(), 1, "{:?}", ntfy.got());
    // The daemon-wide target is kept 0600 and survives a daemon restart.
    use std::os::unix::fs::PermissionsExt;
    let kept = sup.home.join("notify.json");
    assert_eq!(
        std::fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&kept).unwrap().contains("/all"));
    let err = sup.fails(
        &["start", &app, "--name", "x", "--notify", "hooks.example/x"],
        2,
    );
    assert!(err.contains("http://"), "{err}");
    sup.ok(&["kill"]);
    // A new daemon still tells the daemon-wide target, about any app.
    sup.ok(&[
        "start",
        &app,
        "--name",
        "again",
        "--restart-delay",
        "10ms",
        "--backoff-max",
        "20ms",
    ]);
    wait_for("the new daemon's alert", DEADLINE, || {
        wide.events("crash-loop")
            .iter()
            .any(|e| e["app"] == "again")
    });
    sup.ok(&["kill"]);
}
