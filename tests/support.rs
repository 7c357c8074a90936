//! Test harness: runs the real `sup` binary against a daemon in a private
//! temporary `SUP_HOME`, waits on conditions with deadlines, and always
//! shuts its daemon down, even when a test fails.

#![allow(dead_code)]

use serde_json::Value;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The sup binary under test.
pub const SUP: &str = env!("CARGO_BIN_EXE_sup");

/// Default deadline for a condition.
pub const DEADLINE: Duration = Duration::from_secs(10);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private `SUP_HOME` (and a scratch dir for test apps) with its daemon.
pub struct Sup {
    /// Scratch directory; `home` is inside it.
    pub dir: PathBuf,
    /// The `SUP_HOME`.
    pub home: PathBuf,
    /// Extra environment for every command (and so for the daemon).
    pub env: Vec<(String, String)>,
}

impl Sup {
    /// A fresh home; no daemon runs until a command starts one.
    pub fn new() -> Sup {
        // Short paths: a Unix socket path must fit in 108 bytes.
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/sup-it-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let home = dir.join("home");
        Sup {
            dir,
            home,
            env: Vec::new(),
        }
    }

    /// A fresh home whose daemon tracks apps by tags, not cgroups.
    pub fn by_tags() -> Sup {
        let mut sup = Sup::new();
        sup.env.push(("SUP_CGROUPS".into(), "off".into()));
        sup
    }

    /// The directory of the apps' cgroups, if the daemon runs and uses them.
    pub fn cgroup_dir(&self) -> Option<PathBuf> {
        let out = self.run(&["list", "--json"]);
        let apps: Value = serde_json::from_slice(&out.stdout).ok()?;
        let dir = apps.as_array()?.first()?["tracking"]["cgroup"]
            .as_str()?
            .to_string();
        Some(PathBuf::from(dir))
    }

    /// A `sup` command with this home.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SUP);
        cmd.args(args)
            .env("SUP_HOME", &self.home)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir);
        cmd
    }

    /// Runs `sup ARGS` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run sup")
    }

    /// Runs `sup ARGS`, asserts success and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sup {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon.log ends:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of the daemon's log, for a failure message.
    pub fn daemon_log_tail(&self) -> String {
        let log = fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `sup ARGS`, asserts it fails with `code`, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "sup {args:?}: expected exit {code}; stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `sup list --json`.
    pub fn list(&self) -> Vec<Value> {
        let text = self.ok(&["list", "--json"]);
        serde_json::from_str::<Value>(&text)
            .unwrap_or_else(|e| panic!("list --json is not JSON ({e}): {text}"))
            .as_array()
            .expect("list --json is an array")
            .clone()
    }

    /// One app from `sup list --json`.
    pub fn app(&self, name: &str) -> Value {
        self.list()
            .into_iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no app {name} in list"))
    }

    /// The pid of app `name`'s main process, once it has one.
    pub fn pid(&self, name: &str) -> u32 {
        let mut pid = 0;
        self.wait(&format!("{name} has a pid"), || {
            pid = self.app(name)["pid"].as_u64().unwrap_or(0) as u32;
            pid != 0
        });
        pid
    }

    /// Waits until app `name` has `status`.
    pub fn wait_status(&self, name: &str, status: &str) -> Value {
        let mut app = Value::Null;
        self.wait(&format!("{name} is {status}"), || {
            app = self.app(name);
            app["status"] == status
        });
        app
    }

    /// Polls `cond` until it holds; panics after [`DEADLINE`].
    pub fn wait(&self, what: &str, cond: impl FnMut() -> bool) {
        wait_for(what, DEADLINE, cond)
    }

    /// Writes an executable script into the scratch dir; returns its path.
    pub fn script(&self, name: &str, body: &str) -> String {
        let path = self.dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    /// An app script that echoes whatever the test writes into a FIFO in
    /// the scratch dir: (script, FIFO). Open the FIFO for writing once the
    /// app runs (the open waits for the app to open its end).
    pub fn echo_app(&self) -> (String, PathBuf) {
        let fifo = self.path("feed");
        let made = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(made.success(), "mkfifo failed");
        let app = self.script("echo.sh", &format!("exec cat {} -", fifo.display()));
        (app, fifo)
    }

    /// A path in the scratch dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The running daemon's pid (from its lock file), if one runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.home.join("daemon.lock")).ok()?;
        let pid: u32 = text.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }
}

