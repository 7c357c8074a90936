//! `sup run` as a container's entrypoint: PID 1 of a new PID namespace
//! (`unshare --pid --fork --mount-proc`, as root), with the duties of an
//! init: apps started, orphans reaped, a graceful stop on SIGTERM, the
//! apps' exit code, logs on stdout, and the usual CLI from a second shell.

use crate::support::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `sup run ARGS` as PID 1 of a new PID namespace, its stdout piped.
struct Pid1 {
    unshare: Child,
    /// Its pid as seen from here (1 inside).
    sup: u32,
}

impl Pid1 {
    fn start(sup: &Sup, args: &[&str]) -> Option<Pid1> {
        if !nix::unistd::geteuid().is_root() {
            skip("a PID namespace needs root");
            return None;
        }
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(env!("CARGO_BIN_EXE_sup"))
            .arg("run")
            .args(args)
            .env("SUP_HOME", &sup.home)
            .current_dir(&sup.dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let Ok(unshare) = unshare else {
            skip("unshare (util-linux) is not installed");
            return None;
        };
        let mut unshare = unshare;
        let mut found = None;
        // A short run may be over before it is seen.
        wait_for("sup run started", DEADLINE, || {
            found = children_of(unshare.id()).first().copied();
            found.is_some() || unshare.try_wait().unwrap().is_some()
        });
        let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
        if let Some(pid) = found {
            assert_ne!(ns(pid), ns(std::process::id()), "a new PID namespace");
        }
        Some(Pid1 {
            unshare,
            sup: found.unwrap_or(0),
        })
    }

    fn signal(&self, sig: i32) {
        assert_ne!(self.sup, 0, "sup run ended before it was seen");
        signal(self.sup, sig);
    }

    /// Waits for `sup run` to end; its exit code and stdout.
    fn wait(mut self, within: Duration) -> (Option<i32>, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                let mut out = String::new();
                self.unshare
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                return (status.code(), out);
            }
            assert!(
                started.elapsed() < within,
                "sup run did not end within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.sup != 0 {
            signal(self.sup, libc::SIGKILL);
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// The processes under `pid`, zombies included: (pid, state).
fn tree(pid: u32) -> Vec<(u32, char)> {
    let mut all = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.get(1).and_then(|f| f.parse::<u32>().ok()) == Some(p) {
                all.push((child, fields[0].chars().next().unwrap_or('?')));
                todo.push(child);
            }
        }
    }
    all
}

#[test]
fn as_pid_1_it_runs_logs_reaps_answers_the_cli_and_stops_gracefully_on_sigterm() {
    let sup = Sup::new();
    let stopped = sup.path("stopped");
    std::fs::write(
        sup.path("sup.toml"),
        format!(
            "[[app]]\nname = \"web\"\nscript = \"/bin/sh\"\nkill_timeout_ms = 3000\n\
             args = [\"-c\", \"trap 'echo bye > {}; exit 0' TERM; echo hello from web; (sleep 0.3 &); while true; do sleep 0.1; done\"]\n\n\
             [[app]]\nname = \"worker\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"echo working >&2; exec sleep 300\"]\n",
            stopped.display()
        ),
    )
    .unwrap();
    let Some(pid1) = Pid1::start(&sup, &["sup.toml"]) else {
        return;
    };
    // The usual CLI, from a second process, against the same SUP_HOME.
    sup.wait("both apps online", || {
        let apps = sup.list();
        apps.len() == 2 && apps.iter().all(|a| a["status"] == "online")
    });
    // The orphaned `sleep 0.3` is re-parented to PID 1 and reaped: no zombie.
    std::thread::sleep(Duration::from_millis(800));
    let zombies: Vec<_> = tree(pid1.sup)
        .into_iter()
        .filter(|(_, s)| *s == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies under sup run: {zombies:?}");
    let started = Instant::now();
    pid1.signal(libc::SIGTERM);
    let (code, out) = pid1.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "within the kill timeouts"
    );
    assert_eq!(
        std::fs::read_to_string(&stopped).unwrap().trim(),
        "bye",
        "web's TERM trap ran"
    );
    assert!(out.contains("web | hello from web"), "{out}");
}

#[test]
fn an_app_that_turns_errored_ends_the_run_with_its_code() {
    let sup = Sup::new();
    let args = [
        "sh -c 'echo failing; exit 5'",
        "--name",
        "bad",
        "--exit-on-error",
        "--max-restarts",
        "1",
        "--restart-delay",
        "10ms",
        "--json",
    ];
    let Some(pid1) = Pid1::start(&sup, &args) else {
        return;
    };
    let (code, out) = pid1.wait(Duration::from_secs(10));
    assert_eq!(code, Some(5), "{out}");
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (line["app"].as_str(), line["message"].as_str()),
        (Some("bad"), Some("failing"))
    );
}

