//! Node apps that were never changed, on sockets sup holds: the preload
//! makes their `listen(PORT)` adopt the handed-over fd.

use crate::support::*;
use std::collections::HashSet;
use std::time::Duration;

/// The preload told the daemon `what` of `name`'s listen(): `describe`
/// shows it, and the app's own logs never do.
fn told(sup: &Sup, name: &str, what: &str) {
    wait_for(&format!("describe {name} says {what:?}"), DEADLINE, || {
        sup.ok(&["describe", name]).contains(what)
    });
    let err =
        std::fs::read_to_string(sup.home.join(format!("logs/{name}-err.log"))).unwrap_or_default();
    assert!(!err.contains("[sup]"), "{err}");
}

/// Whether `node` runs here (it must in CI).
fn have_node() -> bool {
    let ok = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok || !skip("node is not installed")
}

/// Starts `app` as `name` with `n` instances on a held 127.0.0.1 port,
/// telling it that port in `PORT` only; returns the port.
fn start_on_held_port(sup: &Sup, app: &str, name: &str, n: &str) -> u16 {
    start_on_held(sup, app, name, n, "127.0.0.1")
}

/// [`start_on_held_port`] with `--listen HOST:PORT` (HOST may be empty).
fn start_on_held(sup: &Sup, app: &str, name: &str, n: &str, host: &str) -> u16 {
    let port = free_port();
    let listen = format!("{host}:{port}");
    let args = ["start", app, "--name", name, "-i", n, "--listen", &listen];
    let out = sup
        .command(&[&args[..], &["--wait"]].concat())
        .env("PORT", port.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    port
}

fn repo_file(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn an_unmodified_node_app_serves_the_held_socket_from_every_instance() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let port = start_on_held_port(&sup, &repo_file("examples/unmodified.js"), "u", "2");
    // One accept queue: the kernel hands connections to both, in no set order.
    both_instances_answer(&sup, "u", port);
    told(&sup, "u", "adopts the held socket");
    kill_one_instance_under_a_client_loop(&sup, "u", port);
    // It has no SIGTERM handler: the preload drains it, so a rolling reload
    // cuts no request the old instances had accepted.
    reload_under_a_client_loop(&sup, "u", port);
}

#[test]
fn a_port_alone_is_held_on_every_address_and_adopted_by_listen_port() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let port = start_on_held(&sup, &repo_file("examples/unmodified.js"), "w", "1", "");
    wait_for("it serves on IPv4", DEADLINE, || {
        get(port, "/", Duration::from_secs(5)).is_ok()
    });
    told(&sup, "w", &format!("adopts the held socket :{port}"));
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let mut s = std::net::TcpStream::connect(("::1", port)).expect("IPv6 too");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
        assert!(answer.contains("hello from pid"), "{answer}");
    }
}

/// Asserts that both instances of `name` answer on `port`.
fn both_instances_answer(sup: &Sup, name: &str, port: u16) {
    sup.wait("both online", || all_online(&sup.app(name), 2));
    let pids: HashSet<String> = instance_pids(sup, name)
        .iter()
        .map(|(_, pid)| pid.unwrap().to_string())
        .collect();
    let mut seen = HashSet::new();
    wait_for("both instances answered", DEADLINE, || {
        let body = get(port, "/", Duration::from_secs(5)).unwrap();
        let pid = body.trim_end().rsplit(' ').next().unwrap().to_string();
        assert!(pids.contains(&pid), "{pid} is not an instance: {body}");
        seen.insert(pid);
        seen.len() == 2
    });
}

#[test]
fn a_pm2_cluster_app_without_listen_shares_one_socket_the_daemon_binds() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let port = free_port();
    let app = repo_file("examples/unmodified.js");
    let file = format!(
        "module.exports = {{ apps: [{{ name: 'c', script: {app:?}, instances: 2,\n\
         exec_mode: 'cluster', env: {{ PORT: {port} }} }}] }};\n"
    );
    std::fs::write(sup.path("ecosystem.config.js"), file).unwrap();
    sup.ok(&["start", "ecosystem.config.js", "--wait"]);
    // Online is before the app's first listen(): the address is bound then.
    wait_for("it serves", DEADLINE, || {
        get(port, "/", Duration::from_secs(5)).is_ok()
    });
    both_instances_answer(&sup, "c", port);
    told(
        &sup,
        "c",
        &format!("adopts the socket sup holds at :{port}"),
    );
    // Held from now on: in the spec, and a new instance gets it at spawn.
    let export = sup.ok(&["export"]);
    assert!(export.contains(&format!("\":{port}\"")), "{export}");
    kill_one_instance_under_a_client_loop(&sup, "c", port);
    told(&sup, "c", &format!("adopts the held socket :{port} (fd 3)"));
    both_instances_answer(&sup, "c", port);
    // The file, which names no address, applies again without losing it.
    let out = sup.ok(&["reload", "ecosystem.config.js"]);
    assert!(out.contains("c: unchanged"), "{out}");
    sup.ok(&["restart", "ecosystem.config.js"]);
    both_instances_answer(&sup, "c", port);
}

