//! Held sockets, probes, readiness, reload, events and hooks, against real
//! HTTP apps.

use crate::support::*;
use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_stuck_app_is_restarted_by_its_liveness_probe() {
    let sup = Sup::new();
    let port = free_port();
    let sick = sup.path("sick");
    let listen = format!("127.0.0.1:{port}");
    let url = format!("http://127.0.0.1:{port}/health");
    sup.command(&[
        "start",
        &web_app(),
        "--name",
        "web",
        "--listen",
        &listen,
        "--health",
        &url,
        "--health-interval",
        "200ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "3",
        "--wait",
    ])
    .env("SICK_FILE", &sick)
    .status()
    .unwrap();
    let pid = sup.pid("web");
    sup.wait("healthy", || {
        sup.app("web")["health"]["status"] == "healthy"
    });
    fs::write(&sick, "").unwrap();
    let stuck_at = Instant::now();
    sup.wait("restarted after 3 failed probes", || {
        let a = sup.app("web");
        a["restarts"] == 1 && a["pid"].as_u64().is_some_and(|p| p as u32 != pid)
    });
    let took = stuck_at.elapsed();
    // threshold x interval + timeout = 800 ms, plus the stop (SIGTERM and
    // the kill timeout of a request stuck in the app) and load on the machine.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        took >= Duration::from_millis(400),
        "too fast to be three probes: {took:?}"
    );
    fs::remove_file(&sick).unwrap();
    let describe = sup.ok(&["describe", "web"]);
    assert!(
        describe.contains("liveness probe failed 3 times"),
        "{describe}"
    );
    let events = sup.ok(&["events", "web"]);
    assert!(
        events.contains("unhealthy") && events.contains("restarting"),
        "{events}"
    );
    let log = fs::read_to_string(sup.home.join("daemon.log")).unwrap();
    assert!(log.contains("liveness probe failed"), "{log}");
}

#[test]
fn readiness_holds_online_back_until_the_probe_passes() {
    let sup = Sup::new();
    let port = free_port();
    // The app only starts listening once the test says so.
    let gate = sup.path("gate");
    let app = sup.script(
        "late.sh",
        &format!(
            "while [ ! -e {} ]; do sleep 0.02; done\nexec python3 {}",
            gate.display(),
            web_app()
        ),
    );
    let url = format!("http://127.0.0.1:{port}/health");
    sup.command(&["start", &app, "--name", "late", "--ready-http", &url])
        .env("PORT", port.to_string())
        .status()
        .unwrap();
    assert_eq!(sup.app("late")["status"], "launching");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sup.app("late")["status"],
        "launching",
        "online before it was ready"
    );
    fs::write(&gate, "").unwrap();
    sup.wait_status("late", "online");
    assert!(sup.ok(&["events", "late"]).contains("late ready"));
}

#[test]
fn sd_notify_app_is_online_only_after_ready_and_start_wait_waits() {
    let sup = Sup::new();
    let ready = sup.path("ready");
    let port = free_port().to_string();
    let mut child = sup
        .command(&[
            "start",
            &web_app(),
            "--name",
            "notify",
            "--ready-notify",
            "--wait",
        ])
        .env("READY_FILE", &ready)
        .env("PORT", &port)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sup.wait("the app is launching", || {
        sup.list()
            .first()
            .is_some_and(|a| a["status"] == "launching")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sup.app("notify")["status"], "launching");
    assert!(
        child.try_wait().unwrap().is_none(),
        "start --wait returned before READY=1"
    );
    fs::write(&ready, "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(sup.app("notify")["status"], "online");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("online"), "{out}");
}

#[test]
fn a_held_socket_serves_clients_that_came_while_the_app_was_down() {
    let sup = Sup::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    sup.ok(&[
        "start",
        &web_app(),
        "--name",
        "web",
        "--listen",
        &listen,
        "--restart-delay",
        "1s",
    ]);
    let pid = sup.pid("web");
    get(port, "/", Duration::from_secs(5)).unwrap();
    signal(pid, libc::SIGKILL);
    sup.wait_status("web", "waiting-restart");
    // Nobody serves the port for a second; the kernel queues the connection.
    let asked = Instant::now();
    let answer = get(port, "/", Duration::from_secs(10));
    assert!(answer.is_ok(), "refused while the app was down: {answer:?}");
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "it should have waited for the restart"
    );
    // Stopped by the user: the socket closes, so a proxy fails fast.
    sup.ok(&["stop", "web"]);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the port stays open after stop"
    );
    sup.ok(&["start", "web"]);
    get(port, "/", Duration::from_secs(10)).unwrap();
}

