//! Hardening round 3: each fault an attack on fda98b0 found, driven through
//! the real binary.

use crate::support::*;
use std::fs;
use std::os::unix::fs::symlink;

/// Gives the link at `path` to nobody, as if nobody had planted it.
fn nobody_owns(path: &std::path::Path) {
    std::os::unix::fs::lchown(path, Some(65534), None).expect("the tests run as root");
}

#[test]
fn a_nul_byte_in_an_env_value_is_refused_and_nothing_is_registered() {
    let sup = Sup::new();
    fs::write(
        sup.path("apps.json"),
        r#"{"apps":[{"name":"ok","script":"sleep","args":"310"},
                    {"name":"nul","script":"sleep","args":"311","env":{"TOKEN":"a\u0000b"}}]}"#,
    )
    .unwrap();
    let err = sup.fails(&["start", "apps.json"], 2);
    assert!(
        err.contains("\"nul\"") && err.contains("variable TOKEN") && err.contains("NUL"),
        "{err}"
    );
    // Refused before the daemon was asked: not even the good app runs.
    assert!(!sup.home.join("sup.sock").exists() || sup.list().is_empty());
    sup.ok(&["kill"]);
}

#[test]
fn bad_env_keys_and_exit_codes_are_refused_with_exit_2() {
    let sup = Sup::new();
    fs::write(
        sup.path("sup.toml"),
        "[[app]]\nname = \"k\"\nscript = \"sleep\"\nargs = [\"312\"]\n[app.env]\n\"A=B\" = \"1\"\n",
    )
    .unwrap();
    let err = sup.fails(&["start", "sup.toml"], 2);
    assert!(err.contains("cannot hold `=`"), "{err}");
    let err = sup.fails(&["start", "sleep 313", "--stop-exit-codes", "0,256"], 2);
    assert!(err.contains("256"), "{err}");
    let err = sup.fails(&["start", "sleep 313", "--stop-exit-codes", "-1"], 2);
    assert!(err.contains("-1"), "{err}");
    assert!(!sup.home.join("sup.sock").exists());
}

#[test]
fn minus_zero_instances_means_one_per_cpu() {
    let sup = Sup::new();
    sup.ok(&["start", "sleep 314", "--name", "z", "-i", "-0"]);
    let cpus = std::thread::available_parallelism().unwrap().get();
    let app = sup.app("z");
    assert_eq!(app["instances"].as_array().unwrap().len(), cpus, "{app}");
    sup.ok(&["kill"]);
}

#[test]
fn env_file_errors_never_quote_the_file() {
    let sup = Sup::new();
    fs::write(sup.path("secret"), "root:*:20228:0:99999:7:::\n").unwrap();
    symlink(sup.path("secret"), sup.path("linked.env")).unwrap();
    nobody_owns(&sup.path("linked.env"));
    let err = sup.fails(&["start", "sleep 315", "--env-file", "secret"], 2);
    assert!(
        err.contains("secret:1:26") && err.contains("expected `=`"),
        "{err}"
    );
    assert!(!err.contains("20228") && !err.contains("root:"), "{err}");
    // A link is not followed at all.
    let err = sup.fails(&["start", "sleep 315", "--env-file", "linked.env"], 2);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!err.contains("20228"), "{err}");
    // One's own link (a deploy's `.env -> .env.production`) is followed.
    fs::write(sup.path(".env.production"), "MODE=prod\n").unwrap();
    symlink(".env.production", sup.path(".env")).unwrap();
    sup.ok(&["start", "sleep 315", "--name", "own", "--env-file", ".env"]);
    let app = sup.wait_status("own", "online");
    let environ = fs::read(format!("/proc/{}/environ", app["pid"])).unwrap();
    assert!(environ.split(|b| *b == 0).any(|v| v == b"MODE=prod"));
    sup.ok(&["kill"]);
}