#[test]
fn the_preload_adopts_only_held_addresses_and_only_in_the_instance() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let app = repo_file("tests/apps/listen_variants.js");
    let port = start_on_held_port(&sup, &app, "v", "1");
    let mut body = String::new();
    wait_for("it serves", DEADLINE, || {
        get(port, "/", Duration::from_secs(5)).is_ok_and(|b| {
            body = b;
            true
        })
    });
    let answer = body.split("\r\n\r\n").nth(1).unwrap();
    let words: Vec<&str> = answer.split(' ').collect();
    assert_eq!(words[0], "other");
    let other: u16 = words[1].parse().unwrap();
    assert_ne!(other, port, "listen(0) got a port of its own");
    assert_eq!(words[2..], ["child", "EADDRINUSE"], "{answer}");
}

#[test]
fn a_stopped_instance_finishes_the_requests_it_accepted() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let mark = sup.path("mark");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = repo_file("tests/apps/slow.js");
    let out = sup
        .command(&["start", &app, "--name", "s", "--listen", &listen, "--wait"])
        .env("PORT", port.to_string())
        .env("MARK", &mark)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let request = std::thread::spawn(move || get(port, "/", Duration::from_secs(10)));
    wait_for("the request arrived", DEADLINE, || mark.exists());
    // Node's default on SIGTERM is to die at once; the preload drains.
    sup.ok(&["restart", "s"]);
    let answer = request.join().unwrap();
    assert!(answer.is_ok_and(|a| a.ends_with("done")));
}

#[test]
fn wait_ready_waits_for_process_send_ready() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let mark = sup.path("mark");
    let app = repo_file("tests/apps/wait_ready.js");
    // Longer than --min-uptime, which alone would count as ready.
    let started = std::time::Instant::now();
    let out = sup
        .command(&["start", &app, "--name", "r", "--wait-ready", "--wait"])
        .env("MARK", &mark)
        .env("DELAY_MS", "2500")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        mark.exists(),
        "start --wait returned before the app sent 'ready'"
    );
    assert!(started.elapsed() >= Duration::from_millis(2500));
    assert_eq!(sup.app("r")["status"], "online");
}

#[test]
fn update_hands_over_the_ipc_channels_and_a_late_listen_still_gets_its_socket() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let port = free_port();
    std::fs::write(
        sup.path("app.js"),
        format!(
            "process.on('disconnect', () => {{ console.error('channel closed'); process.exit(7); }});\n\
             setInterval(() => process.send({{ ping: 1 }}), 50);\n\
             setTimeout(() => require('http').createServer((q, s) => s.end('late ' + process.pid))\
             .listen({port}), 1500);\n"
        ),
    )
    .unwrap();
    std::fs::write(
        sup.path("ecosystem.config.js"),
        "module.exports = { apps: [{ name: 'ipc', script: 'app.js', exec_mode: 'cluster', instances: 2 }] };\n",
    )
    .unwrap();
    sup.ok(&["start", "ecosystem.config.js"]);
    let pids = |sup: &Sup| -> Vec<u64> {
        let app = sup.app("ipc");
        app["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["pid"].as_u64())
            .collect()
    };
    sup.wait("both online", || all_online(&sup.app("ipc"), 2));
    let before = pids(&sup);
    let out = sup.ok(&["update"]);
    assert!(out.contains("daemon updated"), "{out}");
    // The app listens after the update: its preload asks the new daemon.
    wait_for("it serves on the late port", DEADLINE, || {
        get(port, "/", Duration::from_secs(2)).is_ok_and(|answer| {
            answer
                .split("late ")
                .nth(1)
                .and_then(|p| p.trim().parse().ok())
                .is_some_and(|p: u64| before.contains(&p))
        })
    });
    let app = sup.app("ipc");
    assert_eq!(pids(&sup), before, "{app}");
    assert_eq!(app["restarts"], 0, "{app}");
    let err = std::fs::read_to_string(sup.home.join("logs/ipc-err.log")).unwrap_or_default();
    assert!(!err.contains("channel closed"), "{err}");
    sup.ok(&["kill"]);
}

#[test]
fn a_listen_on_another_port_than_the_held_one_is_shown_and_never_bound() {
    if !have_node() {
        return;
    }
    let sup = Sup::new();
    let (held, own) = (free_port(), free_port());
    std::fs::write(
        sup.path("app.js"),
        format!("require('http').createServer((q, s) => s.end('hi')).listen({own});\n"),
    )
    .unwrap();
    sup.ok(&[
        "start",
        "app.js",
        "--name",
        "m",
        "-i",
        "2",
        "--listen",
        &format!("127.0.0.1:{held}"),
    ]);
    told_mismatch(&sup, held);
    // The daemon bound nothing the user did not ask for: only the held port.
    let daemon = std::fs::read_to_string(sup.home.join("daemon.lock")).unwrap();
    let ports = listening_ports_of(daemon.trim());
    assert!(ports.contains(&held) && !ports.contains(&own), "{ports:?}");
    sup.ok(&["kill"]);
}

fn told_mismatch(sup: &Sup, held: u16) {
    wait_for("list shows the mismatch", DEADLINE, || {
        sup.ok(&["list"]).contains("listen mismatch")
    });
    let page = sup.ok(&["describe", "m"]);
    assert!(
        page.contains("is not an address sup holds") && page.contains(&format!(":{held}")),
        "{page}"
    );
}

/// TCP ports a process listens on: its socket inodes, found in /proc/net.
fn listening_ports_of(pid: &str) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN; field 9 is the inode.
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}
