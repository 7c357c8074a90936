//! `/metrics`: the apps as Prometheus' text exposition format (0.0.4),
//! from the same figures as `list`. Names follow Prometheus' conventions:
//! `sup_` prefix, base units, `_total` for counters, one label set per
//! series.

use std::fmt::Write;
use sup_proto::{AppInfo, HealthStatus, Status};

/// A series: its name, type, help, and its value for one app or instance.
type Series<T, V = f64> = (&'static str, &'static str, &'static str, fn(&T) -> V);

/// The exposition of `apps`, for a daemon up `uptime_s` seconds.
pub fn render(apps: &[AppInfo], uptime_s: f64) -> String {
    let mut out = String::with_capacity(256 + apps.len() * 1024);
    // Each name is escaped once, not once per series: at 1,000 apps that
    // is 1,000 strings instead of 20,000.
    let names: Vec<String> = apps.iter().map(|a| escape(&a.name)).collect();
    family(
        &mut out,
        "sup_build_info",
        "gauge",
        "The version of the running sup.",
    );
    let _ = writeln!(
        out,
        "sup_build_info{{version=\"{}\"}} 1",
        sup_proto::SUP_VERSION
    );
    family(
        &mut out,
        "sup_daemon_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    );
    let _ = writeln!(out, "sup_daemon_uptime_seconds {uptime_s:.3}");
    family(
        &mut out,
        "sup_daemon_apps",
        "gauge",
        "Apps the daemon knows.",
    );
    let _ = writeln!(out, "sup_daemon_apps {}", apps.len());
    let per_app: [Series<AppInfo>; 7] = [
        (
            "sup_app_up",
            "gauge",
            "1 when the app is online, else 0.",
            |a| f64::from(u8::from(a.status == Status::Online)),
        ),
        (
            "sup_app_restarts_total",
            "counter",
            "Restarts of the app, over its instances.",
            |a| f64::from(a.restarts),
        ),
        (
            "sup_app_instances",
            "gauge",
            "Instances the app runs.",
            |a| a.instances.len() as f64,
        ),
        (
            "sup_app_healthy",
            "gauge",
            "1 healthy, 0 unhealthy; absent without a liveness probe.",
            |a| match a.health.status {
                HealthStatus::Healthy => 1.0,
                HealthStatus::Unhealthy => 0.0,
                _ => f64::NAN,
            },
        ),
        (
            "sup_app_probe_duration_seconds",
            "gauge",
            "How long the last liveness probe took; absent without one.",
            |a| {
                a.health
                    .last_latency_ms
                    .map_or(f64::NAN, |ms| ms as f64 / 1000.0)
            },
        ),
        (
            "sup_app_log_bytes_total",
            "counter",
            "Output bytes written to its log files.",
            |a| a.logs.written_bytes as f64,
        ),
        (
            "sup_app_log_dropped_bytes_total",
            "counter",
            "Output bytes dropped because its log could not be written.",
            |a| a.logs.dropped_bytes as f64,
        ),
    ];
    for (name, kind, help, value) in per_app {
        family(&mut out, name, kind, help);
        for (app, label) in apps.iter().zip(&names) {
            let v = value(app);
            if !v.is_nan() {
                sample(&mut out, name, label, None, v);
            }
        }
    }
    family(
        &mut out,
        "sup_app_status",
        "gauge",
        "The app's status: 1 for the one it has.",
    );
    for (app, label) in apps.iter().zip(&names) {
        for status in Status::ALL {
            let on = f64::from(u8::from(app.status == status));
            let extra = Some(("status", status.as_str()));
            sample(&mut out, "sup_app_status", label, extra, on);
        }
    }
    family(
        &mut out,
        "sup_app_last_exit_code",
        "gauge",
        "The exit code of the app's last exit (128 + signal for a signal).",
    );
    for (app, label) in apps.iter().zip(&names) {
        if let Some(code) = app.last_exit_code {
            sample(
                &mut out,
                "sup_app_last_exit_code",
                label,
                None,
                f64::from(code),
            );
        }
    }
    instances(&mut out, apps, &names);
    out
}

/// The per-instance series.
fn instances(out: &mut String, apps: &[AppInfo], names: &[String]) {
    let series: [Series<sup_proto::InstanceInfo, Option<f64>>; 5] = [
        (
            "sup_instance_up",
            "gauge",
            "1 when the instance is online, else 0.",
            |i| Some(f64::from(u8::from(i.status == Status::Online))),
        ),
        (
            "sup_instance_restarts_total",
            "counter",
            "Restarts of the instance.",
            |i| Some(f64::from(i.restarts)),
        ),
        (
            "sup_instance_cpu_ratio",
            "gauge",
            "CPU used since the last reading, in cores (1 = one core busy).",
            |i| i.pid.map(|_| i.cpu / 100.0),
        ),
        (
            "sup_instance_cpu_seconds_total",
            "counter",
            "CPU time its current processes used (back to 0 when it restarts).",
            |i| i.pid.map(|_| i.cpu_seconds),
        ),
        (
            "sup_instance_memory_bytes",
            "gauge",
            "Resident memory of the instance's processes.",
            |i| i.pid.map(|_| i.memory as f64),
        ),
    ];
    for (name, kind, help, value) in series {
        family(out, name, kind, help);
        for (app, label) in apps.iter().zip(names) {
            for inst in &app.instances {
                if let Some(v) = value(inst) {
                    let index = inst.index.to_string();
                    sample(out, name, label, Some(("instance", &index)), v);
                }
            }
        }
    }
}

/// One sample line: `name{app="label",key="value"} v`, written piece by
/// piece (a `format!` per line is most of the cost at 1,000 apps).
fn sample(out: &mut String, name: &str, app: &str, extra: Option<(&str, &str)>, v: f64) {
    out.push_str(name);
    out.push_str("{app=\"");
    out.push_str(app);
    out.push('"');
    if let Some((key, value)) = extra {
        out.push(',');
        out.push_str(key);
        out.push_str("=\"");
        out.push_str(value);
        out.push('"');
    }
    out.push_str("} ");
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
    out.push('\n');
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_string();
    }
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_whole_lines_with_their_labels() {
        let app: AppInfo = serde_json::from_value(serde_json::json!({
            "id": 0, "name": "we\"b", "pid": 9, "status": "online", "restarts": 3,
            "uptime_ms": 5, "cpu": 50.0, "memory": 4096, "unstable_restarts": 0,
            "stopped_by_user": false, "last_exit": null, "error": null, "ready_instances": 1,
            "instances": [{
                "index": 1, "pid": 9, "status": "online", "uptime_ms": 5,
                "cpu": 50.0, "memory": 4096, "cpu_seconds": 1.25
            }]
        }))
        .unwrap();
        let text = render(&[app], 2.5);
        for line in [
            "sup_daemon_uptime_seconds 2.500",
            "sup_app_restarts_total{app=\"we\\\"b\"} 3",
            "sup_app_status{app=\"we\\\"b\",status=\"online\"} 1",
            "sup_app_status{app=\"we\\\"b\",status=\"errored\"} 0",
            "sup_instance_cpu_ratio{app=\"we\\\"b\",instance=\"1\"} 0.5",
            "sup_instance_cpu_seconds_total{app=\"we\\\"b\",instance=\"1\"} 1.25",
            "sup_instance_memory_bytes{app=\"we\\\"b\",instance=\"1\"} 4096",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a \"b\"\\c\nd"), "a \\\"b\\\"\\\\c\\nd");
    }
}
