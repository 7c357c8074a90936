//! Config files: real PM2 ecosystem files (JS, JSON with comments, YAML)
//! and sup.toml start real processes with the argv, env, cwd and log files
//! the file says; bad files start nothing and exit 2.

use crate::support::*;
use std::fs;

/// The argv, environment and cwd of a running process.
pub(crate) fn process(pid: u32) -> (Vec<String>, Vec<String>, String) {
    // A `start` that does not wait answers once the app is spawned: it may
    // still be inside execve, where its cmdline reads empty.
    wait_for("the app has exec'd", DEADLINE, || {
        fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    });
    let read = |what: &str| fs::read(format!("/proc/{pid}/{what}")).unwrap();
    let split = |bytes: Vec<u8>| -> Vec<String> {
        bytes
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    (
        split(read("cmdline")),
        split(read("environ")),
        cwd.display().to_string(),
    )
}

/// A shell app that prints its arguments and `$MODE`, then waits.
fn printing_app(sup: &Sup) -> String {
    sup.script(
        "app.sh",
        "echo \"args=$* mode=$MODE\"; while true; do sleep 1; done",
    )
}

pub(crate) fn has_node() -> bool {
    std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn an_ecosystem_js_file_runs_its_apps_as_pm2_would() {
    if !has_node() && skip("node is not installed") {
        return;
    }
    let sup = Sup::new();
    printing_app(&sup);
    fs::create_dir_all(sup.path("work")).unwrap();
    fs::write(
        sup.path("ecosystem.config.js"),
        r#"// as real projects write them
const base = { interpreter: 'none', autorestart: true };
module.exports = {
  apps: [
    { ...base, name: 'api', script: '../app.sh', args: '--port 3000 --title "my api"',
      cwd: 'work', env: { MODE: 'dev', PORT: 3000 }, env_production: { MODE: 'prod' },
      out_file: './api.out', error_file: './api.err', time: false, vizion: false },
    { name: 'worker', script: 'sleep', args: ['60'], interpreter: 'none', instances: 2 },
  ],
  deploy: { production: { user: 'deploy', host: 'example.org' } },
};
"#,
    )
    .unwrap();
    let out = sup.run(&["start", "ecosystem.config.js", "--env", "production"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("deploy: ignored"), "{stderr}");
    assert!(
        stderr.contains("api: not supported, ignored: vizion"),
        "{stderr}"
    );
    let (argv, env, cwd) = process(sup.pid("api"));
    assert_eq!(
        argv[2..],
        ["--port", "3000", "--title", "my api"],
        "{argv:?}"
    );
    assert!(env.contains(&"MODE=prod".to_string()), "profile over env");
    assert!(
        env.contains(&"PORT=3000".to_string()),
        "numbers become strings"
    );
    assert_eq!(cwd, sup.path("work").display().to_string());
    let log = sup.path("work/api.out");
    sup.wait("api's out_file has its line", || {
        fs::read_to_string(&log).is_ok_and(|t| t == "args=--port 3000 --title my api mode=prod\n")
    });
    sup.wait("worker runs 2 instances", || {
        sup.app("worker")["instances"]
            .as_array()
            .is_some_and(|i| i.len() == 2)
    });
    // stop and delete take the file too.
    sup.ok(&["stop", "ecosystem.config.js", "--only", "worker"]);
    sup.wait_status("worker", "stopped");
    assert_eq!(sup.app("api")["status"], "online");
    sup.ok(&["delete", "ecosystem.config.js"]);
    assert!(sup.list().is_empty());
}

#[test]
fn json_with_comments_and_yaml_files_load_as_pm2_loads_them() {
    if !has_node() && skip("node is not installed") {
        return;
    }
    let sup = Sup::new();
    let app = printing_app(&sup);
    fs::write(
        sup.path("process.json"),
        format!("{{\n  // PM2 runs JSON files as JavaScript\n  apps: [{{ name: 'fromjson', script: '{app}', env: {{ MODE: 'json' }} }}]\n}}\n"),
    )
    .unwrap();
    fs::write(
        sup.path("apps.yml"),
        format!("apps:\n  - name: fromyaml\n    script: {app}\n    args: one two\n    env:\n      MODE: yaml\n"),
    )
    .unwrap();
    sup.ok(&["start", "process.json"]);
    sup.ok(&["start", "apps.yml"]);
    let (_, env, _) = process(sup.pid("fromjson"));
    assert!(env.contains(&"MODE=json".to_string()));
    let (argv, env, _) = process(sup.pid("fromyaml"));
    assert!(env.contains(&"MODE=yaml".to_string()));
    assert_eq!(argv[argv.len() - 2..], ["one", "two"], "{argv:?}");
}

#[test]
fn sup_toml_starts_apps_and_export_reads_back_the_same_specs() {
    let sup = Sup::new();
    let app = printing_app(&sup);
    fs::write(
        sup.path("sup.toml"),
        format!("# comments are fine\n[[app]]\nname = \"web\"\nscript = \"{app}\"\nargs = [\"a b\"]\nkill_timeout_ms = 2000\ninstances = 2\n[app.env]\nMODE = \"toml\"\n\n[[app]]\nname = \"other\"\nscript = \"sleep 60\"\n"),
    )
    .unwrap();
    sup.ok(&["start", "sup.toml"]);
    let (argv, env, cwd) = process(sup.pid("web"));
    assert_eq!(argv.last().unwrap(), "a b");
    assert!(env.contains(&"MODE=toml".to_string()));
    assert_eq!(cwd, sup.dir.display().to_string());
    let specs = |sup: &Sup| -> Vec<serde_json::Value> {
        ["web", "other"]
            .iter()
            .map(|n| {
                let text = sup.ok(&["describe", n, "--json"]);
                let mut spec =
                    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0]["spec"].clone();
                spec.as_object_mut().unwrap().remove("source");
                spec
            })
            .collect()
    };
    let before = specs(&sup);
    let exported = sup.ok(&["export"]);
    assert!(!exported.contains("PATH"), "only declared env: {exported}");
    fs::write(sup.path("exported.toml"), &exported).unwrap();
    sup.ok(&["delete", "all"]);
    sup.ok(&["start", "exported.toml"]);
    assert_eq!(specs(&sup), before, "{exported}");
}

#[test]
fn reload_file_starts_new_apps_reloads_changed_ones_and_prunes() {
    let sup = Sup::new();
    let app = printing_app(&sup);
    let write = |apps: &[(&str, &str)]| {
        let text: String = apps
            .iter()
            .map(|(name, mode)| format!("[[app]]\nname = \"{name}\"\nscript = \"{app}\"\n[app.env]\nMODE = \"{mode}\"\n"))
            .collect();
        fs::write(sup.path("sup.toml"), text).unwrap();
    };
    write(&[("a", "1"), ("b", "1")]);
    sup.ok(&["start", "sup.toml"]);
    let (a, b) = (sup.pid("a"), sup.pid("b"));
    write(&[("a", "1"), ("b", "2"), ("c", "1")]);
    let out = sup.ok(&["reload", "sup.toml"]);
    assert!(out.contains("a: unchanged"), "{out}");
    assert!(out.contains("reloaded b"), "{out}");
    assert!(out.contains("started c"), "{out}");
    assert_eq!(sup.pid("a"), a, "an unchanged app is left alone");
    sup.wait("b runs with its new env", || {
        let pid = sup.pid("b");
        pid != b && process(pid).1.contains(&"MODE=2".to_string())
    });
    write(&[("a", "1")]);
    let out = sup.ok(&["reload", "sup.toml", "--prune"]);
    assert!(
        out.contains("deleted b") && out.contains("deleted c"),
        "{out}"
    );
    assert_eq!(sup.list().len(), 1);
}

#[test]
fn update_env_gives_the_app_this_shells_environment() {
    let sup = Sup::new();
    let app = printing_app(&sup);
    let out = sup
        .command(&["start", &app, "--name", "e", "--env", "MODE=declared"])
        .env("FROM_SHELL", "old")
        .output()
        .unwrap();
    assert!(out.status.success());
    let first = sup.pid("e");
    assert!(process(first).1.contains(&"FROM_SHELL=old".to_string()));
    let restarted = sup
        .command(&["restart", "e"])
        .env("FROM_SHELL", "new")
        .output()
        .unwrap();
    assert!(restarted.status.success());
    let pid = sup.pid("e");
    assert!(
        process(pid).1.contains(&"FROM_SHELL=old".to_string()),
        "without --update-env the env stays"
    );
    let updated = sup
        .command(&["restart", "e", "--update-env"])
        .env("FROM_SHELL", "new")
        .output()
        .unwrap();
    assert!(updated.status.success(), "{updated:?}");
    sup.wait("e has the new shell env", || {
        let env = process(sup.pid("e")).1;
        env.contains(&"FROM_SHELL=new".to_string()) && env.contains(&"MODE=declared".to_string())
    });
}

#[test]
fn bad_files_name_the_file_exit_2_and_start_nothing() {
    let sup = Sup::new();
    let app = printing_app(&sup);
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad.config.js", "module.exports = { apps: [ { name: 'a' ".into(), "bad.config.js:"),
        ("throws.config.js", "throw new Error('no config today')".into(), "no config today"),
        ("dup.config.js", format!("module.exports = {{ apps: [{{name:'x', script:'{app}'}}, {{name:'x', script:'{app}'}}] }}"), "two apps are named \"x\""),
        ("noscript.json", "{ apps: [{ name: 'x' }] }".into(), "no `script`"),
        ("type.yml", format!("apps:\n  - name: x\n    script: {app}\n    env: [1]\n"), "env must be an object"),
        ("syntax.yaml", "apps: [\n".into(), "syntax.yaml:"),
        ("unknown.toml", format!("[[app]]\nname = \"x\"\nscript = \"{app}\"\nrestarts = 3\n"), "unknown.toml:4:1: unknown key `app.0.restarts`"),
        ("types.toml", "[[app]]\nname = \"x\"\nkill_timeout_ms = \"5s\"\n".into(), "types.toml:3:"),
    ];
    let needs_node = |f: &str| f.ends_with(".js") || f.ends_with(".json");
    for (file, text, expected) in &cases {
        if needs_node(file) && !has_node() {
            continue;
        }
        fs::write(sup.path(file), text).unwrap();
        let err = sup.fails(&["start", file], 2);
        assert!(err.contains(expected), "{file}: {err}");
    }
    fs::write(
        sup.path("ok.config.js"),
        format!("module.exports = {{ apps: [{{ script: '{app}', env_production: {{}} }}] }}"),
    )
    .unwrap();
    let err = sup.fails(&["start", "ok.config.js", "--env", "staging"], 2);
    assert!(
        err.contains("--env staging: no app in this file has `env_staging`"),
        "{err}"
    );
    let err = sup.fails(&["start", &app, "--env", "production"], 1);
    assert!(err.contains("belongs to a config file"), "{err}");
    let no_node = sup
        .command(&["start", "ok.config.js"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(no_node.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_node.stderr).contains("node is needed"));
    assert!(
        sup.daemon_pid().is_none() || sup.list().is_empty(),
        "nothing started"
    );
}