#[test]
fn an_env_file_that_is_a_fifo_is_refused_at_once() {
    let sup = Sup::new();
    let fifo = sup.path("env.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let started = std::time::Instant::now();
    let err = sup.fails(&["start", "sleep 316", "--env-file", "env.fifo"], 2);
    assert!(err.contains("not a regular file"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_log_path_through_a_planted_directory_link_is_refused() {
    let sup = Sup::new();
    // A root-only directory, and a link to it where anyone could plant one.
    let private = sup.path("private");
    fs::create_dir(&private).unwrap();
    fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let planted = sup.path("planted");
    symlink(&private, &planted).unwrap();
    nobody_owns(&planted);
    let out = planted.join("out.log");
    sup.ok(&[
        "start",
        "sleep 317",
        "--name",
        "l",
        "-o",
        out.to_str().unwrap(),
        "--wait",
    ]);
    let page = sup.ok(&["describe", "l"]);
    assert!(page.contains("symbolic link"), "{page}");
    assert_eq!(fs::read_dir(&private).unwrap().count(), 0);
    sup.ok(&["kill"]);
}

#[test]
fn a_config_that_never_finishes_is_killed_at_the_timeout_and_named() {
    let sup = Sup::new();
    fs::write(
        sup.path("ecosystem.config.js"),
        "while (true) {}\nmodule.exports = { apps: [] };\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = sup.fails(&["start", "ecosystem.config.js", "--timeout", "1s"], 2);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        err.contains("ecosystem.config.js") && err.contains("did not finish loading in 1s"),
        "{err}"
    );
    // Node is gone.
    let pid: u32 = err
        .split("node (pid ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .and_then(|p| p.parse().ok())
        .expect("the pid in the error");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_pm2_file_that_prints_while_loading_loads_and_its_output_goes_to_stderr() {
    let sup = Sup::new();
    fs::write(
        sup.path("ecosystem.config.js"),
        "console.log('loading config');\nconsole.error('still loading');\n\
         module.exports = { apps: [{ name: 'chatty', script: 'sleep', args: '318' }] };\n",
    )
    .unwrap();
    let out = sup.run(&["start", "ecosystem.config.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("loading config") && stderr.contains("still loading"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("loading config"));
    sup.wait_status("chatty", "online");
    sup.ok(&["kill"]);
}

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: std::path::PathBuf, size: &str) -> Tmpfs {
        fs::create_dir_all(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&at)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mounting a tmpfs needs root (the tests run as root)");
        Tmpfs(at)
    }

    /// Fills it until the kernel says ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut f = fs::File::create(self.0.join("fill")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }

    fn free(&self) {
        fs::remove_file(self.0.join("fill")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_never_stops_supervision_and_the_lost_lines_are_counted() {
    let base = Sup::new();
    let disk = Tmpfs::mount(base.path("small"), "1m");
    let mut sup = Sup::new();
    sup.home = disk.0.join("home");
    sup.ok(&["start", "sleep 320", "--name", "a"]);
    let daemon = fs::read_to_string(sup.home.join("daemon.lock")).unwrap();
    disk.fill();
    for i in 0..60 {
        let err = sup.fails(
            &[
                "start",
                &format!("sleep {}", 400 + i),
                "--name",
                &format!("b{i}"),
            ],
            1,
        );
        assert!(err.contains("No space left"), "{err}");
    }
    // Still supervising: a killed app comes back.
    let old = sup.app("a")["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    sup.wait("a restarted", || {
        sup.app("a")["pid"].as_u64().is_some_and(|p| p != old)
    });
    assert_eq!(
        fs::read_to_string(sup.home.join("daemon.lock")).unwrap(),
        daemon
    );
    disk.free();
    sup.ok(&["start", "sleep 321", "--name", "c"]);
    let log = fs::read_to_string(sup.home.join("daemon.log")).unwrap();
    assert!(
        log.lines().any(|l| l.starts_with("[sup: ")
            && l.contains("lines of the daemon's log dropped: No space left")),
        "{log}"
    );
    // A daemon starts on a full disk.
    sup.ok(&["kill"]);
    disk.fill();
    sup.ok(&["list"]);
    sup.ok(&["kill"]);
}

#[test]
fn twenty_thousand_idle_connections_starve_neither_the_cli_nor_respawns() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let sup = Sup::new();
    sup.ok(&["start", "sleep 322", "--name", "a"]);
    let socket = sup.home.join("sup.sock");
    // As many as this process may open, up to 20,000, leaving room for the
    // commands run meanwhile.
    let n = (hard.min(20_200) as usize).saturating_sub(200);
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {} refused: {e}", idle.len()),
        }
    }
    let started = std::time::Instant::now();
    let apps = sup.list();
    assert_eq!(apps.len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    let old = apps[0]["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    sup.wait("a restarted", || {
        let app = sup.app("a");
        app["status"] == "online" && app["pid"].as_u64().is_some_and(|p| p != old)
    });
    let daemon: u32 = fs::read_to_string(sup.home.join("daemon.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let fds = fs::read_dir(format!("/proc/{daemon}/fd")).unwrap().count();
    assert!(
        fds < 1_000,
        "the daemon holds {fds} fds with {n} idle connections"
    );
    drop(idle);
    sup.ok(&["kill"]);
}

#[test]
fn running_out_of_fds_at_a_respawn_is_retried_not_errored() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 340");
    sup.ok(&["start", &app, "--name", "fds", "--restart-delay", "100ms"]);
    let pid = sup.wait_status("fds", "online")["pid"].as_u64().unwrap();
    let daemon = fs::read_to_string(sup.home.join("daemon.lock"))
        .unwrap()
        .trim()
        .to_string();
    let limit = |n: usize| {
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &daemon, &format!("--nofile={n}:")])
            .status()
            .expect("prlimit (util-linux)")
            .success();
        assert!(ok);
    };
    // No new fd for the daemon: every respawn fails with EMFILE (and no
    // command can connect, so the log tells).
    limit(3);
    signal(pid as u32, libc::SIGKILL);
    let log = sup.home.join("daemon.log");
    sup.wait("respawns failed for want of fds", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        text.matches("Too many open files").count() >= 2
    });
    // The error says what limit was reached and what to do.
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("open-file limit (3; each running instance holds 2, and 2 more until"),
        "{text}"
    );
    limit(1024);
    sup.wait("back online once fds are free", || {
        let app = sup.app("fds");
        app["status"] == "online" && app["pid"].as_u64() != Some(pid)
    });
    sup.ok(&["kill"]);
}
