use super::*;
use crate::persist::Snapshot;
use sup_proto::AppSpec;

fn home(tag: &str) -> Home {
    let dir = std::env::temp_dir().join(format!("sup-state-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let home = Home::at(dir);
    home.prepare().unwrap();
    home
}

fn app(id: u32, name: &str) -> SavedApp {
    SavedApp {
        id,
        spec: AppSpec {
            name: name.into(),
            ..AppSpec::default()
        },
        stopped_by_user: false,
        was_running: true,
        instance: None,
    }
}

fn bytes(app: SavedApp) -> Vec<u8> {
    serde_json::to_vec(&Snapshot::new(vec![app])).unwrap()
}

/// Writes through a writer and waits for the ack.
fn put(writer: &StateWriter, app: SavedApp) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    writer.put(app.id, bytes(app), Some(tx));
    rx.blocking_recv().unwrap()
}

fn names(apps: &[SavedApp]) -> Vec<&str> {
    apps.iter().map(|a| a.spec.name.as_str()).collect()
}

#[test]
fn one_file_per_app_with_its_previous_generation_and_a_clean_end() {
    let home = home("writer");
    let mut writer = StateWriter::start(home.clone()).unwrap();
    put(&writer, app(0, "a")).unwrap();
    put(&writer, app(1, "b")).unwrap();
    put(&writer, app(1, "b2")).unwrap();
    assert!(home.app_state(0).exists() && !backup_of(&home.app_state(0)).exists());
    assert!(backup_of(&home.app_state(1)).exists());
    let (tx, rx) = oneshot::channel();
    writer.remove(0, Some(tx));
    rx.blocking_recv().unwrap().unwrap();
    assert!(!home.app_state(0).exists());
    let found = recover(&home, &crate::persist::boot_id());
    assert_eq!(names(&found.apps), ["b2"]);
    assert!(
        found.found && found.warnings.is_empty(),
        "{:?}",
        found.warnings
    );
    assert!(home.last_daemon_died_uncleanly());
    writer.finish_clean();
    assert!(!home.last_daemon_died_uncleanly());
    fs::remove_dir_all(home.dir()).unwrap();
}

#[test]
fn a_write_that_fails_says_why_and_leaves_no_temp_file() {
    let home = home("fail");
    let writer = StateWriter::start(home.clone()).unwrap();
    fs::remove_dir(home.state_dir()).unwrap();
    fs::write(home.state_dir(), b"not a directory").unwrap();
    let err = put(&writer, app(0, "a")).unwrap_err();
    assert!(err.contains("state/0.json"), "{err}");
    fs::remove_file(home.state_dir()).unwrap();
    fs::create_dir(home.state_dir()).unwrap();
    fs::create_dir_all(home.app_state(1).join("occupied")).unwrap();
    assert!(put(&writer, app(1, "b")).is_err());
    let left: Vec<_> = fs::read_dir(home.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    fs::remove_dir_all(home.dir()).unwrap();
}

#[test]
fn a_corrupt_file_is_kept_aside_and_falls_back_to_its_previous_generation() {
    let home = home("corrupt");
    let writer = StateWriter::start(home.clone()).unwrap();
    put(&writer, app(0, "a")).unwrap();
    put(&writer, app(0, "a")).unwrap();
    put(&writer, app(1, "b")).unwrap();
    put(&writer, app(1, "b")).unwrap();
    fs::write(home.app_state(0), b"{\"version\": 1, \"ap").unwrap();
    fs::write(home.app_state(1), b"").unwrap();
    fs::write(backup_of(&home.app_state(1)), b"junk").unwrap();
    let found = recover(&home, &crate::persist::boot_id());
    assert_eq!(names(&found.apps), ["a"]);
    assert_eq!(found.warnings.len(), 2, "{:?}", found.warnings);
    assert!(
        found.warnings[0].contains("restored"),
        "{}",
        found.warnings[0]
    );
    assert!(
        found.warnings[1].contains("start it again"),
        "{}",
        found.warnings[1]
    );
    let aside: Vec<String> = fs::read_dir(home.state_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 3, "both files of b and a's: {aside:?}");
    // Only a's previous generation is left live; nothing corrupt is read twice.
    let again = recover(&home, &crate::persist::boot_id());
    assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    fs::remove_dir_all(home.dir()).unwrap();
}

#[test]
fn state_of_another_boot_and_lone_backups_are_dropped() {
    let home = home("boot");
    let writer = StateWriter::start(home.clone()).unwrap();
    put(&writer, app(0, "a")).unwrap();
    fs::write(backup_of(&home.app_state(5)), bytes(app(5, "gone"))).unwrap();
    let found = recover(&home, "another-boot");
    assert!(!found.found && found.apps.is_empty());
    assert!(!home.last_daemon_died_uncleanly());
    fs::remove_dir_all(home.dir()).unwrap();
}

#[test]
fn state_json_of_0_1_0_is_read_once() {
    let home = home("legacy");
    // As 0.1.0 wrote it: every app in one file.
    let legacy = r#"{"version":1,"sup":"0.1.0","written_at_ms":1,"boot_id":"BOOT","apps":[
        {"id":3,"spec":{"name":"api","program":{"kind":"shell","line":"sleep 1000"}},"stopped_by_user":false,
         "was_running":true,"instance":{"pid":4242,"start_time":7}}]}"#;
    let legacy = legacy.replace("BOOT", &crate::persist::boot_id());
    fs::write(home.state(), legacy).unwrap();
    assert!(home.last_daemon_died_uncleanly());
    let found = recover(&home, &crate::persist::boot_id());
    assert_eq!(names(&found.apps), ["api"]);
    assert_eq!(found.apps[0].id, 3);
    assert_eq!(found.apps[0].instance.map(|i| i.pid), Some(4242));
    assert!(!home.state().exists());
    fs::write(home.state(), b"{trunc").unwrap();
    let found = recover(&home, &crate::persist::boot_id());
    assert!(found.found && found.apps.is_empty());
    assert!(
        found.warnings[0].contains("kept as"),
        "{:?}",
        found.warnings
    );
    assert!(!home.last_daemon_died_uncleanly());
    fs::remove_dir_all(home.dir()).unwrap();
}

