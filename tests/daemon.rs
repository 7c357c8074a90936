//! The daemon itself: on-demand start, one daemon per home, its socket's
//! security, and resilience to bad clients.

use crate::support::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn racing_starts_on_a_cold_home_make_one_daemon() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    let children: Vec<_> = (0..4)
        .map(|i| {
            sup.command(&["start", &app, "--name", &format!("a{i}")])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    assert_eq!(sup.list().len(), 4);
    let daemons = daemons_of(&sup.home);
    assert_eq!(daemons.len(), 1, "daemons: {daemons:?}");
}

#[test]
fn ping_reports_version_and_pid() {
    let sup = Sup::new();
    let err = sup.fails(&["ping"], 1);
    assert!(err.contains("not running"), "{err}");
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app]);
    let out = sup.ok(&["ping"]);
    let daemon = sup.daemon_pid().unwrap();
    assert!(
        out.contains(env!("CARGO_PKG_VERSION")) && out.contains(&daemon.to_string()),
        "{out}"
    );
    // `sup daemon` in the foreground refuses to be a second daemon.
    // Exit code 75 (EX_TEMPFAIL): the systemd unit does not restart on it.
    let err = sup.fails(&["daemon"], 75);
    assert!(err.contains("already running"), "{err}");
}

#[test]
fn home_and_socket_are_private() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&sup.home), 0o700);
    assert_eq!(mode(&sup.home.join("sup.sock")), 0o600);
    let log = sup.home.join("logs/app-out.log");
    wait_for("the log file exists", DEADLINE, || log.exists());
    assert_eq!(mode(&log), 0o600);
}

/// Runs `sup list` as `nobody`, or None when this can't be done here.
fn list_as_nobody(sup: &Sup) -> Option<std::process::Output> {
    if !nix_is_root() {
        skip("needs root to run a command as nobody");
        return None;
    }
    // As uid/gid 65534 (nobody on most distributions). A copy in the
    // scratch dir, so that nobody can run it whatever the
    // permissions of the checkout are.
    let sup_copy = sup.path("sup-copy");
    if !sup_copy.exists() {
        std::fs::copy(SUP, &sup_copy).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&sup_copy)
        .arg("list")
        .env("SUP_HOME", &sup.home)
        .output();
    match out {
        Ok(out) => Some(out),
        Err(e) => {
            skip(&format!("setpriv unavailable: {e}"));
            None
        }
    }
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn another_user_is_refused_by_permissions_and_by_the_daemon() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app]);
    // Layer 1: the 0700 home keeps nobody out.
    let Some(out) = list_as_nobody(&sup) else {
        return;
    };
    assert!(
        !out.status.success(),
        "nobody listed apps: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Layer 2: with the permissions opened up, the daemon's peer check refuses.
    for (path, mode) in [
        (sup.dir.clone(), 0o755),
        (sup.home.clone(), 0o755),
        (sup.home.join("sup.sock"), 0o777),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = list_as_nobody(&sup).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not use"), "{err}");
    assert_eq!(sup.list().len(), 1, "the daemon still serves its owner");
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn read_answer(stream: &mut UnixStream) -> String {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn garbage_on_the_socket_does_not_hurt_the_daemon() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app]);
    let sock = sup.home.join("sup.sock");
    let connect = || {
        let s = UnixStream::connect(&sock).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // Malformed JSON: an error answer, and the connection stays usable.
    let mut s = connect();
    s.write_all(&frame(b"{not json")).unwrap();
    assert!(read_answer(&mut s).contains("malformed"));
    s.write_all(&frame(
        br#"{"proto":1,"client":"x","request":{"op":"ping"}}"#,
    ))
    .unwrap();
    assert!(read_answer(&mut s).contains("pong"));
    // Wrong version: a clear answer.
    let mut s = connect();
    s.write_all(&frame(
        br#"{"proto":999,"client":"9.9.9","request":{"op":"list"}}"#,
    ))
    .unwrap();
    let answer = read_answer(&mut s);
    assert!(
        answer.contains("version") && answer.contains("9.9.9"),
        "{answer}"
    );
    // Oversized: an error, then the daemon hangs up.
    let mut s = connect();
    s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(read_answer(&mut s).contains("limit"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
    // Truncated, then gone; random bytes; an idle connection left open.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 100, b'{']).unwrap();
    drop(s);
    let mut s = connect();
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]).unwrap();
    drop(s);
    let _idle = connect();
    // The daemon goes on serving.
    assert_eq!(sup.list().len(), 1);
    sup.ok(&["ping"]);
}

/// The daemon's resident memory, in KiB.
fn daemon_rss_kib(sup: &Sup) -> u64 {
    let pid = sup.daemon_pid().expect("a daemon");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn many_large_requests_at_once_stay_within_a_memory_budget() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "a"]);
    let sock = sup.home.join("sup.sock");
    // 0.1.0 read a body of up to 4 MiB per connection with no total bound:
    // 200 such connections took the daemon to 824 MB.
    let len: u32 = 1024 * 1024 - 16;
    // Each sends all but the last byte (the daemon holds what it read,
    // waiting for the rest), in parallel; a sender the daemon does not read
    // gives up after a while.
    let senders: Vec<_> = (0..100)
        .map(|_| {
            let mut s = UnixStream::connect(&sock).unwrap();
            std::thread::spawn(move || {
                s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                s.write_all(&len.to_be_bytes()).unwrap();
                let _ = s.write_all(&vec![b' '; len as usize - 1]);
                s
            })
        })
        .collect();
    let held: Vec<UnixStream> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    // Others are still served, and memory stays bounded.
    let out = sup.ok(&["list"]);
    assert!(
        out.contains("no apps") || out.is_empty() || out.contains("id"),
        "{out}"
    );
    let rss = daemon_rss_kib(&sup);
    assert!(
        rss < 64 * 1024,
        "daemon RSS {rss} KiB with 100 large requests pending"
    );
    // A body over the request limit is refused at its header.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&(2u32 * 1024 * 1024).to_be_bytes()).unwrap();
    assert!(read_answer(&mut s).contains("limit"));
    drop(held);
    sup.ok(&["ping"]);
}

