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
        for app in apps {
            let v = value(app);
            if !v.is_nan() {
                let _ = writeln!(out, "{name}{{app=\"{}\"}} {v}", escape(&app.name));
            }
        }
    }
    family(
        &mut out,
        "sup_app_status",
        "gauge",
        "The app's status: 1 for the one it has.",
    );
    for app in apps {
        for status in Status::ALL {
            let on = u8::from(app.status == status);
            let _ = writeln!(
                out,
                "sup_app_status{{app=\"{}\",status=\"{}\"}} {on}",
                escape(&app.name),
                status.as_str()
            );
        }
    }
    family(
        &mut out,
        "sup_app_last_exit_code",
        "gauge",
        "The exit code of the app's last exit (128 + signal for a signal).",
    );
    for app in apps {
        if let Some(code) = app.last_exit_code {
            let _ = writeln!(
                out,
                "sup_app_last_exit_code{{app=\"{}\"}} {code}",
                escape(&app.name)
            );
        }
    }
    instances(&mut out, apps);
    out
}

/// The per-instance series.
fn instances(out: &mut String, apps: &[AppInfo]) {
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
        for app in apps {
            for inst in &app.instances {
                if let Some(v) = value(inst) {
                    let _ = writeln!(
                        out,
                        "{name}{{app=\"{}\",instance=\"{}\"}} {v}",
                        escape(&app.name),
                        inst.index
                    );
                }
            }
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a \"b\"\\c\nd"), "a \\\"b\\\"\\\\c\\nd");
    }
}