impl Drop for Sup {
    fn drop(&mut self) {
        // Graceful first; then make sure nothing survives a failed test.
        let daemon = self.daemon_pid();
        let cgroups = daemon.and_then(|_| self.cgroup_dir());
        let _ = self.command(&["kill"]).output();
        if let Some(pid) = daemon.filter(|p| alive(*p)) {
            signal(pid, libc::SIGKILL);
        }
        if let Some(apps) = cgroups.filter(|d| d.exists()) {
            remove_cgroups(&apps);
        }
        if std::env::var_os("SUP_TEST_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Kills what the leaves under `apps` hold and removes them, `apps` and its
/// parent: what a daemon that failed to stop left.
fn remove_cgroups(apps: &Path) {
    let leaves: Vec<PathBuf> = fs::read_dir(apps)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    for leaf in &leaves {
        let _ = fs::write(leaf.join("cgroup.kill"), "1");
    }
    for leaf in &leaves {
        wait_for("a killed cgroup empties", DEADLINE, || {
            fs::read_to_string(leaf.join("cgroup.events"))
                .map_or(true, |t| t.contains("populated 0"))
        });
        let _ = fs::remove_dir(leaf);
    }
    let _ = fs::remove_dir(apps);
    if let Some(base) = apps.parent() {
        let _ = fs::remove_dir(base);
    }
}

/// The cgroup v2 path of `pid` (`0::/path`).
pub fn cgroup_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Pids whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| proc_stat(*p).is_some_and(|(state, ppid, _)| ppid == pid && state != 'Z'))
        .collect()
}

/// Whether the cgroup tests can run: root with a writable cgroup2. In CI
/// (root, writable cgroup2 by DECISIONS) a missing one fails.
pub fn cgroups_here() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let mount = fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|t| t.lines().any(|l| l.contains(" - cgroup2 ")));
    root && mount || !skip("needs root and a writable cgroup2")
}

/// Polls `cond` every few milliseconds until it holds; panics after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (state, parent pid, process group) of `pid`, from `/proc/PID/stat`,
/// whose command name may hold spaces and parentheses.
pub fn proc_stat(pid: u32) -> Option<(char, u32, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Whether `pid` exists and is not a zombie. A killed process whose
/// leader is a zombie while another of its threads still exits (releasing
/// inotify marks takes a moment) still holds its fds, locks and sockets:
/// it counts as alive until every thread is gone.
pub fn alive(pid: u32) -> bool {
    let threads: Vec<PathBuf> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    threads.iter().any(|t| {
        fs::read_to_string(t.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .next()
                    .map(str::to_string)
            })
            .is_some_and(|state| state != "Z")
    })
}

/// Children of `pid` that are zombies.
pub fn zombie_children(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|child| {
            proc_stat(*child).is_some_and(|(state, ppid, _)| state == 'Z' && ppid == pid)
        })
        .collect()
}

/// Pids of processes whose environment holds `SUP_HOME=home` (the daemon
/// and every app it started).
pub fn processes_with_home(home: &Path) -> Vec<u32> {
    let needle = format!("SUP_HOME={}", home.display());
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of live `sup daemon` processes serving `home`.
pub fn daemons_of(home: &Path) -> Vec<u32> {
    processes_with_home(home)
        .into_iter()
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.get(1) == Some(&&b"daemon"[..])
        })
        .collect()
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    let sig = nix::sys::signal::Signal::try_from(sig).expect("a known signal");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Whether the test runs in CI, where a skip must fail instead.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Skips (returns true after printing why), or fails in CI.
pub fn skip(reason: &str) -> bool {
    assert!(!in_ci(), "cannot run in CI: {reason}");
    eprintln!("SKIPPED: {reason}");
    true
}

/// The test HTTP app (`tests/apps/web.py`).
pub fn web_app() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/apps/web.py").to_string()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP GET on a new connection; the body, or why it failed.
pub fn get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e}"))?;
    if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
        Ok(answer)
    } else {
        Err(format!("bad answer: {answer:?}"))
    }
}

/// Pids of the app's instances, by index.
pub fn instance_pids(sup: &Sup, name: &str) -> Vec<(u64, Option<u64>)> {
    sup.app(name)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["index"].as_u64().unwrap(), i["pid"].as_u64()))
        .collect()
}

pub fn all_online(app: &Value, n: usize) -> bool {
    let instances = app["instances"].as_array().unwrap();
    instances.len() == n && instances.iter().all(|i| i["status"] == "online")
}

