//! Process ownership: sup acts on exactly the processes of the app or
//! instance named, and on all of them. Each case runs with cgroups (root,
//! writable cgroup2: CI's machine) and, where tags can see it, with
//! `SUP_CGROUPS=off`.

use crate::support::*;
use std::time::{Duration, Instant};

/// A shell with two children in its group, that exits 0 on SIGTERM.
const WITH_CHILDREN: &str = "trap 'exit 0' TERM; sleep 300 & sleep 301 & wait";

/// A shell with a child that leaves its group and environment behind.
const ESCAPING: &str = "setsid env -i sleep 302 & exec sleep 303";

/// Sups for each mode: cgroups (if this machine has them), then tags.
fn modes() -> Vec<(Sup, &'static str)> {
    let mut all = Vec::new();
    if cgroups_here() {
        all.push((Sup::new(), "cgroup"));
    }
    all.push((Sup::by_tags(), "tags"));
    all
}

/// Starts `body` as app `name` with `-i n`, online, with the tracking asked for.
fn start(sup: &Sup, name: &str, body: &str, n: &str, mode: &str) -> serde_json::Value {
    let script = sup.script(&format!("{name}.sh"), body);
    sup.ok(&[
        "start",
        &script,
        "--name",
        name,
        "-i",
        n,
        "--kill-timeout",
        "2s",
    ]);
    sup.wait(&format!("{name} online"), || {
        all_online(&sup.app(name), n.parse().unwrap())
    });
    let app = sup.app(name);
    assert_eq!(app["tracking"]["mode"], mode, "{app}");
    app
}

fn instance_pid(app: &serde_json::Value, index: usize) -> u32 {
    app["instances"][index]["pid"]
        .as_u64()
        .expect("a running instance") as u32
}

/// The process and its children, once it has `n` of them.
fn family(sup: &Sup, pid: u32, n: usize) -> Vec<u32> {
    let mut kids = Vec::new();
    sup.wait(&format!("{pid} has {n} children"), || {
        kids = children_of(pid);
        kids.len() >= n
    });
    kids.push(pid);
    kids
}

#[test]
fn stopping_one_instance_stops_it_and_its_children_only() {
    for (sup, mode) in modes() {
        let app = start(&sup, "api", WITH_CHILDREN, "2", mode);
        let zero = family(&sup, instance_pid(&app, 0), 2);
        let one = family(&sup, instance_pid(&app, 1), 2);
        let out = sup.ok(&["stop", "api:1"]);
        let named = format!("api:1 (id 0, pid {})", instance_pid(&app, 1));
        assert!(out.contains(&named), "{mode}: {out}");
        assert!(out.contains("api is online (1/2)"), "{mode}: {out}");
        sup.wait("instance 1's processes are gone", || {
            one.iter().all(|p| !alive(*p))
        });
        assert!(zero.iter().all(|p| alive(*p)), "{mode}: instance 0 was hit");
        let app = sup.app("api");
        assert_eq!(app["status"], "online", "{mode}: {app}");
        assert_eq!(app["instances"][0]["restarts"], 0, "{mode}: {app}");
        assert_eq!(app["instances"][1]["status"], "stopped", "{mode}: {app}");
        let table = sup.ok(&["list"]);
        assert!(table.contains("1/2"), "{mode}: {table}");
    }
}

#[test]
fn an_escaped_child_goes_with_stop_and_kill() {
    if !cgroups_here() {
        return;
    }
    let sup = Sup::new();
    let app = start(&sup, "esc", ESCAPING, "1", "cgroup");
    let escaped = family(&sup, instance_pid(&app, 0), 1);
    sup.ok(&["stop", "esc"]);
    assert!(escaped.iter().all(|p| !alive(*p)), "stop left {escaped:?}");
    sup.ok(&["start", "esc"]);
    let app = sup.wait_status("esc", "online");
    let escaped = family(&sup, instance_pid(&app, 0), 1);
    let apps = sup.cgroup_dir().expect("the apps' cgroup directory");
    sup.ok(&["kill"]);
    assert!(escaped.iter().all(|p| !alive(*p)), "kill left {escaped:?}");
    assert!(!apps.exists(), "{} is left after kill", apps.display());
}