/// spawn passes at most `MAX_LISTEN` held sockets on: more are refused at
/// the flag, and by the daemon when a client asks anyway.
#[test]
fn more_sockets_than_an_app_can_get_are_refused() {
    use sup_proto::spec::{AppSpec, Program, MAX_LISTEN};
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    let addrs: Vec<String> = (0..=MAX_LISTEN)
        .map(|i| sup.path(&format!("s{i}.sock")).display().to_string())
        .collect();
    let mut args = vec!["start", app.as_str(), "--name", "many"];
    for addr in &addrs {
        args.extend(["--listen", addr.as_str()]);
    }
    let err = sup.fails(&args, 1);
    assert!(err.contains("at most 64"), "{err}");
    // The CLI refused before a daemon was even needed; start one.
    sup.ok(&["start", &app, "--name", "one"]);
    let spec = AppSpec {
        name: "many".into(),
        program: Program::Exec { path: app.clone() },
        cwd: sup.dir.display().to_string(),
        listen: addrs,
        ..AppSpec::default()
    };
    let request = sup_proto::RequestEnvelope::new(sup_proto::Request::Add {
        spec: Box::new(spec),
        wait: false,
    });
    let mut s = UnixStream::connect(sup.home.join("sup.sock")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&sup_proto::encode_frame(&request).unwrap())
        .unwrap();
    let answer = read_answer(&mut s);
    assert!(
        answer.contains("bad_request") && answer.contains("at most 64"),
        "{answer}"
    );
    assert!(!sup.path("s0.sock").exists(), "nothing was bound");
    assert_eq!(sup.list().len(), 1, "the daemon goes on serving");
}

/// `list` once a second (as `watch`, `monit` and the dashboard do) answers
/// with figures read off the loop: an app that grows is shown grown within
/// a couple of lists, long before figures would be read on the loop again
/// (5 s), and a list never waits for the reads.
#[test]
fn figures_listed_in_a_loop_follow_an_app_that_grows() {
    let sup = Sup::new();
    let (go, grown) = (sup.path("go"), sup.path("grown"));
    let grow = format!(
        "import os, time\nwhile not os.path.exists({go:?}): time.sleep(0.05)\n\
         held = b'x' * (96 << 20)\nopen({grown:?}, 'w').close()\ntime.sleep(1000)\n"
    );
    std::fs::write(sup.path("grow.py"), grow).unwrap();
    let app = sup.script(
        "grow.sh",
        &format!("exec python3 {:?}", sup.path("grow.py")),
    );
    sup.ok(&["start", &app, "--name", "grow"]);
    let memory = || sup.app("grow")["memory"].as_u64().unwrap();
    sup.wait("figures are shown", || memory() > 0);
    assert!(memory() < 64 << 20, "{}", memory());
    std::fs::write(&go, "").unwrap();
    wait_for("the app grew", DEADLINE, || grown.exists());
    let since = std::time::Instant::now();
    wait_for("the list shows it grown", DEADLINE, || memory() > 90 << 20);
    let seen = since.elapsed();
    assert!(
        seen < Duration::from_millis(3500),
        "seen after {seen:?}: only a read on the loop (at 5 s) found it"
    );
}

