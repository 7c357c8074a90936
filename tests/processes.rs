//! Process trees: groups, stragglers, double-forks, and leaving nothing behind.

use crate::support::*;
use std::fs;

fn read_pid(sup: &Sup, file: &str) -> u32 {
    let path = sup.path(file);
    let mut pid = 0;
    wait_for(&format!("{file} written"), DEADLINE, || {
        pid = fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    pid
}

#[test]
fn stop_kills_the_app_and_its_children_even_one_ignoring_sigterm() {
    let sup = Sup::new();
    let child_pid = sup.path("child.pid").display().to_string();
    // The child ignores SIGTERM: only the SIGKILL after the kill timeout ends it.
    let app = sup.script(
        "parent.sh",
        &format!(
            "sh -c 'trap \"\" TERM; echo $$ > {child_pid}; while :; do sleep 1; done' &\nwait"
        ),
    );
    sup.ok(&["start", &app, "--name", "tree", "--kill-timeout", "300ms"]);
    let parent = sup.pid("tree");
    let child = read_pid(&sup, "child.pid");
    assert!(alive(child));
    sup.ok(&["stop", "tree"]);
    // `stop` answers once the whole group is gone.
    assert!(!alive(parent), "parent survived stop");
    assert!(!alive(child), "child survived stop");
    assert_eq!(sup.app("tree")["status"], "stopped");
}

#[test]
fn graceful_children_finish_before_stop_returns() {
    let sup = Sup::new();
    let done = sup.path("done").display().to_string();
    // The child takes 200 ms to shut down after SIGTERM; the parent exits at once.
    let app = sup.script(
        "app.sh",
        &format!("sh -c 'trap \"sleep 0.2; echo ok > {done}; exit 0\" TERM; touch {done}.armed; while :; do sleep 0.05; done' &\nexec sleep 1000"),
    );
    sup.ok(&["start", &app, "--name", "drain"]);
    sup.pid("drain");
    let armed = format!("{done}.armed");
    wait_for("the child's trap is set", DEADLINE, || {
        std::path::Path::new(&armed).exists()
    });
    sup.ok(&["stop", "drain"]);
    assert_eq!(
        fs::read_to_string(&done).unwrap_or_default().trim(),
        "ok",
        "child was cut short"
    );
}

#[test]
fn no_zombies_after_50_crashes_of_a_double_forking_app() {
    let sup = Sup::new();
    // Each run double-forks a grandchild into its own session, then crashes:
    // the grandchild is re-parented to the daemon (a subreaper) and must be reaped.
    let app = sup.script("forker.sh", "(setsid sleep 0.05 &)\nexit 1");
    sup.ok(&["start", &app, "--name", "forker", "--backoff-max", "10ms"]);
    sup.wait("50 crashes", || {
        sup.app("forker")["restarts"].as_u64() >= Some(50)
    });
    sup.ok(&["stop", "forker"]);
    let daemon = sup.daemon_pid().unwrap();
    wait_for("the grandchildren exit and are reaped", DEADLINE, || {
        zombie_children(daemon).is_empty()
            && processes_with_home(&sup.home).iter().all(|&p| p == daemon)
    });
}

#[test]
fn kill_leaves_no_process_behind() {
    let sup = Sup::new();
    let tree = sup.script("tree.sh", "sleep 1000 &\nsleep 1000 &\nwait");
    let plain = sup.script("plain.sh", "exec sleep 1000");
    sup.ok(&["start", &tree, "--name", "tree"]);
    sup.ok(&[
        "start",
        &plain,
        "--name",
        "plain",
        "--restart",
        "unless-stopped",
    ]);
    sup.pid("tree");
    sup.pid("plain");
    let daemon = sup.daemon_pid().unwrap();
    wait_for("the tree has its children", DEADLINE, || {
        processes_with_home(&sup.home).len() >= 5
    });
    let out = sup.ok(&["kill"]);
    assert!(out.contains("daemon stopped"), "{out}");
    assert!(!alive(daemon));
    let left = processes_with_home(&sup.home);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!sup.home.join("sup.sock").exists());
    // A dead daemon answers nothing, and says so.
    let err = sup.fails(&["ping"], 1);
    assert!(err.contains("not running"), "{err}");
}

#[test]
fn sigterm_to_the_daemon_stops_apps_then_exits() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    let pid = sup.pid("api");
    let daemon = sup.daemon_pid().unwrap();
    signal(daemon, libc::SIGTERM);
    wait_for("daemon exit", DEADLINE, || !alive(daemon));
    assert!(!alive(pid));
    assert!(processes_with_home(&sup.home).is_empty());
    let log = fs::read_to_string(sup.home.join("daemon.log")).unwrap();
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn apps_start_with_a_clean_signal_state_and_own_group() {
    let sup = Sup::new();
    sup.ok(&["start", "sleep", "--name", "api", "--", "1000"]);
    let pid = sup.pid("api");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        field("SigBlk:"),
        "0000000000000000",
        "blocked signals leaked into the app"
    );
    assert_eq!(
        field("SigIgn:"),
        "0000000000000000",
        "ignored signals leaked into the app"
    );
    let (_, _, pgrp) = proc_stat(pid).unwrap();
    assert_eq!(pgrp, pid, "the app leads its own process group");
    // Only stdin/stdout/stderr are open: no daemon fd leaked.
    let fds: Vec<_> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(fds.len(), 3, "{fds:?}");
}

