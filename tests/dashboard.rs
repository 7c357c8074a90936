//! The dashboard in a real headless Chromium (`tests/apps/dashboard.py`,
//! selenium): it loads and shows the apps, their figures and live logs; a
//! restart without the token is refused, with it the app restarts; beyond
//! loopback it shows nothing without the token.

use crate::support::*;

#[test]
fn the_dashboard_in_chromium_shows_the_apps_and_restarts_only_with_the_token() {
    if !std::path::Path::new("/usr/bin/chromedriver").exists() {
        assert!(!skip(
            "chromium and chromium-driver (Debian) are not installed"
        ));
        return;
    }
    let sup = Sup::new();
    let app = sup.script("app.sh", "echo hello from the app; exec sleep 1000");
    sup.ok(&["start", &app, "--name", "api"]);
    let pid = sup.wait_status("api", "online")["pid"].as_u64().unwrap();
    let (port, wide) = (free_port(), free_port());
    let out = sup.ok(&["web", "--listen", &format!("127.0.0.1:{port}")]);
    let token = out
        .split("need the token ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no token shown: {out}"))
        .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/apps/dashboard.py");
    let shot = std::env::var("SUP_DASHBOARD_SHOT").unwrap_or_default();
    let browse = |mode: &str, port: u16| {
        let url = format!("http://127.0.0.1:{port}/");
        let out = std::process::Command::new("python3")
            .args([script, mode, &url, &token, "api"])
            .args((!shot.is_empty()).then_some(&shot))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named 'selenium'") {
            return !skip("selenium (PyPI) is not installed");
        }
        assert!(out.status.success(), "{mode}: {said}\n{err}");
        true
    };
    if !browse("loopback", port) {
        return;
    }
    let restarted = sup.app("api");
    assert_ne!(restarted["pid"].as_u64(), Some(pid));
    assert_eq!(
        restarted["restarts"], 1,
        "restarted once: the refused click did nothing"
    );
    sup.ok(&["web", "--listen", &format!(":{wide}")]);
    browse("wide", wide);
    sup.ok(&["kill"]);
}
