//! save, resurrect, a daemon that dies, the systemd unit, and `sup update`.

use crate::support::*;
use std::fs;
use std::process::Command;

fn spec_of(sup: &Sup, name: &str) -> serde_json::Value {
    let d: serde_json::Value =
        serde_json::from_str(&sup.ok(&["describe", name, "--json"])).unwrap();
    d[0]["spec"].clone()
}

#[test]
fn save_kill_resurrect_brings_back_the_same_apps() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.command(&[
        "start",
        &app,
        "--name",
        "always",
        "--env",
        "GREETING=hello world",
        "--kill-timeout",
        "3s",
    ])
    .env("FROM_SHELL", "yes")
    .status()
    .unwrap();
    sup.ok(&[
        "start",
        &app,
        "--name",
        "unless",
        "--restart",
        "unless-stopped",
    ]);
    sup.ok(&[
        "start",
        &app,
        "--name",
        "unless-up",
        "--restart",
        "unless-stopped",
    ]);
    sup.ok(&["start", &app, "--name", "onfail", "--restart", "on-failure"]);
    sup.ok(&["start", &app, "--name", "always-stopped"]);
    sup.ok(&["stop", "unless"]);
    sup.ok(&["stop", "always-stopped"]);
    let before: Vec<serde_json::Value> =
        ["always", "unless", "unless-up", "onfail", "always-stopped"]
            .iter()
            .map(|n| spec_of(&sup, n))
            .collect();
    let ids: Vec<u64> = sup
        .list()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    let out = sup.ok(&["save"]);
    assert!(out.contains("saved 5 apps"), "{out}");
    sup.ok(&["kill"]);
    assert!(processes_with_home(&sup.home).is_empty());

    let out = sup.ok(&["resurrect"]);
    assert!(
        out.contains("4 started") && out.contains("1 kept stopped"),
        "{out}"
    );
    let list = sup.list();
    let status = |name: &str| {
        list.iter().find(|a| a["name"] == name).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status("always"), "online");
    assert_eq!(
        status("unless"),
        "stopped",
        "unless-stopped remembers the user's stop"
    );
    assert_eq!(status("unless-up"), "online");
    assert_eq!(status("onfail"), "online");
    assert_eq!(
        status("always-stopped"),
        "online",
        "always comes back, as in Docker"
    );
    let after: Vec<serde_json::Value> =
        ["always", "unless", "unless-up", "onfail", "always-stopped"]
            .iter()
            .map(|n| spec_of(&sup, n))
            .collect();
    assert_eq!(
        before, after,
        "specs (env, cwd, limits) survive save and resurrect"
    );
    assert_eq!(after[0]["env"]["GREETING"], "hello world");
    assert_eq!(
        after[0]["inherited_env"]["FROM_SHELL"], "yes",
        "the shell's env is kept apart from the declared"
    );
    let ids_after: Vec<u64> = sup
        .list()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, ids_after, "ids are stable");
    // Names already running are not duplicated.
    let out = sup.ok(&["resurrect"]);
    assert!(out.contains("5 already running"), "{out}");
    assert_eq!(sup.list().len(), 5);
}

#[test]
fn a_corrupt_dump_falls_back_to_the_backup_loudly() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "first"]);
    let out = sup.ok(&["save"]);
    assert!(
        out.contains("saved 1 app to"),
        "one app, in the singular: {out}"
    );
    sup.ok(&["start", &app, "--name", "second"]);
    sup.ok(&["save"]);
    sup.ok(&["kill"]);
    fs::write(
        sup.home.join("dump.json"),
        "{\"version\": 1, \"apps\": [trunc",
    )
    .unwrap();
    let out = sup.run(&["resurrect"]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("resurrected 1 app:"), "{said}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning") && err.contains("dump.json") && err.contains("dump.json.bak"),
        "{err}"
    );
    let names: Vec<String> = sup
        .list()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["first"]);
    assert!(sup.ok(&["describe", "first"]).contains("dump warning"));
    // Nothing was overwritten: the corrupt dump is still there for the user to look at.
    assert!(fs::read_to_string(sup.home.join("dump.json"))
        .unwrap()
        .contains("trunc"));
}

#[test]
fn dump_errors_are_clear() {
    let sup = Sup::new();
    let err = sup.fails(&["resurrect"], 1);
    assert!(
        err.contains("no saved apps") && err.contains("dump.json"),
        "{err}"
    );
    // resurrect without a dump starts no daemon.
    assert!(sup.daemon_pid().is_none());
    // A daemon with no apps.
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app]);
    sup.ok(&["delete", "all"]);
    let err = sup.fails(&["save"], 1);
    assert!(err.contains("--force"), "{err}");
    sup.ok(&["save", "--force"]);
    fs::write(
        sup.home.join("dump.json"),
        r#"{"version": 9, "sup": "9.1.0", "apps": []}"#,
    )
    .unwrap();
    let err = sup.fails(&["resurrect"], 1);
    assert!(err.contains("9.1.0") && err.contains("upgrade"), "{err}");
}

