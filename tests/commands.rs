//! The everyday commands: start, list, describe, stop, restart, delete.

use crate::support::*;
use std::fs;

#[test]
fn start_list_describe_stop_restart_delete() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    let out = sup.ok(&["start", &app, "--name", "api"]);
    assert!(out.contains("started api"), "{out}");
    sup.ok(&["start", &app, "--name", "web"]);
    let list = sup.list();
    assert_eq!(list.len(), 2);
    for field in [
        "id",
        "name",
        "pid",
        "status",
        "restarts",
        "uptime_ms",
        "cpu",
        "memory",
        "instances",
    ] {
        assert!(
            list[0].get(field).is_some(),
            "list --json lacks {field}: {}",
            list[0]
        );
    }
    assert_eq!(list[0]["status"], "online");
    let table = sup.ok(&["list"]);
    assert!(
        table.contains("api") && table.contains("online") && table.contains("restarts"),
        "{table}"
    );

    let page = sup.ok(&["describe", "api"]);
    assert!(
        page.contains("restart policy") && page.contains("always") && page.contains(&app),
        "{page}"
    );
    let described: serde_json::Value =
        serde_json::from_str(&sup.ok(&["describe", "0", "--json"])).unwrap();
    assert_eq!(described[0]["name"], "api");
    assert!(described[0]["spec"]["env"].is_object());

    // By name.
    let api_pid = sup.pid("api");
    sup.ok(&["stop", "api"]);
    assert_eq!(sup.app("api")["status"], "stopped");
    assert!(!alive(api_pid));
    // By id.
    let web_pid = sup.pid("web");
    sup.ok(&["restart", "1"]);
    let web = sup.wait_status("web", "online");
    assert_ne!(web["pid"].as_u64().unwrap() as u32, web_pid);
    assert_eq!(web["restarts"], 1);
    assert!(!alive(web_pid));
    // A stopped app starts again by name.
    sup.ok(&["start", "api"]);
    sup.wait_status("api", "online");
    // All.
    sup.ok(&["stop", "all"]);
    assert!(sup.list().iter().all(|a| a["status"] == "stopped"));
    sup.ok(&["restart", "all"]);
    assert!(sup.list().iter().all(|a| a["status"] == "online"));
    sup.ok(&["delete", "api"]);
    assert_eq!(sup.list().len(), 1);
    sup.ok(&["delete", "all"]);
    assert!(sup.list().is_empty());
}

#[test]
fn kill_9_brings_the_app_back_with_a_new_pid() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    let pid = sup.pid("api");
    assert_eq!(sup.ok(&["pid", "api"]).trim(), pid.to_string());
    signal(pid, libc::SIGKILL);
    sup.wait("api restarted", || {
        let a = sup.app("api");
        a["status"] == "online" && a["pid"].as_u64().is_some_and(|p| p as u32 != pid)
    });
    let app = sup.app("api");
    assert_eq!(app["restarts"], 1);
    assert!(sup.ok(&["describe", "api"]).contains("signal SIGKILL"));
}

#[test]
fn stopped_app_stays_stopped() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api", "--min-uptime", "100ms"]);
    let pid = sup.pid("api");
    sup.ok(&["stop", "api"]);
    assert!(!alive(pid));
    // Longer than any restart delay would be: nothing comes back.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let app = sup.app("api");
    assert_eq!(app["status"], "stopped");
    assert!(app["pid"].is_null());
    assert_eq!(app["restarts"], 0);
    assert!(app["stopped_by_user"].as_bool().unwrap());
}

#[test]
fn environment_cwd_args_and_interpreter() {
    let sup = Sup::new();
    let work = sup.path("work");
    fs::create_dir(&work).unwrap();
    let out = sup.path("out.txt");
    fs::write(
        work.join("report.sh"),
        format!(
            "echo \"$FOO|$PWD|$1|$2|$BAR\" > {}\nexec sleep 1000\n",
            out.display()
        ),
    )
    .unwrap(); // not executable: bash runs it because of .sh
    sup.command(&[
        "start",
        "report.sh",
        "--name",
        "rep",
        "--env",
        "FOO=bar baz",
        "--",
        "--queue",
        "high",
    ])
    .env("BAR", "from-cli")
    .current_dir(&work)
    .status()
    .unwrap();
    sup.wait("report written", || {
        fs::read_to_string(&out).is_ok_and(|t| t.ends_with('\n'))
    });
    let text = fs::read_to_string(&out).unwrap();
    assert_eq!(
        text.trim(),
        format!("bar baz|{}|--queue|high|from-cli", work.display())
    );

    // --cwd and a quoted command line.
    let out2 = sup.path("out2.txt");
    let line = format!("pwd > {} && exec sleep 1000", out2.display());
    sup.ok(&[
        "start",
        &line,
        "--name",
        "line",
        "--cwd",
        work.to_str().unwrap(),
    ]);
    sup.wait("pwd written", || {
        fs::read_to_string(&out2).is_ok_and(|t| t.ends_with('\n'))
    });
    assert_eq!(
        fs::read_to_string(&out2).unwrap().trim(),
        work.display().to_string()
    );
    let spec = &serde_json::from_str::<serde_json::Value>(&sup.ok(&["describe", "rep", "--json"]))
        .unwrap()[0]["spec"];
    assert_eq!(spec["program"]["kind"], "script");
    assert!(
        spec["program"]["interpreter"]
            .as_str()
            .unwrap()
            .ends_with("/bash"),
        "{spec}"
    );
}