/// Spawns of a batch are handed to the spawn thread while the daemon goes
/// on: an app that exits, or says READY=1, before the daemon has read its
/// spawn's outcome must still be seen to.
#[test]
fn a_batch_whose_apps_exit_or_say_ready_at_once_loses_neither() {
    let sup = Sup::new();
    let ready = "import os, socket, time\n\
                 s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
                 s.connect(os.environ['NOTIFY_SOCKET'])\n\
                 s.send(b'READY=1')\n\
                 time.sleep(1000)\n";
    let mut file = String::new();
    for i in 0..100 {
        file.push_str(&format!(
            "[[app]]\nname = \"quick{i}\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"exit {}\"]\nrestart = \"no\"\n\n",
            i % 3
        ));
    }
    for i in 0..20 {
        file.push_str(&format!(
            "[[app]]\nname = \"ready{i}\"\nscript = \"/usr/bin/python3\"\nargs = [\"-c\", {ready:?}]\n\
             health = {{ readiness = {{ kind = \"notify\" }} }}\n\n"
        ));
    }
    let path = sup.path("sup.toml");
    fs::write(&path, file).unwrap();
    sup.run(&["start", path.to_str().unwrap()]);
    sup.wait(
        "every quick app exited and every ready one is online",
        || {
            let list = sup.list();
            list.len() == 120
                && list.iter().all(|a| {
                    let name = a["name"].as_str().unwrap_or_default();
                    match name.strip_prefix("quick") {
                        Some(i) => {
                            let code = i.parse::<i64>().unwrap() % 3;
                            a["status"] == "stopped" && a["last_exit_code"] == code
                        }
                        None => a["status"] == "online",
                    }
                })
        },
    );
}

/// With hundreds of children, SIGCHLD no longer walks them all at once:
/// an instance whose cgroup empties is reaped alone, and the walk for the
/// rest comes a little later. Nothing may be left unreaped for it: an
/// orphan re-parented to the daemon, a main process whose group lives on,
/// an instance killed.
#[test]
fn with_hundreds_of_children_every_exit_is_still_reaped() {
    let sup = Sup::new();
    let mut file = String::new();
    for i in 0..300 {
        file.push_str(&format!(
            "[[app]]\nname = \"idle{i}\"\nscript = \"/bin/sleep\"\nargs = [\"1000\"]\n\n"
        ));
    }
    // Leaves an orphan that the daemon, as subreaper, must reap.
    file.push_str("[[app]]\nname = \"forker\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"(sleep 0.3 &); exec sleep 1000\"]\n\n");
    // Its main process exits while a child of it lives on.
    file.push_str("[[app]]\nname = \"parent\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"sleep 0.3 & exit 3\"]\nrestart = \"on-failure\"\nrestart_delay_ms = 60000\n\n");
    let path = sup.path("sup.toml");
    fs::write(&path, file).unwrap();
    sup.ok(&["start", path.to_str().unwrap()]);
    if sup.cgroup_dir().is_none() && skip("cgroup tracking is off here") {
        return;
    }
    let daemon = sup.daemon_pid().unwrap();
    let victim = sup.pid("idle7");
    signal(victim, libc::SIGKILL);
    sup.wait("the killed instance is back with a new pid", || {
        let app = sup.app("idle7");
        app["status"] == "online" && app["pid"].as_u64().is_some_and(|p| p != u64::from(victim))
    });
    sup.wait(
        "the exit of a main process whose group lived on is seen",
        || sup.app("parent")["last_exit_code"] == 3,
    );
    sup.wait("no child of the daemon is left a zombie", || {
        zombie_children(daemon).is_empty()
    });
}
