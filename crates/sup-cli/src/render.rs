//! Human-readable output: the app table and the describe page.

use std::fmt::Write;
use sup_proto::{AppInfo, AppRow, EventRecord, HealthStatus, InstanceInfo, InstanceRow, Program};

/// Names are never cut shorter than this to fit the width.
const NAME_MIN: usize = 8;

/// The width `list` fits its table to: the terminal's, when stdout is one;
/// otherwise `COLUMNS` if set, else none (a pipe or a file gets full names,
/// for `grep`; scripts should use `--json`).
pub fn output_width() -> Option<usize> {
    use std::io::IsTerminal;
    let stdout = std::io::stdout();
    let terminal = stdout
        .is_terminal()
        .then(|| terminal_columns(&stdout))
        .flatten();
    terminal.or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok())
}

/// The column count of the terminal at `fd`, if it reports one.
fn terminal_columns(fd: &impl std::os::fd::AsRawFd) -> Option<usize> {
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we pass.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The columns of `list` (and of `sup monit`'s table).
pub(crate) const HEADER: [&str; 9] = [
    "id", "name", "pid", "status", "health", "restarts", "uptime", "cpu", "memory",
];

/// The `list` table, its names cut with an ellipsis to fit `width`.
pub fn table(apps: &[AppRow], width: Option<usize>, color: bool) -> String {
    let header = HEADER;
    let mut rows: Vec<[String; 9]> = Vec::new();
    for a in apps {
        rows.push(app_row(a));
        if a.instances.len() > 1 {
            rows.extend(a.instances.iter().map(|i| instance_row(&a.name, i)));
        }
    }
    let mut widths = column_widths(&header, &rows);
    if let Some(max) = width {
        let total = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        let name_width = widths[1]
            .saturating_sub(total.saturating_sub(max))
            .max(NAME_MIN.min(widths[1]));
        for row in &mut rows {
            row[1] = ellipsize(&row[1], name_width);
        }
        widths = column_widths(&header, &rows);
    }
    let mut out = String::new();
    let mut line = |cells: &[&str], paint: bool| {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let padded = format!("{c:<w$}");
                // The status column, coloured after padding so widths hold.
                match status_color(c).filter(|_| paint && i == 3) {
                    Some(code) => format!("{code}{padded}\x1b[0m"),
                    None => padded,
                }
            })
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&header, false);
    for row in &rows {
        line(&row.each_ref().map(String::as_str), color);
    }
    out
}

/// Whether to colour what goes to stdout: a terminal, and no `NO_COLOR`
/// (no-color.org).
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// How a status is painted: green online, red errored, yellow on the way,
/// dim stopped; the same in `list` and `sup monit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hue {
    Green,
    Red,
    Yellow,
    Dim,
}

/// The hue of a status, if it has one.
pub(crate) fn status_hue(status: &str) -> Option<Hue> {
    match status {
        "online" => Some(Hue::Green),
        "errored" => Some(Hue::Red),
        "launching" | "stopping" | "waiting-restart" => Some(Hue::Yellow),
        "stopped" => Some(Hue::Dim),
        _ => None,
    }
}

/// The colour of a status, as a terminal escape.
fn status_color(status: &str) -> Option<&'static str> {
    status_hue(status).map(|hue| match hue {
        Hue::Green => "\x1b[32m",
        Hue::Red => "\x1b[31m",
        Hue::Yellow => "\x1b[33m",
        Hue::Dim => "\x1b[2m",
    })
}

/// One instance in `describe`: its status and figures on one line.
fn instance_line(i: &InstanceInfo) -> String {
    let mut line = format!("{}, restarts {}", i.status.as_str(), i.restarts);
    if let Some(pid) = i.pid {
        line.push_str(&format!(
            ", pid {pid}, up {}, cpu {:.1}%, memory {}",
            i.uptime_ms.map_or("-".into(), duration),
            i.cpu,
            bytes(i.memory)
        ));
    } else if let Some(last) = i.last_pid {
        line.push_str(&format!(", last pid {last}"));
    }
    line
}