#[test]
fn when_every_app_has_ended_the_run_exits_with_the_worst_code() {
    let sup = Sup::new();
    std::fs::write(
        sup.path("jobs.toml"),
        "[[app]]\nname = \"ok\"\nscript = \"/bin/true\"\nrestart = \"no\"\n\n\
         [[app]]\nname = \"three\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"sleep 0.2; exit 3\"]\nrestart = \"on-failure\"\nmax_restarts = 0\n",
    )
    .unwrap();
    let Some(pid1) = Pid1::start(&sup, &["jobs.toml"]) else {
        return;
    };
    let (code, _) = pid1.wait(Duration::from_secs(10));
    assert_eq!(code, Some(3));
}

#[test]
fn a_second_sigterm_during_the_stop_kills_at_once_and_the_health_endpoint_answers() {
    let sup = Sup::new();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "sh -c 'trap \"\" TERM; while true; do sleep 0.1; done'",
        "--name",
        "stubborn",
        "--kill-timeout",
        "30s",
        "--health-listen",
        &listen,
    ];
    let Some(pid1) = Pid1::start(&sup, &args) else {
        return;
    };
    wait_for("/readyz says ready", DEADLINE, || {
        get(port, "/readyz", Duration::from_secs(2)).is_ok_and(|a| a.contains("ready"))
    });
    assert!(get(port, "/livez", Duration::from_secs(2)).is_ok());
    pid1.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    pid1.signal(libc::SIGTERM);
    let (code, _) = pid1.wait(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not the 30 s kill timeout"
    );
    assert_eq!(code, Some(0));
}

#[test]
fn as_a_plain_process_sighup_reads_the_file_again() {
    let sup = Sup::new();
    let app = |name: &str, word: &str| {
        format!("[[app]]\nname = \"{name}\"\nscript = \"/bin/sh\"\nargs = [\"-c\", \"echo {word}; exec sleep 300\"]\n\n")
    };
    std::fs::write(sup.path("sup.toml"), app("a", "v1")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sup"))
        .args(["run", "sup.toml", "--log-files"])
        .env("SUP_HOME", &sup.home)
        .current_dir(&sup.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sup.wait("a online", || sup.list().len() == 1);
    std::fs::write(sup.path("sup.toml"), app("a", "v2") + &app("b", "b-here")).unwrap();
    signal(child.id(), libc::SIGHUP);
    sup.wait("b added and a reloaded", || {
        let apps = sup.list();
        apps.len() == 2 && apps.iter().all(|a| a["status"] == "online") && apps[0]["restarts"] == 1
    });
    // An update in place would lose what makes it `sup run`.
    let err = sup.fails(&["update"], 1);
    assert!(err.contains("sup run cannot update in place"), "{err}");
    // The new instance has written its line (--log-files keeps a copy).
    sup.wait("a's new line", || {
        std::fs::read_to_string(sup.home.join("logs/a-out.log")).is_ok_and(|l| l.contains("v2"))
    });
    signal(child.id(), libc::SIGTERM);
    let done = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&done.stdout);
    assert_eq!(done.status.code(), Some(0));
    for line in ["a | v1", "a | v2", "b | b-here"] {
        assert!(out.contains(line), "{out}");
    }
}
