//! `sup monit` in a real terminal (tmux): it shows the apps and the
//! selected app's logs, acts on keys, and gives the terminal back as it
//! found it (main screen, cursor shown, line mode) when the user quits and
//! when it is terminated.

use crate::support::*;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static SERVERS: AtomicU32 = AtomicU32::new(0);

/// A tmux server of its own running `sup monit` in a 100x30 pane, killed
/// when dropped, even after a failure. The pane's shell then says how
/// monit exited and prints the terminal's modes (`stty -a`).
struct Tmux {
    socket: String,
    /// The server's socket file, which tmux leaves behind.
    path: Option<std::path::PathBuf>,
}

impl Tmux {
    /// Starts it, or returns None (the test is skipped) without tmux.
    fn monit(sup: &Sup) -> Option<Tmux> {
        if Command::new("tmux").arg("-V").output().is_err() {
            skip("tmux is not installed");
            return None;
        }
        let n = SERVERS.fetch_add(1, Ordering::SeqCst);
        let mut tmux = Tmux {
            socket: format!("sup-monit-{}-{n}", std::process::id()),
            path: None,
        };
        let shell = format!("'{SUP}' monit; echo \"monit exited $?\"; stty -a; exec sleep 1000");
        let home = format!("SUP_HOME={}", sup.home.display());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "monit",
            "-x",
            "100",
            "-y",
            "30",
            "-e",
            &home,
            &shell,
        ]);
        tmux.path = Some(tmux.show("#{socket_path}").into());
        Some(tmux)
    }

    /// Runs `tmux ARGS` on this server; its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the pane shows.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "monit"])
    }

    /// A tmux format about the pane: `#{alternate_on}`, `#{pane_pid}`, ...
    fn show(&self, format: &str) -> String {
        self.run(&["display", "-p", "-t", "monit", format])
            .trim()
            .to_string()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "monit"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen passes `cond`; returns it.
    fn wait_screen(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        wait_for(what, DEADLINE, || {
            screen = self.screen();
            cond(&screen)
        });
        screen
    }

    /// Waits until monit has exited saying `said`, then checks the terminal
    /// is as before: main screen, cursor shown, not in raw mode.
    fn restored(&self, said: &str) {
        let screen = self.wait_screen(said, |s| s.contains(said) && s.contains("icanon"));
        assert_eq!(self.show("#{alternate_on}"), "0", "{screen}");
        assert_eq!(self.show("#{cursor_flag}"), "1", "{screen}");
        let modes: Vec<&str> = screen.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig"] {
            assert!(modes.contains(&mode), "{mode} is off:\n{screen}");
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let screen = Command::new("tmux")
                .args(["-L", &self.socket, "capture-pane", "-p", "-t", "monit"])
                .output();
            if let Ok(out) = screen {
                eprintln!("the pane showed:\n{}", String::from_utf8_lossy(&out.stdout));
            }
        }
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .env_remove("TMUX")
            .output();
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn monit_shows_apps_and_logs_acts_on_keys_and_restores_the_terminal() {
    let sup = Sup::new();
    let idle = sup.script("idle.sh", "exec sleep 1000");
    let printer = sup.script("printer.sh", "echo hello from the printer; exec sleep 1000");
    sup.ok(&["start", &idle, "--name", "pool", "-i", "2"]);
    sup.ok(&["start", &printer, "--name", "printer"]);
    let pid = sup.wait_status("printer", "online")["pid"].as_u64();
    sup.wait_status("pool", "online");
    let Some(tmux) = Tmux::monit(&sup) else {
        return;
    };
    tmux.wait_screen("monit shows both apps online", |s| {
        s.contains("pool:1") && s.contains("printer") && s.contains("online")
    });
    // The rows are pool, pool:0, pool:1, printer; the selection stops at the last.
    tmux.keys(&["j", "j", "Down", "j"]);
    tmux.wait_screen("the printer's line shows", |s| {
        s.contains("logs: printer") && s.contains("hello from the printer")
    });
    tmux.keys(&["r"]);
    sup.wait("r restarted the printer", || {
        sup.app("printer")["pid"]
            .as_u64()
            .is_some_and(|p| Some(p) != pid)
    });
    tmux.wait_screen("the footer says so", |s| s.contains("restarted printer"));
    tmux.keys(&["?"]);
    tmux.wait_screen("the help shows", |s| s.contains("zero-downtime restart"));
    tmux.keys(&["q"]);
    tmux.restored("monit exited 0");
}

#[test]
fn monit_restores_the_terminal_when_terminated() {
    let sup = Sup::new();
    let idle = sup.script("idle.sh", "exec sleep 1000");
    sup.ok(&["start", &idle, "--name", "idle"]);
    sup.wait_status("idle", "online");
    let Some(tmux) = Tmux::monit(&sup) else {
        return;
    };
    tmux.wait_screen("monit shows the app", |s| {
        s.contains("idle") && s.contains("online")
    });
    assert_eq!(tmux.show("#{alternate_on}"), "1");
    let shell: u32 = tmux.show("#{pane_pid}").parse().unwrap();
    let monit = children_of(shell);
    assert_eq!(monit.len(), 1, "the shell runs monit only: {monit:?}");
    signal(monit[0], libc::SIGTERM);
    tmux.restored("monit exited 143");
}

#[test]
fn monit_without_a_terminal_says_what_to_use() {
    let sup = Sup::new();
    let err = sup.fails(&["monit"], 1);
    assert!(
        err.contains("needs a terminal") && err.contains("sup list"),
        "{err}"
    );
}
