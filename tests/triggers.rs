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

/// The detail of `app`'s events of `kind`, oldest first.
fn events(sup: &Sup, app: &str, kind: &str) -> Vec<String> {
    let out = sup.ok(&["events", app, "--json"]);
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| match v {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        })
        .filter(|e| e["kind"] == kind)
        .map(|e| e["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn restarts(sup: &Sup, app: &str) -> u64 {
    sup.app(app)["restarts"].as_u64().unwrap_or(0)
}

#[test]
fn an_app_over_its_memory_limit_is_restarted_with_the_reason() {
    let sup = Sup::new();
    // Grows by 4 MiB (written, so resident) every 100 ms.
    let grow =
        "import time\nb = []\nwhile True:\n    b.append(b'x' * (4 << 20))\n    time.sleep(0.1)\n";
    fs::write(sup.path("grow.py"), grow).unwrap();
    sup.ok(&["start", "grow.py", "--max-memory", "64M"]);
    sup.wait("a restart for memory", || restarts(&sup, "grow") >= 1);
    let why = events(&sup, "grow", "triggered");
    assert!(
        why.iter()
            .any(|d| d.starts_with("max memory: instance 0")
                && d.contains("over 64 MiB; restarting")),
        "{why:?}"
    );
    let page = sup.ok(&["describe", "grow"]);
    assert!(
        page.contains("max memory") && page.contains("64.0 MiB"),
        "{page}"
    );
}

#[test]
fn a_cron_schedule_restarts_the_app() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    // Six fields: every second second.
    sup.ok(&[
        "start",
        &app,
        "--name",
        "nightly",
        "--cron-restart",
        "*/2 * * * * *",
    ]);
    sup.wait("a cron restart", || restarts(&sup, "nightly") >= 1);
    let why = events(&sup, "nightly", "triggered");
    assert!(
        why.iter().any(|d| d == "cron */2 * * * * *; restarting"),
        "{why:?}"
    );
    // It keeps firing: re-armed after each.
    sup.wait("a second cron restart", || restarts(&sup, "nightly") >= 2);
}

#[test]
fn a_bad_cron_or_size_is_refused_at_the_cli() {
    let sup = Sup::new();
    let err = sup.fails(&["start", "x.sh", "--cron-restart", "0 3 * *"], 2);
    assert!(err.contains("invalid cron expression"), "{err}");
    let err = sup.fails(&["start", "x.sh", "--max-memory", "lots"], 2);
    assert!(err.contains("--max-memory"), "{err}");
    assert!(sup.daemon_pid().is_none(), "no daemon was needed");
}

/// An app watching `src` (made here) with a short delay.
fn watching(sup: &Sup, extra: &[&str]) {
    fs::create_dir_all(sup.path("src")).unwrap();
    let app = sup.script("app.sh", "exec sleep 1000");
    let mut args = vec![
        "start",
        &app,
        "--name",
        "w",
        "--watch",
        "src",
        "--watch-delay",
        "300ms",
    ];
    args.extend_from_slice(extra);
    sup.ok(&args);
    sup.wait_status("w", "online");
}

/// Long enough for a debounced change to have restarted the app.
fn past_the_delay() {
    std::thread::sleep(Duration::from_millis(1_000));
}

#[test]
fn a_burst_of_edits_restarts_once() {
    let sup = Sup::new();
    watching(&sup, &[]);
    for i in 0..20 {
        fs::write(sup.path("src/a.js"), format!("// {i}")).unwrap();
    }
    sup.wait("a watch restart", || restarts(&sup, "w") == 1);
    past_the_delay();
    assert_eq!(restarts(&sup, "w"), 1);
    let why = events(&sup, "w", "triggered");
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].starts_with("watch: ") && why[0].ends_with("src/a.js changed; restarting"),
        "{why:?}"
    );
}

#[test]
fn ignored_paths_do_not_restart_and_a_missing_path_is_reported() {
    let sup = Sup::new();
    fs::create_dir_all(sup.path("src/node_modules/x")).unwrap();
    watching(&sup, &["--ignore-watch", "*.tmp", "--watch", "nope"]);
    fs::write(sup.path("src/a.tmp"), "x").unwrap();
    fs::write(sup.path("src/node_modules/x/i.js"), "x").unwrap();
    past_the_delay();
    assert_eq!(restarts(&sup, "w"), 0);
    assert_eq!(sup.app("w")["status"], "online");
    let failed = events(&sup, "w", "watch-failed");
    assert!(failed.iter().any(|d| d.contains("/nope: ")), "{failed:?}");
    // A change that counts still restarts: the watch works.
    fs::write(sup.path("src/a.js"), "x").unwrap();
    sup.wait("a watch restart", || restarts(&sup, "w") == 1);
}

#[test]
fn a_new_subdirectory_is_watched() {
    let sup = Sup::new();
    watching(&sup, &[]);
    fs::create_dir_all(sup.path("src/new/deeper")).unwrap();
    sup.wait("the new directory restarts", || restarts(&sup, "w") == 1);
    past_the_delay();
    fs::write(sup.path("src/new/deeper/f.js"), "x").unwrap();
    sup.wait("a change inside restarts", || restarts(&sup, "w") == 2);
    // A deleted directory is no trouble either.
    fs::remove_dir_all(sup.path("src/new")).unwrap();
    sup.wait("the deletion restarts", || restarts(&sup, "w") == 3);
    past_the_delay();
    fs::write(sup.path("src/b.js"), "x").unwrap();
    sup.wait("the watch goes on", || restarts(&sup, "w") == 4);
}

#[test]
fn a_watched_file_saved_by_rename_is_watched_again() {
    let sup = Sup::new();
    fs::write(sup.path("config.json"), "{}").unwrap();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&[
        "start",
        &app,
        "--name",
        "w",
        "--watch",
        "config.json",
        "--watch-delay",
        "300ms",
    ]);
    sup.wait_status("w", "online");
    // As editors save: a new file renamed over the old one, twice.
    for n in 1..=2 {
        fs::write(sup.path(".config.json.swp"), format!("{{\"n\":{n}}}")).unwrap();
        fs::rename(sup.path(".config.json.swp"), sup.path("config.json")).unwrap();
        sup.wait("a restart per save", || restarts(&sup, "w") == n);
        past_the_delay();
    }
    assert_eq!(restarts(&sup, "w"), 2);
}

#[test]
fn a_watched_directory_deleted_and_made_again_is_watched_again() {
    let sup = Sup::new();
    watching(&sup, &[]);
    fs::remove_dir_all(sup.path("src")).unwrap();
    sup.wait("the deletion restarts", || restarts(&sup, "w") == 1);
    past_the_delay();
    fs::create_dir(sup.path("src")).unwrap();
    sup.wait("the new directory restarts", || restarts(&sup, "w") == 2);
    past_the_delay();
    fs::write(sup.path("src/a.js"), "x").unwrap();
    sup.wait("a change inside the new directory restarts", || {
        restarts(&sup, "w") == 3
    });
}
