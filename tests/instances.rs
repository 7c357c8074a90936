//! Several instances of one app: indices, scaling, one held socket shared
//! by all, kills and rolling reloads under a client loop.

use crate::support::*;
use std::fs;
use std::time::Duration;

#[test]
fn each_instance_gets_its_index_and_tags_its_lines() {
    let sup = Sup::new();
    let app = sup.script(
        "app.sh",
        "echo \"index $SUP_INSTANCE node ${NODE_APP_INSTANCE-unset} worker ${WORKER-unset}\"\nexec sleep 1000",
    );
    // PM2's instance_var renames NODE_APP_INSTANCE; SUP_INSTANCE stays.
    sup.ok(&[
        "start",
        &app,
        "--name",
        "w",
        "-i",
        "3",
        "--instance-var",
        "WORKER",
    ]);
    sup.ok(&["start", &app, "--name", "v", "-i", "2"]);
    let a = sup.wait_status("w", "online");
    assert_eq!(a["ready_instances"], 3);
    let pids: Vec<_> = instance_pids(&sup, "w");
    assert_eq!(pids.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(pids.iter().all(|p| p.1.is_some()));
    let log = sup.home.join("logs/w-out.log");
    wait_for("three lines", DEADLINE, || {
        fs::read_to_string(&log).unwrap_or_default().lines().count() == 3
    });
    let text = fs::read_to_string(&log).unwrap();
    for i in 0..3 {
        assert!(
            text.contains(&format!("[{i}] index {i} node unset worker {i}")),
            "{text}"
        );
    }
    let log = sup.home.join("logs/v-out.log");
    wait_for("v's lines", DEADLINE, || {
        fs::read_to_string(&log).unwrap_or_default().lines().count() == 2
    });
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains("[1] index 1 node 1 worker unset"), "{text}");
    let table = sup.ok(&["list"]);
    assert!(table.contains("3/3") && table.contains("w:2"), "{table}");
}

#[test]
fn scale_grows_and_shrinks_leaving_the_others_alone() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "w", "-i", "2"]);
    let before = instance_pids(&sup, "w");
    let out = sup.ok(&["scale", "w", "+2"]);
    assert!(out.contains("scaled w (id 0) to 4 instances"), "{out}");
    sup.wait("four online", || all_online(&sup.app("w"), 4));
    let grown = instance_pids(&sup, "w");
    assert_eq!(grown[..2], before[..], "the first two kept running");
    let out = sup.ok(&["scale", "w", "1"]);
    assert!(out.contains("scaled w (id 0) to 1 instance:"), "{out}");
    sup.wait("one left", || all_online(&sup.app("w"), 1));
    assert_eq!(instance_pids(&sup, "w"), before[..1]);
    for (_, pid) in &grown[1..] {
        assert!(!alive(pid.unwrap() as u32));
    }
    // Below one is refused, at the flag and by the daemon.
    let err = sup.fails(&["scale", "w", "0"], 2);
    assert!(err.contains("at least one"), "{err}");
    let err = sup.fails(&["scale", "w", "-1"], 1);
    assert!(err.contains("1 to 1024"), "{err}");
    let err = sup.fails(&["start", &app, "--name", "big", "-i", "1025"], 2);
    assert!(err.contains("1024"), "{err}");
    // The count is part of the spec: a save keeps it.
    assert_eq!(sup.app("w")["instances"].as_array().unwrap().len(), 1);
    let describe = sup.ok(&["describe", "w", "--json"]);
    assert!(describe.contains("\"instances\": 1") || describe.contains("\"instances\":1"));
}

#[test]
fn one_instance_can_be_stopped_restarted_signalled_and_deleted() {
    let sup = Sup::new();
    let marks = sup.path("usr1");
    let app = sup.script(
        "app.sh",
        &format!(
            "trap 'echo $SUP_INSTANCE >> {}' USR1\nwhile :; do sleep 0.05; done",
            marks.display()
        ),
    );
    sup.ok(&["start", &app, "--name", "w", "-i", "3"]);
    let pids = instance_pids(&sup, "w");
    sup.ok(&["signal", "SIGUSR1", "w:1"]);
    wait_for("instance 1 got the signal", DEADLINE, || {
        fs::read_to_string(&marks).unwrap_or_default() == "1\n"
    });
    sup.ok(&["restart", "w:2"]);
    let now = instance_pids(&sup, "w");
    assert_eq!(now[..2], pids[..2]);
    assert_ne!(now[2], pids[2]);
    sup.ok(&["stop", "w:0"]);
    let a = sup.app("w");
    assert_eq!(a["instances"][0]["status"], "stopped");
    assert_eq!(a["ready_instances"], 2);
    sup.ok(&["delete", "w:0"]);
    assert_eq!(
        instance_pids(&sup, "w")
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        [1, 2],
        "the others keep their index"
    );
    let err = sup.fails(&["stop", "w:7"], 1);
    assert!(err.contains("instance 7"), "{err}");
    // The new count is on disk when the delete is answered.
    let saved = fs::read_to_string(sup.home.join("state/0.json")).unwrap();
    assert!(saved.contains("\"instances\":2"), "{saved}");
    sup.ok(&["delete", "w:1"]);
    let err = sup.fails(&["delete", "w:2"], 1);
    assert!(err.contains("only instance"), "{err}");
    assert_eq!(instance_pids(&sup, "w").len(), 1);
}