/// An app's line: its figures, and `ready/total` for the pid of several instances.
pub(crate) fn app_row(a: &AppRow) -> [String; 9] {
    let several = a.instances.len() > 1;
    let running = a.pid.is_some() || a.instances.iter().any(|i| i.pid.is_some());
    [
        a.id.to_string(),
        a.name.clone(),
        match several {
            true => format!("{}/{}", a.ready_instances, a.instances.len()),
            false => a.pid.map_or("-".into(), |p| p.to_string()),
        },
        a.status.as_str().to_string(),
        health(a),
        a.restarts.to_string(),
        a.uptime_ms.map_or("-".into(), duration),
        if running {
            format!("{:.1}%", a.cpu)
        } else {
            "-".into()
        },
        if running { bytes(a.memory) } else { "-".into() },
    ]
}

/// An instance's line under its app's: `api:2` and its own figures.
pub(crate) fn instance_row(app: &str, i: &InstanceRow) -> [String; 9] {
    [
        String::new(),
        format!("{app}:{}", i.index),
        i.pid.map_or("-".into(), |p| p.to_string()),
        i.status.as_str().to_string(),
        String::new(),
        i.restarts.to_string(),
        i.uptime_ms.map_or("-".into(), duration),
        i.pid.map_or("-".into(), |_| format!("{:.1}%", i.cpu)),
        i.pid.map_or("-".into(), |_| bytes(i.memory)),
    ]
}

pub(crate) fn column_widths(header: &[&str; 9], rows: &[[String; 9]]) -> [usize; 9] {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths
}

/// `text` cut to `width` characters, the last one an ellipsis, if longer.
pub(crate) fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A `key   value` page.
#[derive(Default)]
struct Page(String);

impl Page {
    fn field(&mut self, key: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{key:<18}{value}");
    }

    fn some(&mut self, key: &str, value: Option<impl std::fmt::Display>) {
        if let Some(value) = value {
            self.field(key, value);
        }
    }
}

/// The `describe` page of one app.
pub fn describe(app: &AppInfo) -> String {
    let mut page = Page::default();
    state_fields(&mut page, app);
    log_fields(&mut page, app);
    if let Some(spec) = &app.spec {
        spec_fields(&mut page, spec);
    }
    page.0
}

fn state_fields(page: &mut Page, app: &AppInfo) {
    page.field("name", &app.name);
    page.field("id", app.id);
    page.field("status", app.status.as_str());
    page.field("pid", app.pid.map_or("-".into(), |p| p.to_string()));
    page.field("uptime", app.uptime_ms.map_or("-".into(), duration));
    page.some(
        "added",
        app.added_at_ms
            .map(|ms| sup_proto::logfmt::format_ts(ms, 0)),
    );
    page.field(
        "restarts",
        format!(
            "{} ({} unstable in a row)",
            app.restarts, app.unstable_restarts
        ),
    );
    page.field("health", health(&app.into()));
    let latency = app
        .health
        .last_latency_ms
        .map_or(String::new(), |ms| format!(" in {ms} ms"));
    page.some(
        "last probe",
        app.health
            .last_result
            .as_ref()
            .map(|r| format!("{r}{latency}")),
    );
    page.some(
        "held sockets",
        (!app.listen.is_empty()).then(|| app.listen.join(", ")),
    );
    page.field("cpu", format!("{:.1}%", app.cpu));
    page.field("memory", bytes(app.memory));
    page.some("tracking", app.tracking.as_ref().map(tracking));
    page.some("last exit", app.last_exit.as_ref());
    page.some("last restart", app.restart_reason.as_ref());
    page.some("next restart in", app.restart_in_ms.map(duration));
    page.some("error", app.error.as_ref());
    page.some("stopped by user", app.stopped_by_user.then_some("yes"));
    page.some("dump warning", app.dump_warning.as_ref());
    for warning in &app.state_warnings {
        page.field("state warning", warning);
    }
    page.some("sockets", app.socket_warning.as_ref());
    if app.instances.len() > 1 {
        for i in &app.instances {
            page.field(&format!("{}:{}", app.name, i.index), instance_line(i));
        }
    }
    for i in &app.instances {
        if let Some(listen) = &i.listen {
            let label = if app.instances.len() > 1 {
                format!("listen ({}:{})", app.name, i.index)
            } else {
                "listen".to_string()
            };
            page.field(&label, &listen.note);
        }
    }
}

