//! The README, typed into a fresh shell in order: every command of its
//! `sh` blocks runs as written and succeeds, so the blocks never collide
//! (one block's port held by the one before, say).
//!
//! Three things are not typed as such: the Install block's `cargo install`
//! (the `sup` under test is first in PATH instead) and the Test block's
//! `cargo test` (this is it), and `sup startup`, which installs a systemd
//! unit: the boot test (`tests/boot.rs`) runs it under a real systemd.
//! `sup monit` gets a pseudo-terminal from script(1). A command that
//! follows (`sup logs api`, `sup events --follow`, `sup monit`) is stopped
//! after a moment, as a reader would with Ctrl-C. A command that fails is
//! tried again for a few seconds, at a typist's pace.

use crate::support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The commands of the README's `sh` blocks, continuations joined.
fn commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                out.push(std::mem::take(&mut pending).trim().to_string());
            }
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// How a reader runs `command`: (what is typed, whether it follows).
fn as_typed(command: &str) -> Option<(String, bool)> {
    if command.starts_with("cargo ") {
        return None;
    }
    let command = match command.strip_prefix("sup startup && ") {
        Some(rest) => rest.to_string(),
        None => command.to_string(),
    };
    // A full-screen view wants a terminal: a pseudo-terminal from script(1).
    if let Some(rest) = command.strip_prefix("sup monit") {
        let line = format!(
            "script -qec 'sup monit{}' /dev/null",
            rest.split('#').next().unwrap_or("").trim_end()
        );
        return Some((line, true));
    }
    let follows = command.starts_with("sup events --follow")
        || (command.starts_with("sup logs ") && !command.contains("--nostream"));
    Some((command, follows))
}

#[test]
fn the_readme_runs_top_to_bottom_in_a_fresh_shell() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let typed: Vec<(String, bool)> = commands(&readme)
        .iter()
        .filter_map(|c| as_typed(c))
        .collect();
    assert!(typed.len() > 20, "the README's commands: {typed:?}");
    let sup = Sup::new();
    let bin = Path::new(env!("CARGO_BIN_EXE_sup"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |command: &str, follows: bool| {
        let line = if follows {
            // On its own line: the command may end in a comment.
            format!("timeout 2 {command}\n[ $? = 124 ]")
        } else {
            command.to_string()
        };
        Command::new("bash")
            .args(["-c", &line])
            .current_dir(&repo)
            .env("SUP_HOME", &sup.home)
            .env("PATH", &path)
            .output()
            .expect("bash")
    };
    for (command, follows) in &typed {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = run(command, *follows);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "`{command}` failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    // The last block stopped everything.
    assert!(!sup.home.join("sup.sock").exists());
}
