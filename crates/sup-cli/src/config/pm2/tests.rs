use super::*;
use serde_json::json;

fn options(dir: &Path) -> Options {
    Options {
        cwd: dir.to_path_buf(),
        path_var: std::env::var("PATH").unwrap_or_default(),
        inherited: std::sync::Arc::new([("HOME".to_string(), "/root".to_string())].into()),
        profile: None,
        cpus: 4,
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sup-pm2-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.js"), "").unwrap();
    dir
}

fn load(dir: &Path, value: Value, options: &Options) -> Result<Loaded, ConfigError> {
    from_value(&dir.join("ecosystem.config.js"), value, options)
}

#[test]
fn args_split_as_pm2_splits_them() {
    assert_eq!(
        split_args("--port 3000  --verbose"),
        ["--port", "3000", "--verbose"]
    );
    assert_eq!(
        split_args(r#"--name "my app" -x 'a b'"#),
        ["--name", "my app", "-x", "a b"]
    );
    assert_eq!(split_args(r#"--title="a b" c"#), [r#"--title="a b""#, "c"]);
    assert_eq!(split_args(r#"a"b c"d"#), ["a", "b c", "d"]);
    assert_eq!(
        split_args(r#"unclosed "quote here"#),
        ["unclosed", "\"quote", "here"]
    );
    assert!(split_args("  ").is_empty());
}

#[test]
fn a_typical_ecosystem_app_maps_field_by_field() {
    let dir = scratch("typical");
    let mut opts = options(&dir);
    opts.profile = Some("production".into());
    let loaded = load(
        &dir,
        json!({"apps": [{
            "name": "api", "script": "app.js", "args": "--port 3000",
            "instances": "max", "exec_mode": "cluster", "autorestart": false,
            "max_restarts": 10, "min_uptime": "10s", "restart_delay": 200,
            "kill_timeout": 3000, "listen_timeout": 8000, "wait_ready": true,
            "env": {"NODE_ENV": "development", "PORT": 3000, "DEBUG": false},
            "env_production": {"NODE_ENV": "production"},
            "env_staging": {"NODE_ENV": "staging"},
            "out_file": "logs/out.log", "error_file": "logs/err.log", "merge_logs": true,
            "time": false, "instance_var": "INSTANCE_ID", "namespace": "web",
        }], "deploy": {"production": {}}}),
        &opts,
    )
    .unwrap();
    let api = &loaded.apps[0];
    assert_eq!(api.name, "api");
    assert!(matches!(&api.program, Program::Script { script, .. } if script.ends_with("/app.js")));
    assert_eq!(api.args, ["--port", "3000"]);
    assert_eq!(api.instances, 4);
    assert_eq!(api.restart, RestartPolicy::No);
    assert_eq!(api.max_restarts, Some(10));
    assert_eq!(
        (api.min_uptime_ms, api.restart_delay_ms, api.kill_timeout_ms),
        (10_000, 200, 3000)
    );
    assert_eq!(api.health.ready_timeout_ms, 8000);
    assert_eq!(api.health.readiness, Some(sup_proto::Probe::Message));
    assert_eq!(api.env["NODE_ENV"], "production");
    assert_eq!(api.env["PORT"], "3000");
    assert_eq!(api.env["DEBUG"], "false");
    assert!(!api.env.contains_key("HOME"), "inherited env kept apart");
    assert_eq!(api.inherited_env["HOME"], "/root");
    assert_eq!(
        api.logs.out_file.as_deref(),
        Some(dir.join("logs/out.log").to_str().unwrap())
    );
    assert!(!api.logs.timestamps);
    assert_eq!(api.instance_var.as_deref(), Some("INSTANCE_ID"));
    assert_eq!(api.namespace.as_deref(), Some("web"));
    assert_eq!(
        loaded.warnings,
        ["deploy: ignored (PM2's deploy tool; sup does not deploy)"]
    );
}

#[test]
fn npm_start_interpreter_none_and_interpreter_args() {
    let dir = scratch("npm");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["npm", "node", "server"] {
        std::fs::write(bin.join(tool), "").unwrap();
        std::os::unix::fs::PermissionsExt::set_mode(
            &mut std::fs::metadata(bin.join(tool)).unwrap().permissions(),
            0o755,
        );
        std::fs::set_permissions(
            bin.join(tool),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    let mut opts = options(&dir);
    opts.path_var = bin.display().to_string();
    let apps = load(
        &dir,
        json!([
            {"name": "web", "script": "npm", "args": "start"},
            {"name": "bin", "script": "server", "interpreter": "none", "args": ["-p", 1]},
            {"name": "big", "script": "app.js", "node_args": "--max-old-space-size=4096"},
        ]),
        &opts,
    )
    .unwrap()
    .apps;
    let npm = bin.join("npm").display().to_string();
    assert_eq!(apps[0].program.argv(&apps[0].args), [npm.as_str(), "start"]);
    let server = bin.join("server").display().to_string();
    assert_eq!(
        apps[1].program.argv(&apps[1].args),
        [server.as_str(), "-p", "1"]
    );
    let node = bin.join("node").display().to_string();
    let script = dir.join("app.js").display().to_string();
    assert_eq!(
        apps[2].program.argv(&apps[2].args),
        [node.as_str(), "--max-old-space-size=4096", script.as_str()]
    );
}

#[test]
fn every_key_sup_does_not_carry_is_named() {
    let dir = scratch("warn");
    let loaded = load(
        &dir,
        json!({"name": "a", "script": "app.js", "wait_ready": true, "watch_options": {},
               "vizion": false, "source_map_support": true}),
        &options(&dir),
    )
    .unwrap();
    let all = loaded.warnings.join("\n");
    assert!(!all.contains("wait_ready"), "wait_ready maps: {all}");
    assert!(
        all.contains("not supported, ignored: source_map_support, vizion, watch_options"),
        "{all}"
    );
}

#[test]
fn restart_triggers_map_onto_the_spec() {
    let dir = scratch("triggers");
    let loaded = load(
        &dir,
        json!({"apps": [
            {"name": "a", "script": "app.js", "max_memory_restart": "300M",
             "cron_restart": "0 3 * * *", "watch": ["src", "/etc/app"],
             "ignore_watch": ["*.log", "tmp"], "watch_delay": 2500,
             "stop_exit_codes": [0, "3"]},
            {"name": "b", "script": "app.js", "max_memory_restart": 1048576,
             "cron": "*/5 * * * *", "watch": true, "ignore_watch": "cache",
             "stop_exit_codes": 2},
            {"name": "c", "script": "app.js", "watch": false, "cron_restart": "",
             "max_memory_restart": 0, "stop_exit_codes": []},
        ]}),
        &options(&dir),
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let [a, b, c] = &loaded.apps[..] else {
        panic!("{:?}", loaded.apps)
    };
    assert_eq!(a.max_memory, Some(300 << 20));
    assert_eq!(a.cron_restart.as_deref(), Some("0 3 * * *"));
    assert_eq!(
        a.watch,
        [dir.join("src").display().to_string(), "/etc/app".into()]
    );
    assert_eq!(a.ignore_watch, ["*.log", "tmp"]);
    assert_eq!(a.watch_delay_ms, 2500);
    assert_eq!(a.stop_exit_codes, [0, 3]);
    assert_eq!(b.max_memory, Some(1 << 20));
    assert_eq!(b.cron_restart.as_deref(), Some("*/5 * * * *"));
    assert_eq!(b.watch, [dir.display().to_string()]);
    assert_eq!(b.ignore_watch, ["cache"]);
    assert_eq!(b.stop_exit_codes, [2]);
    let off = AppSpec::default();
    assert_eq!(
        (&c.max_memory, &c.cron_restart, &c.watch, &c.stop_exit_codes),
        (
            &off.max_memory,
            &off.cron_restart,
            &off.watch,
            &off.stop_exit_codes
        )
    );
}

#[test]
fn bad_trigger_values_are_errors_naming_the_app() {
    let dir = scratch("badtriggers");
    let err = |v: Value| load(&dir, v, &options(&dir)).unwrap_err().to_string();
    let app = |k: &str, v: Value| json!({"name": "t", "script": "app.js", k: v});
    assert!(err(app("cron_restart", json!("0 25 * * *"))).contains("app \"t\": cron_restart"));
    assert!(err(app("max_memory_restart", json!("300X"))).contains("max_memory_restart"));
    assert!(err(app("stop_exit_codes", json!(["x"]))).contains("stop_exit_codes"));
    assert!(err(app("watch_delay", json!("soon"))).contains("watch_delay"));
}

#[test]
fn bad_apps_are_errors_naming_the_app() {
    let dir = scratch("bad");
    let err = |v: Value| load(&dir, v, &options(&dir)).unwrap_err().to_string();
    assert!(err(json!({"apps": [{"name": "a"}]})).contains("app \"a\": no `script`"));
    assert!(err(json!({"apps": [{"name": "a", "script": "nope.js"}]})).contains("script not found"));
    assert!(
        err(json!({"apps": [{"name": "a", "script": "app.js", "env": "x"}]}))
            .contains("env must be an object")
    );
    assert!(
        err(json!({"apps": [{"name": "a", "script": "app.js", "kill_timeout": true}]}))
            .contains("kill_timeout")
    );
    assert!(err(json!(42)).contains("module.exports"));
    let mut opts = options(&dir);
    opts.profile = Some("prod".into());
    let e = load(
        &dir,
        json!({"apps": [{"script": "app.js", "env_production": {}}]}),
        &opts,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("--env prod: no app in this file has `env_prod`"),
        "{e}"
    );
}

#[test]
fn merge_logs_false_gives_each_instance_its_own_files() {
    let dir = scratch("merge");
    let opts = options(&dir);
    let app = |merge: Value| {
        let value = json!({"name": "w", "script": "app.js", "instances": 2, "merge_logs": merge});
        load(&dir, value, &opts).unwrap().apps.remove(0)
    };
    assert!(app(json!(false)).logs.per_instance);
    assert!(!app(json!(true)).logs.per_instance);
    assert!(
        !app(Value::Null).logs.per_instance,
        "sup's default: shared, tagged"
    );
}

#[test]
fn a_profile_on_a_file_without_profiles_starts_with_env_as_pm2_does() {
    let dir = scratch("noprofiles");
    let mut opts = options(&dir);
    opts.profile = Some("production".into());
    let app = json!({"apps": [{"script": "app.js", "env": {"A": "1"}}]});
    let loaded = load(&dir, app, &opts).unwrap();
    assert_eq!(loaded.apps[0].env.get("A").map(String::as_str), Some("1"));
    assert!(
        loaded.warnings.iter().any(|w| w.contains("no profiles")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn user_uid_and_gid_map_to_the_user_and_group_the_app_runs_as() {
    let dir = scratch("user");
    let load_one = |fields: Value| load(&dir, fields, &options(&dir)).unwrap().apps.remove(0);
    let app = load_one(json!({"name": "a", "script": "app.js", "user": "www-data", "gid": 33}));
    assert_eq!(app.user.as_deref(), Some("www-data"));
    assert_eq!(app.group.as_deref(), Some("33"));
    let app = load_one(json!({"name": "a", "script": "app.js", "uid": 1000}));
    assert_eq!((app.user.as_deref(), app.group), (Some("1000"), None));
}
