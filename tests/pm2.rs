//! `sup import pm2`: a real `dump.pm2` written by PM2 (the fixture in
//! tests/fixtures/pm2/dump) starts the same processes under sup, read
//! without PM2 running, and PM2's files are left as they were.

use crate::configs::{has_node, process};
use crate::support::*;
use std::fs;
use std::path::{Path, PathBuf};

/// The fixture's dump with its placeholders filled in, in a PM2 home of
/// its own; returns that home and the fixture's app directory.
fn pm2_home(sup: &Sup) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pm2/dump");
    let app = root.join("app").canonicalize().unwrap();
    let home = sup.path("pm2");
    fs::create_dir_all(&home).unwrap();
    let text = fs::read_to_string(root.join("dump.pm2"))
        .unwrap()
        .replace("@APP@", &app.display().to_string())
        .replace("@PM2_HOME@", &home.display().to_string())
        .replace("@HOME@", &sup.dir.display().to_string());
    fs::write(home.join("dump.pm2"), text).unwrap();
    (home, app)
}

fn import(sup: &Sup, pm2: &Path, dry_run: bool) -> std::process::Output {
    let mut args = vec!["import", "pm2"];
    if dry_run {
        args.push("--dry-run");
    }
    let out = sup.command(&args).env("PM2_HOME", pm2).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

fn var<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn import_pm2_starts_the_saved_apps_with_their_argv_env_and_cwd() {
    if (!has_node() || which("python3").is_none()) && skip("node or python3 missing") {
        return;
    }
    let sup = Sup::new();
    let (pm2, app) = pm2_home(&sup);
    let before = fs::read(pm2.join("dump.pm2")).unwrap();

    let dry = import(&sup, &pm2, true);
    let toml = String::from_utf8_lossy(&dry.stdout);
    assert!(
        toml.contains("name = \"web\"") && toml.contains("instances = 2"),
        "{toml}"
    );
    assert!(sup.daemon_pid().is_none(), "--dry-run started the daemon");

    let out = import(&sup, &pm2, false);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(said.matches("[sup] started").count(), 3, "{said}");
    sup.wait("web's 2 instances online", || {
        all_online(&sup.app("web"), 2)
    });
    sup.wait_status("worker", "online");
    sup.wait_status("napper", "online");

    let web = app.join("srv");
    for (index, pid) in instance_pids(&sup, "web") {
        let (argv, env, cwd) = process(pid.unwrap() as u32);
        assert!(argv[0].ends_with("node"), "{argv:?}");
        let script = web.join("web.js").display().to_string();
        assert_eq!(
            argv[1..],
            [script.as_str(), "--port", "8080", "--mode", "fast lane"]
        );
        assert_eq!(var(&env, "GREETING"), Some("hello world"));
        assert_eq!(var(&env, "NODE_ENV"), Some("production"));
        assert_eq!(
            var(&env, "NODE_APP_INSTANCE"),
            Some(index.to_string().as_str())
        );
        assert_eq!(
            var(&env, "PM2_USAGE"),
            None,
            "PM2's own variables stay behind"
        );
        assert_eq!(cwd, web.display().to_string());
    }
    let (argv, env, cwd) = process(sup.pid("worker"));
    let worker = app.join("worker.py").display().to_string();
    // python3 may be a shim (pyenv) that execs the real one later.
    assert!(argv.iter().any(|a| a.ends_with("python3")), "{argv:?}");
    let tail = &argv[argv.len().saturating_sub(4)..];
    assert_eq!(tail, [worker.as_str(), "--queue", "jobs", "--verbose"]);
    assert_eq!(var(&env, "QUEUE"), Some("jobs"));
    assert_eq!(cwd, app.display().to_string());
    let described: serde_json::Value =
        serde_json::from_str(&sup.ok(&["describe", "worker", "--json"])).unwrap();
    let spec = &described[0]["spec"];
    assert_eq!(spec["max_memory"], 200 << 20, "{spec}");
    assert_eq!(spec["cron_restart"], "0 3 * * *", "{spec}");
    let (argv, _, _) = process(sup.pid("napper"));
    assert_eq!(argv, ["/usr/bin/sleep", "1000"]);

    assert_eq!(fs::read(pm2.join("dump.pm2")).unwrap(), before);
    let files: Vec<_> = fs::read_dir(&pm2).unwrap().collect();
    assert_eq!(files.len(), 1, "PM2's home gained files: {files:?}");
    sup.ok(&["kill"]);
}

#[test]
fn import_pm2_without_a_dump_says_where_it_looked() {
    let sup = Sup::new();
    let empty = sup.path("nothing");
    fs::create_dir_all(&empty).unwrap();
    let out = sup
        .command(&["import", "pm2"])
        .env("PM2_HOME", &empty)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("dump.pm2 does not exist: `pm2 save` writes it"),
        "{err}"
    );
    assert!(sup.daemon_pid().is_none());
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
    })
}
