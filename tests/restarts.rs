//! Restart policies, backoff and max-restarts.

use crate::support::*;
use std::fs;
use std::time::Duration;

/// Start times (ms since the epoch) an app wrote, one line per run.
fn starts(sup: &Sup, file: &str) -> Vec<u64> {
    fs::read_to_string(sup.path(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A script that records each start in `file`, then runs `rest`.
fn recording(sup: &Sup, name: &str, file: &str, rest: &str) -> String {
    let log = sup.path(file).display().to_string();
    sup.script(name, &format!("date +%s%3N >> {log}\n{rest}"))
}

#[test]
fn on_failure_restarts_a_failure_but_not_a_success() {
    let sup = Sup::new();
    let fail = recording(&sup, "fail.sh", "fail.log", "sleep 0.1; exit 1");
    let succeed = recording(&sup, "ok.sh", "ok.log", "exit 0");
    sup.ok(&["start", &fail, "--name", "fail", "--restart", "on-failure"]);
    sup.ok(&["start", &succeed, "--name", "ok", "--restart", "on-failure"]);
    sup.wait("fail restarted twice", || {
        sup.app("fail")["restarts"].as_u64() >= Some(2)
    });
    let ok = sup.wait_status("ok", "stopped");
    assert_eq!(ok["restarts"], 0);
    assert!(sup.ok(&["describe", "ok"]).contains("exit code 0"));
    assert_eq!(starts(&sup, "ok.log").len(), 1);
}

#[test]
fn on_failure_restarts_after_a_signal() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api", "--restart", "on-failure"]);
    let pid = sup.pid("api");
    signal(pid, libc::SIGTERM);
    sup.wait("restarted", || sup.app("api")["restarts"] == 1);
    sup.wait_status("api", "online");
}

#[test]
fn policy_no_never_restarts() {
    let sup = Sup::new();
    let app = recording(&sup, "app.sh", "no.log", "exit 3");
    sup.ok(&["start", &app, "--name", "once", "--restart", "no"]);
    let app = sup.wait_status("once", "stopped");
    assert_eq!(app["restarts"], 0);
    assert_eq!(app["last_exit"], "exit code 3");
    // The daemon would restart at once; give it the chance to misbehave.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(starts(&sup, "no.log").len(), 1);
    assert_eq!(sup.app("once")["status"], "stopped");
}

#[test]
fn backoff_grows_then_resets_after_min_uptime() {
    let sup = Sup::new();
    // Runs 1-4 crash at once; run 5 stays up past min-uptime, then crashes;
    // run 6 stays up.
    let count = sup.path("count").display().to_string();
    let app = recording(
        &sup,
        "flaky.sh",
        "flaky.log",
        &format!(
            "n=$(($(cat {count} 2>/dev/null || echo 0) + 1)); echo $n > {count}\n\
             if [ $n -le 4 ]; then exit 1; fi\n\
             if [ $n -eq 5 ]; then sleep 0.6; date +%s%3N > {count}.end; exit 1; fi\n\
             exec sleep 1000"
        ),
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "flaky",
        "--min-uptime",
        "300ms",
        "--backoff-max",
        "10s",
    ]);
    sup.wait("six runs", || starts(&sup, "flaky.log").len() >= 6);
    let t = starts(&sup, "flaky.log");
    let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    // First restart at once, then 100 ms, 200 ms, 400 ms (lower bounds are
    // exact; upper bounds leave room for a busy machine).
    assert!(gaps[0] < 100, "first restart should be immediate: {gaps:?}");
    assert!((100..600).contains(&gaps[1]), "{gaps:?}");
    assert!((200..700).contains(&gaps[2]), "{gaps:?}");
    assert!((400..900).contains(&gaps[3]), "{gaps:?}");
    // Run 5 was stable: the backoff reset, so run 6 followed at once
    // (without the reset it would have waited 800 ms).
    let end: u64 = fs::read_to_string(format!("{count}.end"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        t[5] - end < 400,
        "restart after a stable run took {} ms",
        t[5] - end
    );
    let app = sup.wait_status("flaky", "online");
    assert_eq!(app["restarts"], 5);
}

#[test]
fn waiting_restart_is_visible_and_cancelled_by_stop() {
    let sup = Sup::new();
    let app = sup.script("crash.sh", "exit 1");
    sup.ok(&["start", &app, "--name", "crash", "--restart-delay", "5s"]);
    let app = sup.wait_status("crash", "waiting-restart");
    assert!(app["restart_in_ms"].as_u64().unwrap() > 1000, "{app}");
    assert!(app["pid"].is_null());
    sup.ok(&["stop", "crash"]);
    assert_eq!(sup.app("crash")["status"], "stopped");
}

#[test]
fn max_restarts_turns_errored() {
    let sup = Sup::new();
    let app = recording(&sup, "crash.sh", "crash.log", "exit 1");
    sup.ok(&[
        "start",
        &app,
        "--name",
        "crash",
        "--max-restarts",
        "3",
        "--backoff-max",
        "20ms",
    ]);
    let app = sup.wait_status("crash", "errored");
    assert_eq!(app["restarts"], 3);
    assert!(
        app["error"].as_str().unwrap().contains("max-restarts 3"),
        "{app}"
    );
    assert_eq!(starts(&sup, "crash.log").len(), 4);
    let page = sup.ok(&["describe", "crash"]);
    assert!(
        page.contains("errored") && page.contains("gave up"),
        "{page}"
    );
}