#[test]
fn a_link_a_stranger_or_a_directory_in_place_of_a_file_is_damage_and_the_bak_restores() {
    let home = home("planted");
    let writer = StateWriter::start(home.clone()).unwrap();
    for (id, name) in [(0, "a"), (1, "b"), (2, "c"), (3, "d")] {
        put(&writer, app(id, name)).unwrap();
        put(&writer, app(id, name)).unwrap();
    }
    let elsewhere = home.dir().join("elsewhere.json");
    fs::write(&elsewhere, bytes(app(0, "a"))).unwrap();
    // a: its file is now a link to a valid copy of itself.
    fs::remove_file(home.app_state(0)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.app_state(0)).unwrap();
    // b: a dangling link.
    fs::remove_file(home.app_state(1)).unwrap();
    std::os::unix::fs::symlink(home.dir().join("nowhere"), home.app_state(1)).unwrap();
    // c: holds d's app.
    fs::write(home.app_state(2), bytes(app(3, "d"))).unwrap();
    // d: a directory.
    fs::remove_file(home.app_state(3)).unwrap();
    fs::create_dir(home.app_state(3)).unwrap();
    let found = recover(&home, &crate::persist::boot_id());
    assert_eq!(names(&found.apps), ["a", "b", "c", "d"]);
    assert_eq!(found.warnings.len(), 4, "{:?}", found.warnings);
    assert!(found.warnings.iter().all(|w| w.contains("restored")));
    assert!(
        found.warnings[0].contains("symbolic link"),
        "{}",
        found.warnings[0]
    );
    assert!(
        found.warnings[2].contains("app id 3"),
        "{}",
        found.warnings[2]
    );
    assert!(
        found.warnings[3].contains("not a regular file"),
        "{}",
        found.warnings[3]
    );
    assert!(elsewhere.exists(), "the link's target is left alone");
    fs::remove_dir_all(home.dir()).unwrap();
}
