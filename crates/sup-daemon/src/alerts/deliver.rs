//! Delivery to one webhook: a bounded queue and a task that sends from it,
//! retrying with backoff. A receiver that fails or hangs delays only its
//! own queue; past [`QUEUE`] alerts the newest are dropped and counted,
//! and the next alert that goes out says how many.

use super::detect::{Alert, AlertKind};
use super::http;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use sup_proto::notify::{NotifyFormat, NotifyTarget};
use tokio::sync::mpsc;

/// Alerts waiting for one receiver.
const QUEUE: usize = 64;

/// Attempts per alert.
const ATTEMPTS: u32 = 5;

/// Wait before the first retry; doubled for each next one.
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The sending end of one receiver's queue.
pub struct Delivery {
    tx: mpsc::Sender<Alert>,
    dropped: Arc<AtomicU64>,
}

impl Delivery {
    /// Starts the task that sends to `target`, for a daemon on `host`.
    pub fn start(target: NotifyTarget, host: Arc<str>) -> Delivery {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(target, host, rx, dropped.clone()));
        Delivery { tx, dropped }
    }

    /// Queues `alert`, or counts it dropped when the queue is full.
    pub fn offer(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn run(
    target: NotifyTarget,
    host: Arc<str>,
    mut rx: mpsc::Receiver<Alert>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        for (alert, repeats) in collapse(batch) {
            let message = Message {
                alert: &alert,
                repeats,
                dropped: dropped.swap(0, Ordering::Relaxed),
                host: &host,
            };
            let (headers, body) = message.render(target.format);
            send(&target, &headers, body, &alert).await;
        }
    }
}

/// Sends one alert, retrying what may succeed later.
async fn send(
    target: &NotifyTarget,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    alert: &Alert,
) {
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        match http::post(target, headers, body.clone()).await {
            Ok(()) => return,
            Err(failure) if failure.retry && attempt < ATTEMPTS => {
                tracing::debug!(%target, "alert attempt {attempt} failed: {}", failure.why);
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(failure) => {
                return tracing::warn!(
                    app = %alert.app,
                    %target,
                    "alert {} not delivered after {attempt} attempts: {}",
                    alert.kind.as_str(),
                    failure.why
                );
            }
        }
    }
}

/// Alerts with the same app and kind in a row become one, with a count.
fn collapse(batch: Vec<Alert>) -> Vec<(Alert, u32)> {
    let mut out: Vec<(Alert, u32)> = Vec::new();
    for alert in batch {
        match out.last_mut() {
            Some((last, n)) if last.app_id == alert.app_id && last.kind == alert.kind => {
                *last = alert;
                *n += 1;
            }
            _ => out.push((alert, 1)),
        }
    }
    out
}

/// An alert as a receiver gets it.
struct Message<'a> {
    alert: &'a Alert,
    repeats: u32,
    dropped: u64,
    host: &'a str,
}

impl Message<'_> {
    /// One line for a human: `sup: api errored on web1: exited with code 1`.
    fn text(&self) -> String {
        let a = self.alert;
        let mut text = format!("sup: {} {} on {}", a.app, a.kind.as_str(), self.host);
        if !a.detail.is_empty() {
            text.push_str(&format!(": {}", a.detail));
        }
        if self.repeats > 1 {
            text.push_str(&format!(" (×{})", self.repeats));
        }
        if self.dropped > 0 {
            text.push_str(&format!(
                " [{} dropped before this one]",
                crate::plural::count(self.dropped, "alert")
            ));
        }
        text
    }

    /// Its headers and body in `format`.
    fn render(&self, format: NotifyFormat) -> (Vec<(&'static str, String)>, Vec<u8>) {
        let a = self.alert;
        let trouble = a.kind.is_trouble();
        match format {
            NotifyFormat::Json => {
                let body = serde_json::json!({
                    "text": self.text(),
                    "app": a.app,
                    "app_id": a.app_id,
                    "event": a.kind.as_str(),
                    "detail": a.detail,
                    "severity": if trouble { "critical" } else { "ok" },
                    "host": self.host,
                    "ts_ms": a.ts_ms,
                    "repeats": self.repeats,
                    "dropped": self.dropped,
                });
                let headers = vec![("content-type", "application/json".to_string())];
                (headers, body.to_string().into_bytes())
            }
            NotifyFormat::Ntfy => {
                let (priority, tags) = match a.kind {
                    AlertKind::Recovered => ("default", "white_check_mark"),
                    AlertKind::Memory => ("default", "warning"),
                    _ => ("high", "rotating_light"),
                };
                let headers = vec![
                    ("content-type", "text/plain; charset=utf-8".to_string()),
                    ("title", format!("{} {}", a.app, a.kind.as_str())),
                    ("priority", priority.to_string()),
                    ("tags", tags.to_string()),
                ];
                (headers, self.text().into_bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(app_id: u32, kind: AlertKind) -> Alert {
        Alert {
            kind,
            app_id,
            app: format!("a{app_id}"),
            detail: "why".into(),
            ts_ms: 5,
        }
    }

    #[test]
    fn repeats_in_a_row_collapse() {
        use AlertKind::*;
        let batch = vec![
            alert(1, Memory),
            alert(1, Memory),
            alert(2, Memory),
            alert(1, Memory),
        ];
        let counts: Vec<(u32, u32)> = collapse(batch)
            .iter()
            .map(|(a, n)| (a.app_id, *n))
            .collect();
        assert_eq!(counts, [(1, 2), (2, 1), (1, 1)]);
    }

    #[test]
    fn bodies_for_slack_style_and_ntfy_style_receivers() {
        let a = alert(3, AlertKind::Errored);
        let m = Message {
            alert: &a,
            repeats: 2,
            dropped: 4,
            host: "web1",
        };
        let (headers, body) = m.render(NotifyFormat::Json);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json["text"],
            "sup: a3 errored on web1: why (×2) [4 alerts dropped before this one]"
        );
        assert_eq!(
            (json["event"].as_str(), json["app_id"].as_u64()),
            (Some("errored"), Some(3))
        );
        assert_eq!(headers[0].1, "application/json");
        let (headers, body) = m.render(NotifyFormat::Ntfy);
        assert!(String::from_utf8(body)
            .unwrap()
            .starts_with("sup: a3 errored"));
        assert!(headers.contains(&("priority", "high".to_string())));
        assert!(headers.contains(&("title", "a3 errored".to_string())));
    }
}