fn log_fields(page: &mut Page, app: &AppInfo) {
    if let Some(both) = &app.logs.combined {
        page.field("out log", &app.logs.out);
        page.field("err log", &app.logs.err);
        page.field("log", both);
    } else if app.logs.out == app.logs.err {
        page.field("log", &app.logs.out);
    } else {
        page.field("out log", &app.logs.out);
        page.field("err log", &app.logs.err);
    }
    page.some(
        "log bytes dropped",
        (app.logs.dropped_bytes > 0).then_some(app.logs.dropped_bytes),
    );
    page.some("log error", app.logs.error.as_ref());
}

fn spec_fields(page: &mut Page, spec: &sup_proto::AppSpec) {
    let command = match &spec.program {
        Program::Exec { path } => path.clone(),
        Program::Script {
            interpreter,
            script,
        } => format!("{interpreter} {script}"),
        Program::Shell { line } => format!("/bin/sh -c {line:?}"),
    };
    page.field("command", command);
    if let Program::Script {
        interpreter,
        script,
    } = &spec.program
    {
        page.field("interpreter", interpreter);
        page.field("script", script);
    }
    page.field("instances", spec.instances);
    page.some(
        "args",
        (!spec.args.is_empty()).then(|| format!("{:?}", spec.args)),
    );
    page.field("cwd", &spec.cwd);
    page.field("restart policy", spec.restart.as_str());
    page.field("restart delay", duration(spec.restart_delay_ms));
    page.field("backoff max", duration(spec.backoff_max_ms));
    page.field("min uptime", duration(spec.min_uptime_ms));
    page.field(
        "max restarts",
        spec.max_restarts
            .map_or("no limit".into(), |n| n.to_string()),
    );
    page.field("stop signal", spec.stop_signal);
    page.field("kill timeout", duration(spec.kill_timeout_ms));
    page.field(
        "env",
        match spec.env.len() {
            0 => "none declared".to_string(),
            _ => spec.env.keys().cloned().collect::<Vec<_>>().join(", "),
        },
    );
    triggers(page, spec);
}

/// The restart triggers an app sets; nothing for those it doesn't.
fn triggers(page: &mut Page, spec: &sup_proto::AppSpec) {
    page.some("max memory", spec.max_memory.map(bytes));
    page.some("memory limit", spec.memory_max.map(bytes));
    page.some(
        "cpu quota",
        spec.cpu_quota.map(|p| format!("{p}% of a core")),
    );
    page.some("cron restart", spec.cron_restart.as_ref());
    if !spec.watch.is_empty() {
        page.field("watch", spec.watch.join(", "));
        page.field("watch delay", duration(spec.watch_delay_ms));
    }
    page.some(
        "ignore watch",
        (!spec.ignore_watch.is_empty()).then(|| spec.ignore_watch.join(", ")),
    );
    let codes: Vec<String> = spec.stop_exit_codes.iter().map(i32::to_string).collect();
    page.some(
        "stop exit codes",
        (!codes.is_empty()).then(|| codes.join(",")),
    );
}

