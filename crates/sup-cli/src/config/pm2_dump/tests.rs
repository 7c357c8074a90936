use super::*;

/// The committed real dump with its placeholders filled in, in `dir`.
fn fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pm2/dump");
    let app = root.join("app").canonicalize().unwrap();
    let home = dir.join("pm2-home");
    std::fs::create_dir_all(&home).unwrap();
    let text = std::fs::read_to_string(root.join("dump.pm2"))
        .unwrap()
        .replace("@APP@", &app.display().to_string())
        .replace("@PM2_HOME@", &home.display().to_string())
        .replace("@HOME@", "/home/someone");
    let dump = home.join("dump.pm2");
    std::fs::write(&dump, text).unwrap();
    (dump, app)
}

fn options(dir: &Path) -> Options {
    Options {
        cwd: dir.to_path_buf(),
        path_var: std::env::var("PATH").unwrap_or_default(),
        inherited: std::sync::Arc::new(
            [
                ("HOME".to_string(), "/root".to_string()),
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ]
            .into(),
        ),
        profile: None,
        cpus: 4,
    }
}

#[test]
fn a_real_dump_maps_each_app_once_with_its_instances() {
    let dir = std::env::temp_dir().join(format!("sup-pm2dump-{}", std::process::id()));
    let (dump, app) = fixture(&dir);
    let loaded = load(&dump, dump.parent().unwrap(), &options(&dir)).unwrap();
    let names: Vec<&str> = loaded.apps.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["web", "worker", "napper"]);
    let [web, worker, napper] = &loaded.apps[..] else {
        unreachable!()
    };
    assert_eq!(web.instances, 2);
    assert_eq!(web.cwd, app.join("srv").display().to_string());
    let argv = web.program.argv(&web.args);
    assert!(argv[0].ends_with("/node"), "{argv:?}");
    assert_eq!(
        argv[1..],
        [
            app.join("srv/web.js").display().to_string(),
            "--port".into(),
            "8080".into(),
            "--mode".into(),
            "fast lane".into()
        ]
    );
    let env = |a: &sup_proto::AppSpec| a.env.keys().cloned().collect::<Vec<_>>();
    assert_eq!(env(web), ["GREETING", "NODE_ENV"]);
    assert_eq!(web.kill_timeout_ms, 4000);
    assert_eq!(env(worker), ["PYTHONUNBUFFERED", "QUEUE"]);
    assert_eq!(worker.max_memory, Some(200 << 20));
    assert_eq!(worker.cron_restart.as_deref(), Some("0 3 * * *"));
    assert_eq!(worker.restart_delay_ms, 500);
    assert_eq!(worker.instances, 1);
    assert_eq!(
        napper.program.argv(&napper.args),
        ["/usr/bin/sleep", "1000"]
    );
    assert_eq!(napper.instance_var, None);
    assert_eq!(napper.namespace, None);
    // PM2's log paths are its own defaults, and its bookkeeping is PM2's.
    assert!(web.logs.out_file.is_none() && napper.logs.err_file.is_none());
    let all = loaded.warnings.join("\n");
    assert!(
        all.contains("web: env HOME, PATH: PM2's values differ"),
        "{all}"
    );
    assert!(!all.contains("not supported"), "{all}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pm2_home_is_pm2_home_or_dot_pm2() {
    let vars = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        pm2_home(&vars(&[("PM2_HOME", "/srv/pm2"), ("HOME", "/h")])),
        Some(PathBuf::from("/srv/pm2"))
    );
    assert_eq!(
        pm2_home(&vars(&[("HOME", "/h")])),
        Some(PathBuf::from("/h/.pm2"))
    );
    assert_eq!(pm2_home(&vars(&[])), None);
}

#[test]
fn keys_sup_does_not_carry_are_named_and_bad_dumps_fail() {
    let dir = std::env::temp_dir().join(format!("sup-pm2dump-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dump = dir.join("dump.pm2");
    let entry = serde_json::json!([{
        "name": "x", "pm_exec_path": "/usr/bin/sleep", "pm_cwd": "/",
        "exec_interpreter": "none", "args": ["5"], "status": "stopped",
        "treekill": false, "wait_ready": true, "env": {}
    }]);
    std::fs::write(&dump, entry.to_string()).unwrap();
    let loaded = load(&dump, &dir, &options(&dir)).unwrap();
    let all = loaded.warnings.join("\n");
    assert!(all.contains("x: was stopped under PM2"), "{all}");
    assert!(all.contains("not supported, ignored: treekill"), "{all}");
    assert_eq!(
        loaded.apps[0].health.readiness,
        Some(sup_proto::Probe::Message),
        "wait_ready maps"
    );
    std::fs::write(&dump, "{\"apps\": []}").unwrap();
    let err = load(&dump, &dir, &options(&dir)).unwrap_err().to_string();
    assert!(err.contains("expected an array"), "{err}");
    std::fs::write(&dump, "[").unwrap();
    let err = load(&dump, &dir, &options(&dir)).unwrap_err().to_string();
    assert!(err.contains("invalid JSON"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