#[test]
fn stop_also_stops_children_that_left_the_group() {
    let sup = Sup::new();
    let child_pid = sup.path("child.pid");
    // The child starts its own session, out of the app's process group.
    let app = sup.script(
        "escape.sh",
        &format!(
            "setsid sleep 1000 &\necho $! > {}\nexec sleep 1000",
            child_pid.display()
        ),
    );
    sup.ok(&["start", &app, "--name", "esc"]);
    let child = read_pid(&sup, "child.pid");
    assert!(alive(child));
    sup.ok(&["stop", "esc"]);
    wait_for("the escaped child is stopped", DEADLINE, || !alive(child));
    assert_eq!(sup.app("esc")["status"], "stopped");
}

#[test]
fn an_app_that_daemonizes_itself_is_errored_not_restarted_in_a_loop() {
    let sup = Sup::new();
    let pids = sup.path("daemon.pids");
    // The classic daemon: fork the real work out of the session, exit 0.
    let app = sup.script(
        "daemonize.sh",
        &format!("setsid sleep 1000 &\necho $! >> {}\nexit 0", pids.display()),
    );
    sup.ok(&["start", &app, "--name", "d"]);
    let app = sup.wait_status("d", "errored");
    // The shell may exit before its child has left the group; by the next
    // run at the latest, the escaped child gives it away.
    assert!(app["restarts"].as_u64().unwrap() <= 1, "{app}");
    let error = app["error"].as_str().unwrap();
    assert!(error.contains("daemonize"), "{error}");
    let children: Vec<u32> = fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        children.iter().any(|c| error.contains(&c.to_string())),
        "{error}"
    );
    // Deleting the app stops what it left behind.
    sup.ok(&["delete", "d"]);
    wait_for("the daemonized processes are stopped", DEADLINE, || {
        children.iter().all(|c| !alive(*c))
    });
}

#[test]
fn apps_get_the_fd_limit_the_daemon_started_with_not_its_raised_one() {
    let sup = Sup::new();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard <= 1024 {
        return; // Nothing to raise: the daemon keeps 1024 like its apps.
    }
    let out = sup.path("limit");
    let app = sup.script(
        "limit.sh",
        &format!(
            "echo $(ulimit -n) $(ulimit -Hn) > {}; exec sleep 1000",
            out.display()
        ),
    );
    // The daemon is started by this command, with a soft limit of 1024.
    let status = std::process::Command::new("prlimit")
        .args(["--nofile=1024:", "--"])
        .arg(env!("CARGO_BIN_EXE_sup"))
        .args(["start", &app, "--name", "lim"])
        .env("SUP_HOME", &sup.home)
        .current_dir(&sup.dir)
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success());
    sup.wait("the app wrote its limit", || {
        std::fs::read_to_string(&out).is_ok_and(|t| !t.is_empty())
    });
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        format!("1024 {hard}"),
        "the app's soft and hard limits are those the daemon started with"
    );
    let daemon = std::fs::read_to_string(sup.home.join("daemon.lock")).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.trim())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    // Its own soft limit is at least the hard one (root raises both, up
    // to the kernel's fs.nr_open).
    let soft: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(soft >= hard, "the daemon raised its own: {line}");
    sup.ok(&["kill"]);
}