#[test]
fn quick_restarts_of_an_instance_never_touch_another() {
    for (sup, mode) in modes() {
        let app = start(&sup, "q", WITH_CHILDREN, "2", mode);
        let other = family(&sup, instance_pid(&app, 1), 2);
        for _ in 0..4 {
            sup.ok(&["restart", "q:0"]);
        }
        let app = sup.wait_status("q", "online");
        assert_eq!(app["instances"][0]["status"], "online", "{mode}: {app}");
        assert_eq!(app["instances"][1]["restarts"], 0, "{mode}: {app}");
        assert!(
            other.iter().all(|p| alive(*p)),
            "{mode}: instance 1 was hit"
        );
        let started = Instant::now();
        sup.ok(&["kill"]);
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{mode}: kill took {:?}",
            started.elapsed()
        );
        assert!(
            other.iter().all(|p| !alive(*p)),
            "{mode}: kill left {other:?}"
        );
    }
}

#[test]
fn the_cpu_of_busy_children_is_counted() {
    if !cgroups_here() {
        return;
    }
    let sup = Sup::new();
    let busy = "sh -c 'while :; do :; done' & sh -c 'while :; do :; done' & wait";
    start(&sup, "busy", busy, "1", "cgroup");
    // Each `list` gives the rate since the one before: over a second or
    // more, two busy children use well over half a core, together.
    sup.wait("two busy children show as CPU use", || {
        std::thread::sleep(Duration::from_millis(500));
        sup.app("busy")["cpu"].as_f64().unwrap_or(0.0) > 60.0
    });
}

#[test]
fn kill_ends_within_the_kill_timeouts_when_an_instance_ignores_its_stop() {
    for (sup, mode) in modes() {
        let stubborn = "trap '' TERM; sleep 304 & while :; do sleep 1; done";
        let app = start(&sup, "stuck", stubborn, "2", mode);
        let all: Vec<u32> = (0..2)
            .flat_map(|i| family(&sup, instance_pid(&app, i), 1))
            .collect();
        let started = Instant::now();
        sup.ok(&["kill"]);
        // Kill timeout 2 s, plus a margin.
        assert!(
            started.elapsed() < Duration::from_secs(7),
            "{mode}: {:?}",
            started.elapsed()
        );
        assert!(
            all.iter().all(|p| !alive(*p)),
            "{mode}: kill left some of {all:?}"
        );
    }
}

#[test]
fn a_stop_while_a_command_probe_runs_ends_and_spares_nothing_else() {
    for (sup, mode) in modes() {
        let script = sup.script("probed.sh", WITH_CHILDREN);
        let probe = format!("touch {}; sleep 1", sup.path("probing").display());
        sup.ok(&[
            "start",
            &script,
            "--name",
            "probed",
            "--health-cmd",
            &probe,
            "--health-interval",
            "100ms",
            "--health-timeout",
            "5s",
        ]);
        sup.wait("the probe runs", || sup.path("probing").exists());
        let started = Instant::now();
        sup.ok(&["stop", "probed"]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{mode}: stop took {:?}",
            started.elapsed()
        );
        let app = sup.wait_status("probed", "stopped");
        assert!(app["pid"].is_null(), "{mode}: {app}");
    }
}

#[test]
fn each_instance_has_its_own_cgroup_and_the_dir_goes_when_it_does() {
    if !cgroups_here() {
        return;
    }
    let sup = Sup::new();
    let app = start(&sup, "cg", WITH_CHILDREN, "2", "cgroup");
    let apps = sup.cgroup_dir().expect("a cgroup dir");
    let zero = family(&sup, instance_pid(&app, 0), 2);
    let one = family(&sup, instance_pid(&app, 1), 2);
    let cg = |pids: &[u32]| {
        pids.iter()
            .map(|p| cgroup_of(*p).unwrap())
            .collect::<Vec<_>>()
    };
    let (c0, c1) = (cg(&zero), cg(&one));
    assert!(
        c0.iter().all(|c| *c == c0[0]) && c1.iter().all(|c| *c == c1[0]),
        "{c0:?} {c1:?}"
    );
    assert_ne!(c0[0], c1[0]);
    assert!(apps.ends_with(
        std::path::Path::new(c0[0].trim_start_matches('/'))
            .parent()
            .unwrap()
    ));
    let leaf = apps.join(std::path::Path::new(&c1[0]).file_name().unwrap());
    assert!(leaf.is_dir(), "{}", leaf.display());
    sup.ok(&["stop", "cg:1"]);
    sup.wait("the stopped instance's cgroup is removed", || {
        !leaf.exists()
    });
    let described = sup.ok(&["describe", "cg"]);
    assert!(
        described.contains("tracking") && described.contains("cgroup"),
        "{described}"
    );
}