#[test]
fn a_killed_daemon_leaves_no_duplicate_and_no_orphan() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    for i in 0..10 {
        sup.ok(&["start", &app, "--name", &format!("app{i}")]);
    }
    let old_pids: Vec<u32> = sup
        .list()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap() as u32)
        .collect();
    let daemon = sup.daemon_pid().unwrap();
    // Let the state writer catch up with the last start.
    wait_for("live state lists 10 running apps", DEADLINE, || {
        live_state(&sup).matches("\"start_time\"").count() == 10
    });
    signal(daemon, libc::SIGKILL);
    wait_for("daemon gone", DEADLINE, || !alive(daemon));
    assert!(
        old_pids.iter().all(|p| alive(*p)),
        "the apps outlive a SIGKILLed daemon"
    );
    // Any command brings up a new daemon, which cleans up after the old one.
    let list = sup.list();
    assert_eq!(list.len(), 10, "{list:?}");
    let names: std::collections::BTreeSet<String> = list
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 10, "no duplicate names");
    wait_for("every app online again", DEADLINE, || {
        sup.list().iter().all(|a| a["status"] == "online")
    });
    for pid in &old_pids {
        assert!(!alive(*pid), "old instance {pid} survived");
    }
    let new_daemon = sup.daemon_pid().unwrap();
    let running = processes_with_home(&sup.home);
    assert_eq!(running.len(), 11, "10 apps and one daemon: {running:?}");
    assert!(running.contains(&new_daemon));
}

#[test]
fn the_printed_unit_passes_systemd_analyze() {
    let sup = Sup::new();
    let unit = sup.ok(&["startup", "--print"]);
    assert!(
        unit.contains("Type=notify") && unit.contains("ExecStart=") && unit.contains("--resurrect"),
        "{unit}"
    );
    assert!(
        unit.contains(&format!("SUP_HOME={}", sup.home.display())),
        "{unit}"
    );
    let path = sup.path("sup-test.service");
    fs::write(&path, &unit).unwrap();
    match Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
    {
        // It exits 0 on mere warnings: none is allowed either.
        Ok(out) => assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify complained:\n{}\n{unit}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            skip(&format!("systemd-analyze unavailable: {e}"));
        }
    }
    let err = sup.fails(&["startup", "upstart"], 1);
    assert!(err.contains("supported: systemd"), "{err}");
    if !std::path::Path::new("/run/systemd/system").exists() {
        let err = sup.fails(&["startup"], 1);
        assert!(
            err.contains("not running as init") && err.contains("--print"),
            "{err}"
        );
    }
}