#[test]
fn node_app_runs_under_node() {
    let sup = Sup::new();
    let out = sup.path("node.txt");
    fs::write(
        sup.path("app.js"),
        format!("require('fs').writeFileSync({:?}, process.argv0 + ' ' + process.version); setInterval(() => {{}}, 1000);", out.display().to_string()),
    )
    .unwrap();
    sup.ok(&["start", "app.js"]);
    sup.wait_status("app", "online");
    sup.wait("node wrote its version", || {
        fs::read_to_string(&out).is_ok_and(|t| t.contains(" v"))
    });
}

#[test]
fn bad_input_is_a_clear_error() {
    let sup = Sup::new();
    let err = sup.fails(&["start", "missing.js"], 1);
    assert!(err.contains("missing.js"), "{err}");
    let err = sup.fails(&["start", "no-such-command --flag"], 1);
    assert!(err.contains("command not found: no-such-command"), "{err}");
    let script = sup.script("app.sh", "exec sleep 1000");
    let err = sup.fails(&["start", &script, "--interpreter", "no-such-interp"], 1);
    assert!(err.contains("no-such-interp"), "{err}");
    let err = sup.fails(&["start", &script, "--kill-timeout", "soon"], 2);
    assert!(err.contains("soon"), "{err}");
    sup.fails(&["start", &script, "--restart", "sometimes"], 2);
    sup.fails(&["start", &script, "--stop-signal", "SIGNOPE"], 2);
    // Names PM2 accepts are accepted; what would read as an instance, an
    // id or every app is not.
    for bad in ["api:3", "42", "all", "two\nlines"] {
        let err = sup.fails(&["start", &script, "--name", bad], 2);
        assert!(err.contains("name"), "{err}");
    }

    sup.ok(&["start", &script, "--name", "api"]);
    let err = sup.fails(&["start", &script, "--name", "api"], 1);
    assert!(err.contains("already exists"), "{err}");
    let err = sup.fails(&["stop", "nope"], 1);
    assert!(err.contains("no app \"nope\""), "{err}");
    let err = sup.fails(&["restart", "42"], 1);
    assert!(err.contains("no app id 42"), "{err}");
    sup.fails(&["describe", "nope"], 1);
    sup.fails(&["delete", "nope"], 1);
    let err = sup.fails(&["start", "nope"], 1);
    assert!(err.contains("no such file, command or app: nope"), "{err}");
    assert_eq!(sup.list().len(), 1);
}

#[test]
fn unwritable_home_is_a_clear_error() {
    let sup = Sup::new();
    let file = sup.path("a-file");
    fs::write(&file, "").unwrap();
    let script = sup.script("app.sh", "exec sleep 1000");
    let out = sup
        .command(&["start", &script])
        .env("SUP_HOME", file.join("home"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SUP_HOME") && err.contains("a-file"), "{err}");
}

#[test]
fn reset_env_and_completions() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "exec sleep 1000");
    sup.ok(&[
        "start",
        &app,
        "--name",
        "r",
        "-i",
        "2",
        "--env",
        "MODE=test",
    ]);
    sup.wait("both online", || all_online(&sup.app("r"), 2));
    sup.ok(&["restart", "r"]);
    sup.wait("restarted", || sup.app("r")["restarts"].as_u64() >= Some(2));
    let out = sup.ok(&["reset", "r"]);
    assert!(out.contains("reset r"), "{out}");
    let app_json = sup.app("r");
    assert_eq!(app_json["restarts"], 0, "{app_json}");
    assert!(app_json["instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["restarts"] == 0));
    // The environment of instance 1: declared, inherited, and sup's own.
    let env = sup.ok(&["env", "r:1"]);
    let declared = env.split("# inherited").next().unwrap();
    assert!(declared.contains("MODE=test"), "{env}");
    assert!(
        env.contains("\nSUP_INSTANCE=1\n") && env.contains("\nNODE_APP_INSTANCE=1\n"),
        "{env}"
    );
    assert!(env.contains("\nPATH="), "inherited from the shell: {env}");
    let err = sup.fails(&["env", "r:5"], 1);
    assert!(err.contains("no instance 5"), "{err}");
    // describe as rich as PM2's: each instance, the interpreter, env names.
    let page = sup.ok(&["describe", "r"]);
    for wanted in ["r:0", "r:1", "interpreter", "MODE", "instances"] {
        assert!(page.contains(wanted), "{wanted}: {page}");
    }
    assert!(
        !page.contains("MODE=test") && !page.contains("test\n"),
        "names, not values: {page}"
    );
    // Completion scripts for each shell; bash's parses.
    for shell in ["bash", "zsh", "fish"] {
        let script = sup.ok(&["completions", shell]);
        assert!(
            script.contains("sup") && script.contains("reset"),
            "{shell}"
        );
    }
    let bash = sup.ok(&["completions", "bash"]);
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .unwrap();
    assert!(check.success());
    sup.ok(&["kill"]);
}

#[test]
fn init_writes_a_file_that_starts_and_never_overwrites() {
    let sup = Sup::new();
    std::fs::write(sup.path("app.js"), "setInterval(() => {}, 1000);\n").unwrap();
    let out = sup.ok(&["init"]);
    assert!(out.contains("wrote sup.toml"), "{out}");
    let err = sup.fails(&["init"], 1);
    assert!(err.contains("exists already"), "{err}");
    sup.ok(&["init", "--pm2"]);
    // Both load: the sup.toml's api starts; the PM2 file's parses.
    sup.ok(&["start", "sup.toml"]);
    sup.wait_status("api", "online");
    sup.ok(&["delete", "api"]);
    sup.ok(&["start", "ecosystem.config.js"]);
    sup.wait_status("api", "online");
    sup.ok(&["kill"]);
}