/// `cgroup (controllers: cpu, memory)`, or `tags (why)`.
fn tracking(t: &sup_proto::Tracking) -> String {
    match t.mode {
        sup_proto::TrackingMode::Cgroup => {
            let at = t.cgroup.as_deref().unwrap_or("?");
            match t.controllers.is_empty() {
                true => format!(
                    "cgroup, in {at} (no controllers: cpu from cpu.stat, memory from /proc)"
                ),
                false => format!(
                    "cgroup, in {at} (controllers: {})",
                    t.controllers.join(", ")
                ),
            }
        }
        mode => format!(
            "{mode} ({})",
            t.reason.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// `starting`, `healthy`, `unhealthy (2)`, or `-` when nothing probes the app.
fn health(app: &AppRow) -> String {
    // Clients of the held socket wait for ever: say so where it shows.
    if app.listen_mismatch {
        return "listen mismatch".into();
    }
    match app.health {
        HealthStatus::Unknown => "-".into(),
        HealthStatus::Unhealthy => format!("unhealthy ({})", app.health_failures),
        other => other.to_string(),
    }
}

/// One line of `sup events`: time (UTC), app, what, details.
pub fn event(e: &EventRecord) -> String {
    let time = sup_proto::logfmt::format_ts(e.ts_ms, 0);
    format!("{time} {}", event_what(e))
}

/// An event without its time: app, what, details.
pub(crate) fn event_what(e: &EventRecord) -> String {
    let detail = if e.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", e.detail)
    };
    format!("{} {}{detail}", e.app, e.kind)
}

/// `850ms`, `12s`, `5m`, `3h`, `2d`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{}s", ms / 1_000),
        60_000..=3_599_999 => format!("{}m", ms / 60_000),
        3_600_000..=86_399_999 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// `512 B`, `4.0 KiB`, `42.1 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_proto::Status;

    /// The rows `list` shows of `apps`.
    fn rows(apps: &[AppInfo]) -> Vec<AppRow> {
        apps.iter().map(AppRow::from).collect()
    }

    /// A one-instance app as `list` shows it: online with `pid`, else stopped.
    fn app(name: &str, pid: Option<u32>) -> AppInfo {
        let mut app = crate::monit::test_app(3, name, 0);
        app.pid = pid;
        app.status = match pid {
            Some(_) => Status::Online,
            None => Status::Stopped,
        };
        app.restarts = 2;
        app.uptime_ms = pid.map(|_| 65_000);
        app.cpu = 1.5;
        app.memory = 3 * 1024 * 1024;
        app.ready_instances = 0;
        app
    }

    #[test]
    fn table_aligns_columns() {
        let out = table(
            &rows(&[app("api", Some(42)), app("worker-long-name", None)]),
            None,
            false,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("id  name"), "{out}");
        assert!(
            lines[1].contains("api") && lines[1].contains("online") && lines[1].contains("3.0 MiB")
        );
        assert!(lines[1].contains("1m"), "{out}");
        let status_col = lines[0].find("status").unwrap();
        assert_eq!(lines[2].find("stopped"), Some(status_col), "{out}");
    }

    #[test]
    fn long_names_are_cut_to_fit_the_width() {
        let long = "a-very-long-application-name-of-40-chars";
        let apps = [app(long, Some(42)), app("api", None)];
        let wide = table(&rows(&apps), None, false);
        assert!(wide.contains(long), "{wide}");
        let fitted = table(&rows(&apps), Some(80), false);
        assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
        assert!(fitted.contains("a-very-long-applicat…"), "{fitted}");
        // Short names are never cut; a narrow width keeps some of each name.
        assert!(fitted.contains("api"), "{fitted}");
        let narrow = table(&rows(&apps), Some(20), false);
        assert!(narrow.contains("a-very-…"), "{narrow}");
        // A table that fits stays as it is.
        assert_eq!(table(&rows(&apps), Some(500), false), wide);
    }

    #[test]
    fn ellipsis() {
        assert_eq!(ellipsize("abcdef", 6), "abcdef");
        assert_eq!(ellipsize("abcdefg", 6), "abcde…");
    }

    #[test]
    fn health_column() {
        let mut a = app("api", Some(42));
        assert_eq!(health(&AppRow::from(&a)), "-");
        a.health.status = HealthStatus::Unhealthy;
        a.health.failures = 2;
        assert_eq!(health(&AppRow::from(&a)), "unhealthy (2)");
        a.health.status = HealthStatus::Starting;
        assert_eq!(health(&AppRow::from(&a)), "starting");
    }

    #[test]
    fn units() {
        assert_eq!(duration(999), "999ms");
        assert_eq!(duration(61_000), "1m");
        assert_eq!(bytes(100), "100 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn statuses_are_coloured_without_moving_the_columns() {
        let apps = [app("api", Some(42)), app("worker", None)];
        let plain = table(&rows(&apps), None, false);
        let painted = table(&rows(&apps), None, true);
        assert!(!plain.contains('\x1b'));
        assert!(painted.contains("\x1b[32m"), "{painted:?}");
        let strip = |s: &str| {
            s.replace("\x1b[32m", "")
                .replace("\x1b[2m", "")
                .replace("\x1b[0m", "")
        };
        assert_eq!(strip(&painted), plain);
    }
}
