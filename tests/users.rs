//! Apps run as another user (`--user`, PM2's `user`/`uid`/`gid`).

use crate::support::*;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// Whether this test runs as root (it must in CI).
fn root() -> bool {
    nix::unistd::geteuid().is_root() || !skip("needs root to switch users")
}

/// nobody's passwd entry: (uid, gid, home).
fn nobody() -> (u32, u32, String) {
    let user = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    (
        user.uid.as_raw(),
        user.gid.as_raw(),
        user.dir.display().to_string(),
    )
}

#[test]
fn a_root_daemon_starts_an_app_as_another_user() {
    if !root() {
        return;
    }
    let sup = Sup::new();
    let (uid, gid, home) = nobody();
    let app = sup.script(
        "who.sh",
        r#"echo "ids=$(id -u):$(id -g) groups=$(id -G) home=$HOME user=$USER"; exec sleep 100"#,
    );
    sup.ok(&["start", &app, "--name", "who", "--user", "nobody", "--wait"]);
    let log = sup.home.join("logs/who-out.log");
    let mut text = String::new();
    wait_for("the app said who it is", DEADLINE, || {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("ids=")
    });
    assert!(
        text.contains(&format!("ids={uid}:{gid} groups={gid} ")),
        "{text}"
    );
    assert!(text.contains(&format!("home={home} user=nobody")), "{text}");
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (uid, gid),
        "the log is the user's"
    );
    let pid = sup.pid("who");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains(&format!("\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")),
        "{status}"
    );
    // Unknown users are refused at start.
    let out = sup.run(&["start", &app, "--name", "x", "--user", "no-such-user-sup"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no user \"no-such-user-sup\""),
        "{out:?}"
    );
    // sd_notify readiness cannot reach sup's private home as another user:
    // refused at start rather than a start that never gets ready.
    let out = sup.run(&[
        "start",
        &app,
        "--name",
        "y",
        "--user",
        "nobody",
        "--ready-notify",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sd_notify"),
        "{out:?}"
    );
}

#[test]
fn a_daemon_that_is_not_root_refuses_another_user() {
    if !root() {
        return;
    }
    let sup = Sup::new();
    let (uid, gid, _) = nobody();
    // A daemon of nobody's, in a home nobody owns, run from a copy of sup
    // nobody can execute.
    std::fs::create_dir_all(&sup.home).unwrap();
    let copy = sup.path("sup-copy");
    // By cp: a copy written from this process could be held open by a
    // concurrent test's fork, and then fail to execute (ETXTBSY).
    let copied = Command::new("cp").arg(SUP).arg(&copy).status().unwrap();
    assert!(copied.success());
    for path in [&sup.home, &copy] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    }
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(&copy)
            .args(args)
            .env("SUP_HOME", &sup.home)
            .current_dir("/")
            .output()
            .expect("run setpriv")
    };
    let out = as_nobody(&[
        "start",
        "/bin/sleep",
        "--name",
        "s",
        "--user",
        "root",
        "--",
        "100",
    ]);
    let _ = as_nobody(&["kill"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only a daemon running as root switches users"),
        "{stderr}"
    );
}
