//! What a new user hit: bad durations, a hung daemon, long names, several
//! targets at once.

use crate::support::*;
use std::time::{Duration, Instant};

#[test]
fn a_negative_duration_says_what_is_wrong() {
    let sup = Sup::new();
    for flag in ["--health-interval", "--kill-timeout", "--restart-delay"] {
        let err = sup.fails(&["start", "x", flag, "-1s"], 2);
        assert!(
            err.contains("must not be negative") && err.contains("5s"),
            "{flag}: {err}"
        );
    }
    let err = sup.fails(&["start", "x", "--kill-timeout", "1.5s"], 2);
    assert!(err.contains("whole numbers"), "{err}");
    // Nothing was started for a usage error.
    assert!(sup.daemon_pid().is_none());
}

#[test]
fn a_stopped_daemon_times_out_naming_its_pid() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    let daemon = sup.daemon_pid().expect("a daemon runs");
    signal(daemon, libc::SIGSTOP);
    let timed = |args: &[&str], within: Duration| {
        let started = Instant::now();
        let out = sup.run(args);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(took < within, "sup {args:?} took {took:?}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "sup {args:?}: {stderr}");
        assert!(stderr.contains(&format!("pid {daemon}")), "{stderr}");
        took
    };
    let took = timed(&["list", "--timeout", "1s"], Duration::from_secs(4));
    assert!(took >= Duration::from_secs(1), "{took:?}");
    // The default for a plain request is a few seconds.
    timed(&["list"], Duration::from_secs(9));
    // A command that waits for apps asks first, and times out the same way.
    timed(
        &["stop", "api", "--timeout", "500ms"],
        Duration::from_secs(4),
    );
    signal(daemon, libc::SIGCONT);
    assert_eq!(sup.app("api")["status"], "online");
}

#[test]
fn list_fits_long_names_to_the_width() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    let long = "an-application-with-a-name-of-40-letters";
    sup.ok(&["start", &app, "--name", long]);
    let list = |args: &[&str], columns: Option<&str>| {
        let mut cmd = sup.command(args);
        match columns {
            Some(c) => cmd.env("COLUMNS", c),
            None => cmd.env_remove("COLUMNS"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let fitted = list(&["list"], Some("80"));
    assert!(
        fitted.lines().all(|l| l.chars().count() <= 80),
        "a line is wider than 80:\n{fitted}"
    );
    assert!(fitted.contains('…') && !fitted.contains(long), "{fitted}");
    let wide = list(&["list", "--wide"], Some("80"));
    assert!(wide.contains(long), "{wide}");
    // Piped, without COLUMNS: full names, for grep.
    let piped = list(&["list"], None);
    assert!(piped.contains(long), "{piped}");
}

#[test]
fn several_targets_at_once() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    for name in ["web", "web2", "web3"] {
        sup.ok(&["start", &app, "--name", name]);
    }
    let out = sup.ok(&["stop", "web", "web2"]);
    assert!(
        out.contains("stopped web ") && out.contains("stopped web2 "),
        "{out}"
    );
    assert_eq!(sup.app("web")["status"], "stopped");
    assert_eq!(sup.app("web2")["status"], "stopped");
    assert_eq!(sup.app("web3")["status"], "online");

    // An unknown target is reported; the others are still applied.
    let out = sup.run(&["restart", "web", "nope", "web2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nope") && stderr.contains("1 of 3"),
        "{stderr}"
    );
    assert_eq!(sup.app("web")["status"], "online");
    assert_eq!(sup.app("web2")["status"], "online");

    let pids = sup.ok(&["pid", "web", "web2"]);
    assert_eq!(pids.lines().count(), 2, "{pids}");
    let described: serde_json::Value =
        serde_json::from_str(&sup.ok(&["describe", "web", "web3", "--json"])).unwrap();
    assert_eq!(described.as_array().unwrap().len(), 2, "{described}");
    sup.ok(&["flush", "web", "web2"]);
    let out = sup.ok(&["delete", "web", "web2"]);
    assert!(out.contains("deleted") && out.contains("web2"), "{out}");
    let names: Vec<String> = sup.list().iter().map(|a| a["name"].to_string()).collect();
    assert_eq!(names, ["\"web3\""]);
}

#[test]
fn spec_flags_on_an_existing_app_are_refused_not_ignored() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    sup.ok(&["stop", "api"]);
    let err = sup.fails(&["start", "api", "--env", "MODE=new"], 2);
    assert!(
        err.contains("--env") && err.contains("sup delete api && sup start"),
        "{err}"
    );
    // Nothing happened: still stopped, and its spec has no MODE.
    let described: serde_json::Value =
        serde_json::from_str(&sup.ok(&["describe", "api", "--json"])).unwrap();
    assert_eq!(described[0]["status"], "stopped");
    assert!(described[0]["spec"]["env"].get("MODE").is_none());
    // Without spec flags, the known app starts as before.
    sup.ok(&["start", "api", "--wait"]);
    sup.wait_status("api", "online");
}