#[test]
fn update_keeps_every_app_running() {
    let sup = Sup::new();
    let (echo, fifo) = sup.echo_app();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &echo, "--name", "echo"]);
    for i in 0..3 {
        sup.ok(&["start", &app, "--name", &format!("app{i}")]);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sup.ok(&[
        "start",
        &app,
        "--name",
        "held",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write;
    writeln!(feed, "before update").unwrap();
    let out_log = sup.home.join("logs/echo-out.log");
    wait_for("first line", DEADLINE, || {
        fs::read_to_string(&out_log)
            .unwrap_or_default()
            .contains("before update")
    });
    let pids_by_name = |sup: &Sup| -> Vec<(String, u64)> {
        sup.list()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().into(),
                    a["pid"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let pids = pids_by_name(&sup);
    // "[sup] daemon sup 0.1.0 is up (pid N, started T, home H)"
    let ping = |sup: &Sup| -> (String, String) {
        let out = sup.ok(&["ping"]);
        let after = |key: &str| {
            out.split(key)
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .to_string()
        };
        (after("pid "), after("started "))
    };
    let (daemon_before, started_before) = ping(&sup);
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    let (daemon_after, started_after) = ping(&sup);
    assert_eq!(daemon_before, daemon_after, "re-executed in place");
    assert_ne!(started_before, started_after, "a new daemon answers");
    let after = pids_by_name(&sup);
    assert_eq!(pids, after, "every app kept its pid");
    assert!(sup.list().iter().all(|a| a["status"] == "online"));
    // Logs still flow, through the handed-over pipe.
    writeln!(feed, "after update").unwrap();
    wait_for("a line written after the update", DEADLINE, || {
        fs::read_to_string(&out_log)
            .unwrap_or_default()
            .contains("after update")
    });
    // The held socket is still held, and crashes are still handled.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let pid = sup.pid("app0");
    signal(pid, libc::SIGKILL);
    sup.wait("app0 restarted by the new daemon", || {
        sup.app("app0")["restarts"] == 1 && sup.app("app0")["status"] == "online"
    });
}

#[test]
fn update_keeps_a_half_written_line_whole_and_works_during_a_crash_loop() {
    let sup = Sup::new();
    let (echo, fifo) = sup.echo_app();
    sup.ok(&["start", &echo, "--name", "echo"]);
    let crash = sup.script("crash.sh", "exit 1");
    sup.ok(&[
        "start",
        &crash,
        "--name",
        "crash",
        "--restart-delay",
        "300ms",
        "--backoff-max",
        "300ms",
    ]);
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write;
    write!(feed, "BEGIN-").unwrap();
    feed.flush().unwrap();
    // The case under test: the daemon has read the unfinished line (cat
    // took it from the FIFO, wrote it, and sleeps reading again; nothing is
    // left in its stdout pipe), so only the handover can keep it whole.
    let cat = sup.pid("echo");
    let stdout = fs::File::open(format!("/proc/{cat}/fd/1")).unwrap();
    wait_for("the daemon read the unfinished line", DEADLINE, || {
        unread_bytes(&feed) == 0 && unread_bytes(&stdout) == 0 && process_state(cat) == Some('S')
    });
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    writeln!(feed, "END").unwrap();
    let log = sup.home.join("logs/echo-out.log");
    wait_for("the line completed", DEADLINE, || {
        fs::read_to_string(&log).unwrap_or_default().contains("END")
    });
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(" BEGIN-END\n"),
        "the line was split by the update: {text:?}"
    );
    // The crash loop goes on under the new daemon.
    let before = sup.app("crash")["restarts"].as_u64().unwrap();
    sup.wait("more restarts", || {
        sup.app("crash")["restarts"].as_u64().unwrap() > before + 1
    });
}

#[test]
fn recovery_also_stops_processes_that_left_the_group() {
    let sup = Sup::new();
    let child_pid = sup.path("child.pid");
    // The child escapes the app's process group (its own session).
    let app = sup.script(
        "escape.sh",
        &format!(
            "setsid sleep 1000 &\necho $! >> {}\nexec sleep 1000",
            child_pid.display()
        ),
    );
    sup.ok(&["start", &app, "--name", "esc"]);
    let main = sup.pid("esc");
    wait_for("the child's pid", DEADLINE, || {
        fs::read_to_string(&child_pid).is_ok_and(|t| t.ends_with('\n'))
    });
    let child: u32 = fs::read_to_string(&child_pid)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(alive(child));
    wait_for("state written", DEADLINE, || {
        live_state(&sup).contains("\"start_time\"")
    });
    let daemon = sup.daemon_pid().unwrap();
    signal(daemon, libc::SIGKILL);
    wait_for("daemon gone", DEADLINE, || !alive(daemon));
    sup.wait_status("esc", "online");
    assert!(!alive(main), "the old instance survived");
    assert!(!alive(child), "the escaped child survived the recovery");
    // `sup kill` leaves nothing behind either, not even escaped children.
    wait_for("the new instance's child", DEADLINE, || {
        fs::read_to_string(&child_pid).is_ok_and(|t| t.lines().count() == 2)
    });
    sup.ok(&["kill"]);
    for pid in fs::read_to_string(&child_pid).unwrap().lines() {
        let pid: u32 = pid.parse().unwrap();
        assert!(!alive(pid), "escaped child {pid} survived sup kill");
    }
}

/// The live state files (`state/<id>.json`), concatenated.
fn live_state(sup: &Sup) -> String {
    let Ok(dir) = fs::read_dir(sup.home.join("state")) else {
        return String::new();
    };
    dir.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .collect()
}

/// Bytes waiting in the pipe or FIFO behind `file`.
fn unread_bytes(file: &fs::File) -> i32 {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD failed");
    n
}

/// The state letter of `/proc/PID/stat` (R, S, Z, ...).
fn process_state(pid: u32) -> Option<char> {
    proc_stat(pid).map(|(state, _, _)| state)
}

#[test]
fn update_keeps_ids_of_deleted_apps_retired() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "kept"]);
    sup.ok(&["start", &app, "--name", "gone"]);
    let gone_id = sup.app("gone")["id"].as_u64().unwrap();
    sup.ok(&["delete", "gone"]);
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    sup.ok(&["start", &app, "--name", "new"]);
    let new_id = sup.app("new")["id"].as_u64().unwrap();
    assert!(
        new_id > gone_id,
        "a new app got id {new_id}, which the deleted app had ({gone_id})"
    );
}

#[test]
fn cpu_after_update_is_a_rate_not_a_lifetime_total() {
    let sup = Sup::new();
    // Burns 0.6 s of CPU (counted by the shell itself, without forking),
    // then sleeps: a lifetime average of at most 100 % of one core.
    let burn = sup.script(
        "burn.sh",
        r#"while :; do read s < /proc/$$/stat; set -- $s; [ $((${14} + ${15})) -ge 60 ] && break; done
exec sleep 1000"#,
    );
    sup.ok(&["start", &burn, "--name", "burn"]);
    let pid = sup.pid("burn");
    sup.wait("the app burnt its CPU and sleeps", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    let cpu = sup.app("burn")["cpu"].as_f64().unwrap();
    assert!(
        cpu <= 100.5,
        "one single-threaded process shows {cpu} % CPU right after update"
    );
}