/// A client that requests `/` on `port` in a loop, counting failures,
/// until `stop` is set.
pub struct Client {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU32>,
    done: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Client {
    /// Starts the loop; with `pause`, it pauses after each request until
    /// the test lets it go on.
    pub fn start(port: u16, pause: Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>) -> Client {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU32::new(0));
        let done = Arc::new(AtomicU32::new(0));
        let (s, f, d) = (stop.clone(), failures.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let mut errors = Vec::new();
            let began = std::time::Instant::now();
            while !s.load(Ordering::SeqCst) {
                if let Err(e) = get(port, "/", Duration::from_secs(10)) {
                    f.fetch_add(1, Ordering::SeqCst);
                    // Which request, and when: enough to tell a failure
                    // at the kill from one during the restart.
                    let n = d.load(Ordering::SeqCst);
                    errors.push(format!("request {n} at {:?}: {e}", began.elapsed()));
                }
                d.fetch_add(1, Ordering::SeqCst);
                if let Some((idle, go)) = &pause {
                    let _ = idle.send(());
                    let _ = go.recv();
                }
            }
            errors
        });
        Client {
            stop,
            failures,
            done,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> (u32, u32, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let errors = self.thread.take().unwrap().join().unwrap();
        (
            self.failures.load(Ordering::SeqCst),
            self.done.load(Ordering::SeqCst),
            errors,
        )
    }
}

/// Kills instance 0 of app `name` (serving `port`) with SIGKILL between two
/// requests of a client loop, and asserts that the loop sees no failure
/// while the instance is restarted and for 50 requests after: nothing is in
/// flight in it, so the others serve every request from the kill on.
pub fn kill_one_instance_under_a_client_loop(sup: &Sup, name: &str, port: u16) {
    let n = instance_pids(sup, name).len();
    let (idle_tx, idle_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let client = Client::start(port, Some((idle_tx, go_rx)));
    idle_rx.recv().unwrap();
    let before = instance_pids(sup, name);
    let victim = before[0].1.unwrap() as u32;
    signal(victim, libc::SIGKILL);
    go_tx.send(()).unwrap();
    sup.wait("instance 0 restarted", || {
        let a = sup.app(name);
        a["instances"][0]["pid"]
            .as_u64()
            .is_some_and(|p| p as u32 != victim)
            && all_online(&a, n)
    });
    for _ in 0..50 {
        idle_rx.recv().unwrap();
        go_tx.send(()).unwrap();
    }
    drop(go_tx);
    let (failures, done, errors) = client.finish();
    assert!(done >= 50);
    assert_eq!(
        failures,
        0,
        "failed requests: {errors:?}; instances before {before:?}, after {:?}; events:\n{}",
        instance_pids(sup, name),
        sup.ok(&["events", name])
    );
}

/// Reloads app `name` (serving `port`) while a client loop runs, and asserts
/// that every instance was replaced, keeping its index, and that no request
/// failed.
pub fn reload_under_a_client_loop(sup: &Sup, name: &str, port: u16) {
    let before = instance_pids(sup, name);
    let client = Client::start(port, None);
    let out = sup.ok(&["reload", name, "--timeout", "60s"]);
    assert!(out.contains("reloaded"), "{out}");
    let after = instance_pids(sup, name);
    let (failures, done, errors) = client.finish();
    assert_eq!(after.len(), before.len());
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.0, new.0);
        assert_ne!(old.1, new.1, "instance {} was replaced", old.0);
    }
    assert!(done > 0);
    assert_eq!(failures, 0, "{failures} of {done} failed: {errors:?}");
}

/// Starts `web.py` as `web` on a held port with `extra` flags, ready by
/// sd_notify once the returned file exists (it does at first); waits until
/// it is ready. Returns the port and that file.
pub fn start_notifying_web(sup: &Sup, extra: &[&str]) -> (u16, PathBuf) {
    let ready = sup.path("ready");
    fs::write(&ready, "").unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = web_app();
    let mut args = vec!["start", app.as_str(), "--name", "web", "--listen", &listen];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--ready-notify", "--ready-timeout", "1s", "--wait"]);
    let status = sup
        .command(&args)
        .env("READY_FILE", &ready)
        .status()
        .unwrap();
    assert!(status.success(), "sup start web failed");
    (port, ready)
}

/// Collects what `child` prints on stdout, as it comes, in the background.
pub fn collect_stdout(
    child: &mut std::process::Child,
) -> (
    std::sync::Arc<std::sync::Mutex<String>>,
    std::thread::JoinHandle<()>,
) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stdout = child.stdout.take().expect("a piped stdout");
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (seen, reader)
}
