//! Ecosystem files of the shapes real projects write
//! (`tests/fixtures/pm2/real`), started as they are: every app must come
//! online and stay up, and serve on its port from every instance.

use crate::support::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fixtures, copied where the apps may write their logs.
fn fixtures(sup: &Sup, port: u16) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pm2/real");
    let dir = sup.path("real");
    fs::create_dir_all(&dir).unwrap();
    for entry in fs::read_dir(from).unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap();
        let text = text.replace("@PORT@", &port.to_string());
        fs::write(dir.join(entry.file_name()), text).unwrap();
    }
    dir
}

/// Starts `file` of the fixtures with `args`, as `pm2 start` would be.
fn start(sup: &Sup, dir: &Path, port: u16, file: &str, args: &[&str]) -> String {
    let path = dir.join(file);
    let mut all = vec!["start", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = sup
        .command(&all)
        .current_dir(dir)
        .env("TEST_PORT", port.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sup start {file}: {text}");
    text
}

/// Every app online, and still so with no restart a moment later.
fn settled(sup: &Sup, names: &[&str]) {
    sup.wait("every app online", || {
        let list = sup.list();
        names.iter().all(|n| {
            list.iter()
                .any(|a| a["name"] == *n && a["status"] == "online")
        })
    });
    let before: Vec<_> = names
        .iter()
        .map(|n| sup.app(n)["restarts"].clone())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let after: Vec<_> = names
        .iter()
        .map(|n| sup.app(n)["restarts"].clone())
        .collect();
    assert_eq!(
        before,
        after,
        "an app restarted on its own: {:?}",
        sup.list()
    );
}

/// Distinct pids answering on `port` over a few requests.
fn answering_pids(port: u16) -> std::collections::BTreeSet<String> {
    (0..40)
        .filter_map(|_| get(port, "/", Duration::from_secs(5)).ok())
        .filter_map(|body| {
            body.lines()
                .last()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
        })
        .collect()
}

#[test]
fn cluster_apps_of_real_shapes_serve_from_every_instance() {
    for (file, name, args) in [
        (
            "1-cluster-logs.config.js",
            "backend",
            &["--env", "production"][..],
        ),
        ("3-spread.config.js", "shared-api", &[][..]),
        (
            "5-node-args-deploy.config.js",
            "API",
            &["--env", "production"][..],
        ),
    ] {
        let sup = Sup::new();
        let port = free_port();
        let dir = fixtures(&sup, port);
        let said = start(&sup, &dir, port, file, args);
        settled(&sup, &[name]);
        let instances = sup.app(name)["instances"].as_array().unwrap().len();
        assert!(instances >= 1, "{file}");
        let pids = answering_pids(port);
        assert!(
            pids.len() == instances || (instances > 1 && pids.len() > 1),
            "{file}: {instances} instances, answers from {pids:?}"
        );
        if file.starts_with('5') {
            assert!(said.contains("deploy"), "{said}");
            let pid = sup.app(name)["instances"][0]["pid"].as_u64().unwrap();
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
            let environ = String::from_utf8_lossy(&environ);
            assert!(environ.contains("NODE_ENV=production"));
            let body = get(port, "/", Duration::from_secs(5)).unwrap();
            assert!(body.contains("boot yes"), "node_args -r ran: {body}");
        }
        if file.starts_with('1') {
            let out = fs::read_to_string(dir.join("logs/out.log")).unwrap_or_default();
            assert!(out.contains("listening on"), "{out}");
        }
    }
}

#[test]
fn profiles_only_and_json_files_of_real_shapes_start_as_pm2_starts_them() {
    let sup = Sup::new();
    let port = free_port();
    let dir = fixtures(&sup, port);
    // instances: 0 is one per CPU; the production profile over env.
    start(
        &sup,
        &dir,
        port,
        "2-profiles.config.js",
        &["--env", "production"],
    );
    settled(&sup, &["signaling"]);
    let body = get(port, "/", Duration::from_secs(5)).unwrap();
    assert!(body.contains("env production"), "{body}");
    sup.ok(&["delete", "all"]);
    // --only: one app of two.
    start(&sup, &dir, port, "4-only.config.js", &["--only", "prod"]);
    settled(&sup, &["prod"]);
    let names: Vec<String> = sup
        .list()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["prod"]);
    let pid = sup.app("prod")["instances"][1]["pid"].as_u64().unwrap();
    let environ =
        String::from_utf8_lossy(&fs::read(format!("/proc/{pid}/environ")).unwrap()).into_owned();
    assert!(environ.contains("INSTANCE_ID=1"), "instance_var");
    sup.ok(&["delete", "all"]);
    // JSON with comments and unquoted keys; a cluster web app and a worker.
    start(&sup, &dir, port, "6-web-and-worker.json", &[]);
    settled(&sup, &["web", "jobs"]);
    assert!(answering_pids(port).len() > 1, "both web instances serve");
}