#[test]
fn ten_reloads_fail_no_request() {
    let sup = Sup::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/app.js");
    sup.ok(&[
        "start",
        app,
        "--name",
        "api",
        "--listen",
        &listen,
        "--min-uptime",
        "300ms",
        "--wait",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, ok, failed, errors) =
                (stop.clone(), ok.clone(), failed.clone(), errors.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match get(port, "/", Duration::from_secs(10)) {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            errors.lock().unwrap().push(e);
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    let mut pids = vec![sup.pid("api")];
    for _ in 0..10 {
        let out = sup.ok(&["reload", "api"]);
        assert!(out.contains("reloaded"), "{out}");
        pids.push(sup.pid("api"));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    pids.dedup();
    assert_eq!(
        pids.len(),
        11,
        "each reload brings a new instance: {pids:?}"
    );
    assert!(
        ok.load(Ordering::SeqCst) > 50,
        "too few requests to mean anything"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed requests: {:?}",
        errors.lock().unwrap()
    );
    assert_eq!(sup.app("api")["restarts"], 10);
}

#[test]
fn a_reload_that_never_gets_ready_keeps_the_old_instance() {
    let sup = Sup::new();
    let (port, ready) = start_notifying_web(&sup, &[]);
    let old = sup.pid("web");
    fs::remove_file(&ready).unwrap();
    let err = sup.fails(&["reload", "web"], 1);
    assert!(
        err.contains("not ready within") && err.contains("old instance keeps serving"),
        "{err}"
    );
    assert_eq!(sup.pid("web"), old);
    assert_eq!(sup.app("web")["status"], "online");
    let body = get(port, "/", Duration::from_secs(5)).unwrap();
    assert!(body.contains(&format!("pid {old}")), "{body}");
    wait_for("the new instance is gone", DEADLINE, || {
        sup.app("web")["instances"].as_array().unwrap().len() == 1
    });
    assert!(sup.ok(&["events", "web"]).contains("reload-failed"));
}

#[test]
fn events_are_recorded_and_hooks_run() {
    let sup = Sup::new();
    let hooks = sup.path("hooks");
    fs::create_dir(&hooks).unwrap();
    let hook = format!("cat > {}/$SUP_EVENT_KIND.json", hooks.display());
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api", "--on-event", &hook]);
    let mut follower = sup
        .command(&["events", "--follow", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, reader) = collect_stdout(&mut follower);
    let pid = sup.pid("api");
    signal(pid, libc::SIGKILL);
    sup.wait("restarted", || sup.app("api")["restarts"] == 1);
    let started = hooks.join("started.json");
    wait_for("the hook ran for `started`", DEADLINE, || {
        fs::read_to_string(&started).is_ok_and(|t| t.ends_with('}'))
    });
    let event: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&started).unwrap()).unwrap();
    assert_eq!(event["app"], "api");
    assert_eq!(event["kind"], "started");
    wait_for("the hook ran for `exited`", DEADLINE, || {
        hooks.join("exited.json").exists()
    });
    let text = sup.ok(&["events", "api"]);
    for kind in ["started", "online", "exited", "restarting"] {
        assert!(text.contains(&format!("api {kind}")), "no {kind} in {text}");
    }
    assert!(text.contains("signal SIGKILL"), "{text}");
    // The follower saw the new events as they happened.
    wait_for("the follower printed the exit", DEADLINE, || {
        seen.lock()
            .unwrap()
            .lines()
            .any(|l| l.contains("\"exited\""))
    });
    follower.kill().unwrap();
    follower.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn bad_health_input() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.fails(&["start", &app, "--listen", "nowhere"], 2);
    sup.fails(&["start", &app, "--health", "https://127.0.0.1/health"], 2);
    sup.fails(&["start", &app, "--health", "127.0.0.1:80"], 2);
    sup.fails(&["start", &app, "--health-tcp", "justahost"], 2);
    sup.fails(
        &[
            "start",
            &app,
            "--health",
            "http://x/",
            "--health-cmd",
            "true",
        ],
        2,
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = sup.fails(&["start", &app, "--listen", &addr], 1);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert!(sup.list().is_empty());
    // A probe target that refuses is unhealthy, not a daemon error; a
    // missing hook is an event, and supervision goes on.
    let port = free_port();
    sup.ok(&[
        "start",
        &app,
        "--name",
        "lonely",
        "--health-tcp",
        &format!("127.0.0.1:{port}"),
        "--health-interval",
        "100ms",
        "--health-retries",
        "1000",
        "--on-event",
        "no-such-hook-command",
    ]);
    sup.wait("unhealthy", || {
        sup.app("lonely")["health"]["status"] == "unhealthy"
    });
    wait_for("hook-failed recorded", DEADLINE, || {
        sup.ok(&["events", "lonely"]).contains("hook-failed")
    });
    assert_eq!(sup.app("lonely")["status"], "online");
    sup.ok(&["ping"]);
}

#[test]
fn a_failed_reload_leaves_nothing_stuck() {
    let sup = Sup::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // The first instance runs; any later one exits at once.
    let marker = sup.path("first-done");
    let app = sup.script(
        "once.sh",
        &format!(
            "if [ -e {m} ]; then exit 3; fi\ntouch {m}\nexec sleep 1000",
            m = marker.display()
        ),
    );
    sup.ok(&["start", &app, "--name", "r", "--listen", &listen]);
    wait_for("the first instance ran", DEADLINE, || marker.exists());
    let old = sup.pid("r");
    let err = sup.fails(&["reload", "r"], 1);
    assert!(err.contains("exited before it was ready"), "{err}");
    assert_eq!(sup.pid("r"), old);
    sup.ok(&["delete", "r"]);
    assert!(sup.list().is_empty());
    sup.ok(&["kill"]);
}

#[test]
fn a_reloaded_instance_and_its_stubborn_children_are_gone_after_the_kill_timeout() {
    let sup = Sup::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let kids = sup.path("kids");
    // Each instance leaves a child that ignores SIGTERM and holds fd 3.
    let app = sup.script(
        "stubborn.sh",
        &format!(
            "sh -c 'trap \"\" TERM; echo $$ >> {}; exec sleep 1000' &\nexec sleep 1000",
            kids.display()
        ),
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "s",
        "--listen",
        &listen,
        "--min-uptime",
        "200ms",
        "--kill-timeout",
        "500ms",
    ]);
    wait_for("the first child", DEADLINE, || {
        fs::read_to_string(&kids).is_ok_and(|t| t.lines().count() == 1)
    });
    let child: u32 = fs::read_to_string(&kids).unwrap().trim().parse().unwrap();
    sup.ok(&["reload", "s"]);
    wait_for("the old instance's child is killed", DEADLINE, || {
        !alive(child)
    });
    wait_for("only the new instance remains", DEADLINE, || {
        sup.app("s")["instances"].as_array().unwrap().len() == 1
    });
    sup.ok(&["delete", "s"]);
    // The port is free again: nothing of the app holds it.
    wait_for("the port is free", DEADLINE, || {
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    });
}

#[test]
fn events_follow_prints_the_last_few_then_what_happens() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    for i in 0..6 {
        sup.ok(&["start", &app, "--name", &format!("a{i}")]);
    }
    sup.ok(&["delete", "a0"]);
    let history = sup.ok(&["events"]).lines().count();
    assert!(history > 12, "{history} events so far");
    let mut follower = sup
        .command(&["events", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (seen, reader) = collect_stdout(&mut follower);
    wait_for("the last few events", DEADLINE, || {
        seen.lock().unwrap().lines().count() >= 10
    });
    sup.ok(&["stop", "a5"]);
    wait_for("the new event", DEADLINE, || {
        seen.lock().unwrap().contains("a5 stopped")
    });
    follower.kill().unwrap();
    follower.wait().unwrap();
    reader.join().unwrap();
    let text = seen.lock().unwrap().clone();
    let before_new = text
        .lines()
        .take_while(|l| !l.contains("a5 stopped"))
        .count();
    assert!(
        before_new <= 12,
        "follow printed {before_new} past lines: {text}"
    );
    assert!(
        !text.contains("a0 started"),
        "the oldest history came back: {text}"
    );
}

#[test]
fn a_quoted_command_line_is_the_app_and_takes_the_held_socket() {
    let sup = Sup::new();
    // Like gunicorn: web.py takes fd 3 only when LISTEN_PID is its own pid,
    // else it binds $PORT itself. Plain words run directly; a line with an
    // expansion runs as `sh -c 'exec …'`.
    let plain = format!("python3 '{}'", web_app());
    for (name, line) in [("plain", plain.as_str()), ("expands", "python3 \"$WEB\"")] {
        let port = free_port();
        let status = sup
            .command(&[
                "start",
                line,
                "--name",
                name,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ready-http",
                &format!("http://127.0.0.1:{port}/health"),
                "--ready-timeout",
                "5s",
                "--wait",
            ])
            .env("WEB", web_app())
            .env("PORT", free_port().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "{line}");
        let pid = sup.pid(name);
        let body = get(port, "/", Duration::from_secs(3)).unwrap();
        assert!(
            body.ends_with(&format!("\r\n\r\npid {pid}\n")),
            "{line}: {body}"
        );
    }
}

#[test]
fn an_app_that_ignores_the_held_socket_is_diagnosed() {
    let sup = Sup::new();
    // Like an app without systemd socket support: it binds $PORT itself.
    let app = sup.script(
        "own-port.sh",
        &format!("unset LISTEN_FDS\nexec python3 '{}'", web_app()),
    );
    let held = free_port();
    let own = free_port();
    let status = sup
        .command(&[
            "start",
            &app,
            "--name",
            "own",
            "--listen",
            &format!("127.0.0.1:{held}"),
            "--health",
            &format!("http://127.0.0.1:{held}/health"),
            "--health-interval",
            "300ms",
            "--health-timeout",
            "200ms",
        ])
        .env("PORT", own.to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut events = String::new();
    sup.wait("a socket-not-taken event", || {
        events = sup.ok(&["events", "own"]);
        events.contains("socket-not-taken")
    });
    assert!(
        events.contains(&format!("127.0.0.1:{held}")) && events.contains(&format!(":{own}")),
        "{events}"
    );
    let mut page = String::new();
    sup.wait("describe names the port the app took instead", || {
        page = sup.ok(&["describe", "own"]);
        page.contains("does not take the socket")
    });
    assert!(page.contains("fd 3"), "{page}");
}

#[test]
fn an_app_that_exits_because_the_held_port_is_in_use_is_diagnosed() {
    let sup = Sup::new();
    // Like an app that ignores LISTEN_FDS and binds the held port itself:
    // it dies at once with EADDRINUSE, in a restart loop.
    let held = free_port();
    let app = sup.script(
        "bind.py",
        &format!(
            "#!/usr/bin/env python3\nimport socket\nsocket.socket().bind(('127.0.0.1', {held}))\n"
        ),
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "binder",
        "--listen",
        &format!("127.0.0.1:{held}"),
        "--restart-delay",
        "200ms",
    ]);
    let mut events = String::new();
    sup.wait("the diagnosis", || {
        events = sup.ok(&["events", "binder"]);
        events.contains("socket-not-taken")
    });
    assert!(
        events.contains("address already in use") && events.contains(&format!("127.0.0.1:{held}")),
        "{events}"
    );
    sup.wait("more restarts", || {
        sup.app("binder")["restarts"].as_u64() > Some(2)
    });
    let told = sup
        .ok(&["events", "binder"])
        .matches("socket-not-taken")
        .count();
    assert_eq!(told, 1, "told once, not at every crash");
    let page = sup.ok(&["describe", "binder"]);
    assert!(page.contains("address already in use"), "{page}");
}
