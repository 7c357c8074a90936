//! PM2 files as real projects write them: what PM2 does with them, sup
//! does too.

use crate::support::*;
use std::fs;

#[test]
fn log_file_beside_out_and_error_files_gets_every_line_as_pm2_writes_all_three() {
    let sup = Sup::new();
    let app = sup.script("both.sh", "echo to-out; echo to-err >&2; exec sleep 330");
    fs::write(
        sup.path("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'three', script: '{app}', \
             out_file: 'o.log', error_file: 'e.log', log_file: 'all.log' }}] }};\n"
        ),
    )
    .unwrap();
    let out = sup.run(&["start", "ecosystem.config.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("log_file"), "no warning: {stderr}");
    let read = |f: &str| fs::read_to_string(sup.path(f)).unwrap_or_default();
    sup.wait("all three files written", || {
        read("all.log").contains("to-out") && read("all.log").contains("to-err")
    });
    sup.wait("out and err files written", || {
        read("o.log").contains("to-out") && read("e.log").contains("to-err")
    });
    assert!(!read("o.log").contains("to-err") && !read("e.log").contains("to-out"));
    let page = sup.ok(&["describe", "three"]);
    assert!(
        page.contains("all.log") && page.contains("o.log") && page.contains("e.log"),
        "{page}"
    );
    sup.ok(&["kill"]);
}

#[test]
fn apps_from_pm2_files_stop_with_sigint_and_pm2s_kill_timeout() {
    let sup = Sup::new();
    let done = sup.path("cleaned-up");
    let app = sup.script(
        "cleanup.sh",
        &format!(
            "trap 'echo $1 > {}; exit 0' INT; trap 'exit 9' TERM; sleep 331 & wait",
            done.display()
        ),
    );
    fs::write(
        sup.path("ecosystem.config.js"),
        format!("module.exports = {{ apps: [{{ name: 'pm2ish', script: '{app}', args: 'SIGINT' }}] }};\n"),
    )
    .unwrap();
    sup.ok(&["start", "ecosystem.config.js"]);
    sup.wait_status("pm2ish", "online");
    let export = sup.ok(&["export"]);
    assert!(
        export.contains("stop_signal = \"SIGINT\"") && export.contains("kill_timeout_ms = 1600"),
        "{export}"
    );
    sup.ok(&["stop", "pm2ish"]);
    assert_eq!(fs::read_to_string(&done).unwrap().trim(), "SIGINT");
    // kill_signal, when a file gives it, wins; sup's own flags keep SIGTERM.
    fs::write(
        sup.path("term.config.js"),
        format!("module.exports = {{ apps: [{{ name: 'termed', script: '{app}', kill_signal: 'SIGTERM' }}] }};\n"),
    )
    .unwrap();
    sup.ok(&["start", "term.config.js"]);
    sup.ok(&["start", "sleep 332", "--name", "native"]);
    let export = sup.ok(&["export"]);
    let section = |name: &str| {
        export
            .split("[[app]]")
            .find(|s| s.contains(&format!("name = \"{name}\"")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        section("termed").contains("stop_signal = \"SIGTERM\""),
        "{export}"
    );
    assert!(!section("native").contains("SIGINT"), "{export}");
    sup.ok(&["kill"]);
}

#[test]
fn names_pm2_accepts_work_and_their_logs_never_collide() {
    let sup = Sup::new();
    let app = sup.script("say.sh", "echo \"I am $1\"; exec sleep 333");
    fs::write(
        sup.path("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [\
             {{ name: 'NearBy Server', script: '{app}', args: 'spaced' }},\
             {{ name: 'express-ejs/development', script: '{app}', args: 'slashed' }},\
             {{ name: 'NearBy-Server', script: '{app}', args: 'dashed' }}] }};\n"
        ),
    )
    .unwrap();
    sup.ok(&["start", "ecosystem.config.js"]);
    for name in ["NearBy Server", "express-ejs/development", "NearBy-Server"] {
        sup.wait_status(name, "online");
    }
    let logs = sup.home.join("logs");
    let read = |f: &str| fs::read_to_string(logs.join(f)).unwrap_or_default();
    // PM2's file names; the second app that would land on the same files
    // gets its id.
    sup.wait("each app's own file", || {
        read("NearBy-Server-out.log").contains("I am spaced")
            && read("express-ejs-development-out.log").contains("I am slashed")
            && read("NearBy-Server-2-out.log").contains("I am dashed")
    });
    assert!(!read("NearBy-Server-out.log").contains("dashed"));
    let out = sup.ok(&["logs", "NearBy Server", "--lines", "5", "--nostream"]);
    assert!(
        out.contains("I am spaced") && !out.contains("dashed"),
        "{out}"
    );
    sup.ok(&["stop", "express-ejs/development"]);
    assert_eq!(sup.app("express-ejs/development")["status"], "stopped");
    assert_eq!(sup.app("NearBy Server")["status"], "online");
    sup.ok(&["kill"]);
}

#[test]
fn log_date_format_writes_pm2s_tokens_without_a_warning() {
    let sup = Sup::new();
    let app = sup.script("say.sh", "echo dated; exec sleep 334");
    fs::write(
        sup.path("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'dated', script: '{app}', \
             log_date_format: 'YYYY-MM-DD HH:mm Z' }}] }};\n"
        ),
    )
    .unwrap();
    let out = sup.run(&["start", "ecosystem.config.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("log_date_format"),
        "{stderr}"
    );
    let log = sup.home.join("logs/dated-out.log");
    let mut line = String::new();
    sup.wait("the line is written", || {
        line = fs::read_to_string(&log).unwrap_or_default();
        line.contains("dated")
    });
    // `2026-12-04 19:05 +00:00 dated`
    let (stamp, text) = line.trim_end().split_at(23);
    assert_eq!(text, " dated", "{line}");
    let b = stamp.as_bytes();
    assert!(
        b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b' '
            && b[13] == b':'
            && b[16] == b' '
            && (b[17] == b'+' || b[17] == b'-')
            && b[20] == b':',
        "{line}"
    );
    sup.ok(&["kill"]);
}

#[test]
fn increment_var_gives_each_instance_its_own_value() {
    let sup = Sup::new();
    let app = sup.script("port.sh", "echo \"port $PORT\"; exec sleep 335");
    fs::write(
        sup.path("ecosystem.config.js"),
        format!(
            "module.exports = {{ apps: [{{ name: 'inc', script: '{app}', instances: 2, \
             increment_var: 'PORT', env: {{ PORT: 4100 }} }}] }};\n"
        ),
    )
    .unwrap();
    let out = sup.run(&["start", "ecosystem.config.js"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("increment_var"),
        "{stderr}"
    );
    sup.wait("both instances said their port", || {
        let log = fs::read_to_string(sup.home.join("logs/inc-out.log")).unwrap_or_default();
        log.contains("[0] port 4100") && log.contains("[1] port 4101")
    });
    sup.ok(&["kill"]);
}