#[test]
fn max_memory_is_told_by_the_kernel_where_the_memory_controller_is_on() {
    if !cgroups_here() {
        return;
    }
    let sup = Sup::new();
    // Grows by 4 MiB (written, so resident) every 100 ms.
    let grow =
        "import time\nb = []\nwhile True:\n    b.append(b'x' * (4 << 20))\n    time.sleep(0.1)\n";
    std::fs::write(sup.path("grow.py"), grow).unwrap();
    sup.ok(&["start", "grow.py", "--max-memory", "64M"]);
    sup.wait("grow online", || all_online(&sup.app("grow"), 1));
    let app = sup.app("grow");
    let pid = instance_pid(&app, 0);
    let leaf = sup.cgroup_dir().expect("a cgroup dir").join(
        std::path::Path::new(&cgroup_of(pid).unwrap())
            .file_name()
            .unwrap(),
    );
    let memory_on = app["tracking"]["controllers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c == "memory");
    let high = std::fs::read_to_string(leaf.join("memory.high")).ok();
    if memory_on {
        // The kernel holds it there and tells the daemon through memory.events.
        assert_eq!(high.as_deref().map(str::trim), Some("67108864"));
    } else {
        // No memory controller in the subtree (a hybrid layout): the poll.
        assert_eq!(high, None, "{}", leaf.display());
    }
    sup.wait("a restart for memory", || {
        sup.app("grow")["restarts"].as_u64().unwrap_or(0) >= 1
    });
}

#[test]
fn tags_mode_says_why() {
    let sup = Sup::by_tags();
    let app = start(&sup, "t", "exec sleep 305", "1", "tags");
    assert_eq!(app["tracking"]["reason"], "SUP_CGROUPS=off", "{app}");
    let described = sup.ok(&["describe", "t"]);
    assert!(described.contains("tags (SUP_CGROUPS=off)"), "{described}");
}

#[test]
fn limits_are_refused_where_their_controller_is_missing() {
    let sup = Sup::by_tags();
    let err = sup.fails(
        &["start", "sleep 306", "--name", "lim", "--memory-max", "64M"],
        1,
    );
    assert!(
        err.contains("--memory-max needs the memory controller"),
        "{err}"
    );
    assert!(sup.list().is_empty());
}

#[test]
fn cgroups_on_refuses_to_start_without_them() {
    let mut sup = Sup::new();
    sup.env.push(("SUP_CGROUPS".into(), "sideways".into()));
    let err = sup.fails(&["start", "sleep 307", "--name", "x"], 1);
    assert!(err.contains("SUP_CGROUPS=sideways"), "{err}");
}

#[test]
fn a_crashed_daemons_cgroups_are_stopped_and_removed() {
    if !cgroups_here() {
        return;
    }
    let sup = Sup::new();
    let app = start(&sup, "orph", ESCAPING, "1", "cgroup");
    let old = family(&sup, instance_pid(&app, 0), 1);
    let apps = sup.cgroup_dir().expect("a cgroup dir");
    signal(sup.daemon_pid().expect("a daemon"), libc::SIGKILL);
    sup.wait("the daemon is gone", || sup.daemon_pid().is_none());
    assert!(
        old.iter().all(|p| alive(*p)),
        "the orphans outlive the daemon"
    );
    // The next daemon stops them exactly (the escaped one too), then
    // starts the app afresh.
    let app = sup.wait_status("orph", "online");
    assert!(old.iter().all(|p| !alive(*p)), "left {old:?}");
    let new = instance_pid(&app, 0);
    assert!(!old.contains(&new));
    let leaves: Vec<_> = std::fs::read_dir(&apps)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap())
        .collect();
    assert_eq!(
        leaves.len(),
        1,
        "only the new instance's cgroup: {leaves:?}"
    );
    assert!(
        leaves[0].lines().any(|l| l == new.to_string()),
        "{leaves:?}"
    );
}
