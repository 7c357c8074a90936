//! Nothing the CLI acknowledged is lost, and a damaged live state loses no
//! process: a change of the app set is on disk before it is acknowledged,
//! and the recovery after a daemon crash stops every process of the dead
//! daemon even when its state files are corrupt.

use crate::support::*;
use std::fs;
use std::path::PathBuf;

/// The live state files of every layout: 0.1.0's `state.json`, and this
/// sup's `state/<id>.json`.
fn live_state_files(sup: &Sup) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(sup.home.join("state"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.push(sup.home.join("state.json"));
    files.retain(|p| p.exists());
    files
}

/// Waits until the live state records a running instance of each of `n` apps.
fn wait_live_state(sup: &Sup, n: usize) {
    wait_for("the live state records every instance", DEADLINE, || {
        let text: String = live_state_files(sup)
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .collect();
        text.matches("\"start_time\"").count() == n
    });
}

/// Live processes of app `name` of this home, found by their tags.
fn tagged(sup: &Sup, name: &str) -> Vec<u32> {
    let tag = format!("SUP_APP_NAME={name}");
    processes_with_home(&sup.home)
        .into_iter()
        .filter(|pid| {
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|b| *b == 0).any(|kv| kv == tag.as_bytes())
        })
        .collect()
}

fn kill_daemon(sup: &Sup) {
    let daemon = sup.daemon_pid().expect("a daemon runs");
    signal(daemon, libc::SIGKILL);
    wait_for("daemon gone", DEADLINE, || !alive(daemon));
}

fn names(sup: &Sup) -> Vec<String> {
    let mut names: Vec<String> = sup
        .list()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn a_corrupt_live_state_after_a_crash_loses_no_process_and_is_reported() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "a"]);
    sup.ok(&["start", &app, "--name", "b"]);
    let (a, b) = (sup.pid("a"), sup.pid("b"));
    wait_live_state(&sup, 2);
    kill_daemon(&sup);
    // Every live state file is cut short; b's previous generation is junk too.
    for file in live_state_files(&sup) {
        let text = fs::read_to_string(&file).unwrap();
        if text.contains("\"name\":\"b\"") {
            let mut bak = file.clone().into_os_string();
            bak.push(".bak");
            let _ = fs::write(bak, b"junk");
        }
        fs::write(&file, &text.as_bytes()[..text.len() / 2]).unwrap();
    }
    let out = sup.run(&["list", "--json"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:") && stderr.contains("kept as"),
        "the CLI says what was lost: {stderr}"
    );
    wait_for("the old processes are stopped", DEADLINE, || {
        !alive(a) && !alive(b)
    });
    assert_eq!(names(&sup), ["a"], "a comes back from its previous state");
    sup.wait_status("a", "online");
    sup.ok(&["start", "a"]);
    sup.ok(&["start", &app, "--name", "b"]);
    sup.wait_status("b", "online");
    assert_eq!(tagged(&sup, "a").len(), 1, "no second copy of a");
    assert_eq!(tagged(&sup, "b").len(), 1, "no second copy of b");
    let aside: Vec<String> = fs::read_dir(sup.home.join("state"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-20"))
        .collect();
    assert_eq!(aside.len(), 3, "both of b's files and a's: {aside:?}");
    let page = sup.ok(&["describe", "a"]);
    assert!(page.contains("state warning"), "{page}");
    sup.ok(&["save"]);
    let out = sup.run(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "save clears it: {stderr}");
}

#[test]
fn an_app_set_change_that_cannot_be_written_is_refused() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "a"]);
    sup.wait_status("a", "online");
    let state = sup.home.join("state");
    let real = sup.home.join("state.real");
    // Files cannot be created under a `state` that is not a directory
    // (ENOTDIR, which holds for root too).
    let moved = fs::rename(&state, &real).is_ok();
    fs::write(&state, b"not a directory").unwrap();
    let err = sup.fails(&["start", &app, "--name", "b"], 1);
    assert!(
        err.contains("state") && err.contains("not started"),
        "{err}"
    );
    let err = sup.fails(&["delete", "a"], 1);
    assert!(err.contains("cannot delete"), "{err}");
    fs::remove_file(&state).unwrap();
    if moved {
        fs::rename(&real, &state).unwrap();
    }
    // A directory where the next app's file goes: the rename fails after
    // the temp file was written.
    for id in 0..20 {
        let target = state.join(format!("{id}.json"));
        if !target.exists() {
            fs::create_dir_all(target.join("occupied")).unwrap();
        }
    }
    let err = sup.fails(&["start", &app, "--name", "c"], 1);
    assert!(err.contains("not started"), "{err}");
    assert_eq!(names(&sup), ["a"], "nothing half-added");
    assert!(tagged(&sup, "b").is_empty() && tagged(&sup, "c").is_empty());
    let tmp: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "temp files left: {tmp:?}");
    assert_eq!(sup.app("a")["status"], "online", "a was not deleted");
    for id in 0..20 {
        if state.join(format!("{id}.json")).is_dir() {
            fs::remove_dir_all(state.join(format!("{id}.json"))).unwrap();
        }
    }
    sup.ok(&["start", &app, "--name", "c"]);
    assert_eq!(names(&sup), ["a", "c"]);
}

#[test]
fn an_acknowledged_start_survives_a_daemon_kill() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "a"]);
    sup.ok(&["start", &app, "--name", "b"]);
    kill_daemon(&sup);
    assert_eq!(names(&sup), ["a", "b"], "b is restored");
    sup.wait_status("b", "online");
    assert_eq!(tagged(&sup, "b").len(), 1, "one copy of b");
}

#[test]
fn a_scale_that_cannot_be_written_changes_nothing() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "a", "-i", "2"]);
    sup.wait_status("a", "online");
    let state = sup.home.join("state");
    let real = sup.home.join("state.real");
    fs::rename(&state, &real).unwrap();
    fs::write(&state, b"not a directory").unwrap();
    let err = sup.fails(&["scale", "a", "4"], 1);
    assert!(err.contains("nothing was changed"), "{err}");
    let a = sup.app("a");
    assert_eq!(a["instances"].as_array().unwrap().len(), 2, "not scaled");
    fs::remove_file(&state).unwrap();
    fs::rename(&real, &state).unwrap();
    sup.ok(&["scale", "a", "3"]);
    let saved = fs::read_to_string(state.join("0.json")).unwrap();
    assert!(saved.contains("\"instances\":3"), "{saved}");
}