/// Starts `web.py` with `n` instances on a held port; returns the port.
fn start_web(sup: &Sup, n: &str, extra: &[&str]) -> u16 {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "start",
        web_app_str(),
        "--name",
        "web",
        "-i",
        n,
        "--listen",
        &listen,
        "--wait",
    ];
    args.extend_from_slice(extra);
    sup.ok(&args);
    port
}

fn web_app_str() -> &'static str {
    Box::leak(web_app().into_boxed_str())
}

#[test]
fn killing_one_instance_leaves_the_others_serving() {
    let sup = Sup::new();
    let port = start_web(&sup, "2", &[]);
    kill_one_instance_under_a_client_loop(&sup, "web", port);
}

#[test]
fn rolling_reload_of_four_instances_under_load_fails_no_request() {
    let sup = Sup::new();
    let port = start_web(&sup, "4", &[]);
    reload_under_a_client_loop(&sup, "web", port);
    assert_eq!(instance_pids(&sup, "web").len(), 4);
}

#[test]
fn a_reload_whose_new_instance_never_gets_ready_keeps_the_old_ones() {
    let sup = Sup::new();
    let (port, ready) = start_notifying_web(&sup, &["-i", "2"]);
    sup.wait("both ready", || all_online(&sup.app("web"), 2));
    let before = instance_pids(&sup, "web");
    fs::remove_file(&ready).unwrap();
    let err = sup.fails(&["reload", "web"], 1);
    assert!(err.contains("not ready within"), "{err}");
    assert_eq!(instance_pids(&sup, "web"), before);
    assert!(get(port, "/", Duration::from_secs(5)).is_ok());
}

#[test]
fn update_keeps_every_instance_running() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "echo \"hi $SUP_INSTANCE\"\nexec sleep 1000");
    sup.ok(&["start", &app, "--name", "w", "-i", "3"]);
    sup.ok(&["delete", "w:1"]);
    sup.wait("two left", || all_online(&sup.app("w"), 2));
    let before = instance_pids(&sup, "w");
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    assert_eq!(instance_pids(&sup, "w"), before);
    // The new daemon supervises each of them.
    signal(before[1].1.unwrap() as u32, libc::SIGKILL);
    sup.wait("instance 2 restarted", || {
        let a = sup.app("w");
        all_online(&a, 2) && a["instances"][1]["pid"].as_u64() != before[1].1
    });
    assert_eq!(sup.app("w")["instances"][1]["index"], 2);
}

#[test]
fn split_logs_give_each_instance_its_own_files() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "echo \"hi from $SUP_INSTANCE\"\nexec sleep 1000");
    sup.ok(&["start", &app, "--name", "w", "-i", "2", "--split-logs"]);
    let logs = sup.home.join("logs");
    for i in 0..2 {
        let file = logs.join(format!("w-out-{i}.log"));
        wait_for("the instance's own file", DEADLINE, || {
            fs::read_to_string(&file)
                .unwrap_or_default()
                .contains(&format!("hi from {i}"))
        });
        let text = fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains('['),
            "no tag in an instance's own file: {text}"
        );
    }
    assert!(
        !logs.join("w-out.log").exists()
            || fs::read_to_string(logs.join("w-out.log"))
                .unwrap()
                .is_empty()
    );
    let shown = sup.ok(&["logs", "w", "--nostream", "--raw"]);
    assert!(
        shown.contains("hi from 0") && shown.contains("hi from 1"),
        "{shown}"
    );
    let describe = sup.ok(&["describe", "w", "--json"]);
    assert!(describe.contains("w-out-1.log"), "{describe}");
    // `sup flush` empties every instance's files.
    sup.ok(&["flush", "w"]);
    assert!(fs::read_to_string(logs.join("w-out-1.log"))
        .unwrap()
        .is_empty());
}

#[test]
fn logs_of_one_instance_show_that_instance_only() {
    let sup = Sup::new();
    let app = sup.script("say.sh", "echo \"I am $SUP_INSTANCE\"; exec sleep 1000");
    sup.ok(&["start", &app, "--name", "w", "-i", "2"]);
    sup.wait("both have spoken", || {
        let out = sup.ok(&["logs", "w", "--nostream", "--raw"]);
        out.contains("I am 0") && out.contains("I am 1")
    });
    let one = sup.ok(&["logs", "w:1", "--nostream", "--raw"]);
    assert!(one.contains("I am 1") && !one.contains("I am 0"), "{one}");
    // With one file per instance too.
    sup.ok(&["start", &app, "--name", "s", "-i", "2", "--split-logs"]);
    sup.wait("both have spoken", || {
        let out = sup.ok(&["logs", "s", "--nostream", "--raw"]);
        out.contains("I am 0") && out.contains("I am 1")
    });
    let zero = sup.ok(&["logs", "s:0", "--nostream", "--raw"]);
    assert!(
        zero.contains("I am 0") && !zero.contains("I am 1"),
        "{zero}"
    );
    sup.ok(&["kill"]);
}
