//! Restart triggers: stop exit codes, memory limits, cron schedules and
//! file watching.

use crate::support::*;
use std::fs;
use std::time::Duration;

/// Lines of `file` in the scratch dir (an app appends one per start).
fn runs(sup: &Sup, file: &str) -> usize {
    fs::read_to_string(sup.path(file))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn stop_exit_codes_are_not_restarted() {
    let sup = Sup::new();
    let dir = sup.dir.display().to_string();
    let app = sup.script(
        "app.sh",
        &format!("echo run >> {dir}/runs-$CODE.log\nexit \"$CODE\""),
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "three",
        "--stop-exit-codes",
        "0,3",
        "--env",
        "CODE=3",
    ]);
    sup.ok(&[
        "start",
        &app,
        "--name",
        "four",
        "--stop-exit-codes",
        "0,3",
        "--env",
        "CODE=4",
    ]);
    let three = sup.wait_status("three", "stopped");
    assert_eq!(three["restarts"], 0);
    assert_eq!(three["last_exit"], "exit code 3");
    // Another code restarts as usual.
    sup.wait("four restarted", || {
        sup.app("four")["restarts"].as_u64() >= Some(2)
    });
    let page = sup.ok(&["describe", "three"]);
    assert!(
        page.lines()
            .any(|l| l.starts_with("stop exit codes") && l.ends_with(" 0,3")),
        "{page}"
    );
    // The daemon would restart at once; give it the chance to misbehave.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sup.app("three")["status"], "stopped");
    assert_eq!(runs(&sup, "runs-3.log"), 1);
}
