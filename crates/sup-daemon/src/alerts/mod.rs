//! Alerts to webhooks (`--notify URL` per app, `SUP_NOTIFY` or
//! `[daemon] notify` for every app): when an app turns errored, fails its
//! health checks, is restarted for memory, crash-loops, or recovers.
//!
//! The supervisor hands events over a channel and goes on; a task of its
//! own decides what is worth telling ([`detect`]) and each receiver has a
//! queue and a sender ([`deliver`]), so a slow or dead receiver never
//! delays supervision or another receiver. With no target anywhere no
//! event is handed over and nothing runs.

mod deliver;
mod detect;
mod http;

use deliver::Delivery;
use detect::{Alert, Detector};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use sup_proto::notify::NotifyTarget;
use sup_proto::EventRecord;
use tokio::sync::mpsc;

/// What the supervisor tells the alerts task.
enum Input {
    /// An event of an app, with the app's own targets.
    Event(EventRecord, Arc<[String]>),
    /// The targets of every app, replacing the previous ones.
    DaemonTargets(Vec<String>),
    /// The app was deleted.
    Forget(u32),
}

/// The supervisor's handle on the alerts task.
pub struct Alerts {
    tx: mpsc::UnboundedSender<Input>,
    daemon_wide: bool,
}

impl Alerts {
    /// Starts the task, with `daemon_targets` for every app.
    pub fn start(daemon_targets: Vec<String>) -> Alerts {
        let (tx, rx) = mpsc::unbounded_channel();
        let daemon_wide = !daemon_targets.is_empty();
        tokio::spawn(run(rx, daemon_targets));
        Alerts { tx, daemon_wide }
    }

    /// Hands over an event of an app whose own targets are `targets`.
    pub fn event(&self, event: &EventRecord, targets: &[String]) {
        if self.daemon_wide || !targets.is_empty() {
            let _ = self
                .tx
                .send(Input::Event(event.clone(), Arc::from(targets)));
        }
    }

    /// Sets the targets of every app.
    pub fn set_daemon_targets(&mut self, targets: Vec<String>) {
        self.daemon_wide = !targets.is_empty();
        let _ = self.tx.send(Input::DaemonTargets(targets));
    }

    /// Forgets a deleted app.
    pub fn forget(&self, app_id: u32) {
        let _ = self.tx.send(Input::Forget(app_id));
    }
}

/// The targets of every app: those in `SUP_NOTIFY` (separated by spaces
/// or commas) and those a sup.toml's `[daemon] notify` set, kept in
/// `SUP_HOME`. A wrong one is warned about and left out: the daemon must
/// start to keep the apps up.
pub fn daemon_targets(home: &sup_home::Home) -> Vec<String> {
    let mut targets = from_env();
    targets.extend(kept(home));
    targets.retain(|t| match NotifyTarget::parse(t) {
        Ok(_) => true,
        Err(why) => {
            tracing::warn!("{why}; left out");
            false
        }
    });
    targets.dedup();
    targets
}

fn from_env() -> Vec<String> {
    std::env::var("SUP_NOTIFY")
        .unwrap_or_default()
        .split([' ', ',', '\n'])
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The targets `[daemon] notify` set, as kept.
fn kept(home: &sup_home::Home) -> Vec<String> {
    let path = home.notify_targets();
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!("{}: {e}; no daemon-wide alerts from it", path.display());
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Keeps `targets` (0600: a webhook URL often holds its secret) and
/// returns every daemon-wide target from now on.
pub fn keep(home: &sup_home::Home, targets: &[String]) -> Result<Vec<String>, String> {
    for t in targets {
        NotifyTarget::parse(t)?;
    }
    let path = home.notify_targets();
    let json = serde_json::to_vec(targets).map_err(|e| e.to_string())?;
    crate::persist::write_atomic(&path, &json, false, false)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(daemon_targets(home))
}

/// The task's state: the detector, each app's last targets, and a
/// delivery per receiver.
struct Task {
    detector: Detector,
    daemon_targets: Vec<String>,
    app_targets: HashMap<u32, Arc<[String]>>,
    deliveries: HashMap<String, Delivery>,
    host: Arc<str>,
}

async fn run(mut rx: mpsc::UnboundedReceiver<Input>, daemon_targets: Vec<String>) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let mut task = Task {
        detector: Detector::default(),
        daemon_targets,
        app_targets: HashMap::new(),
        deliveries: HashMap::new(),
        host: host.into(),
    };
    loop {
        // A timer only while an app crash-loops: its end is told.
        let tick = task.detector.next_tick();
        let input = tokio::select! {
            input = rx.recv() => match input {
                Some(input) => input,
                None => return,
            },
            () = sleep_until(tick), if tick.is_some() => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                for alert in task.detector.tick(Instant::now(), now_ms) {
                    task.route(alert);
                }
                continue;
            }
        };
        match input {
            Input::Event(event, targets) => {
                task.app_targets.insert(event.app_id, targets);
                for alert in task.detector.feed(&event, Instant::now()) {
                    task.route(alert);
                }
            }
            Input::DaemonTargets(targets) => task.daemon_targets = targets,
            Input::Forget(id) => {
                task.detector.forget(id);
                task.app_targets.remove(&id);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

impl Task {
    /// Queues `alert` for its app's targets and the daemon's.
    fn route(&mut self, alert: Alert) {
        let own = self.app_targets.get(&alert.app_id).cloned();
        let targets = own
            .iter()
            .flat_map(|t| t.iter())
            .chain(&self.daemon_targets);
        let mut seen = Vec::new();
        for target in targets {
            if seen.contains(&target) {
                continue;
            }
            seen.push(target);
            if !self.deliveries.contains_key(target) {
                let Ok(parsed) = NotifyTarget::parse(target) else {
                    continue;
                };
                let delivery = Delivery::start(parsed, self.host.clone());
                self.deliveries.insert(target.clone(), delivery);
            }
            self.deliveries[target].offer(alert.clone());
        }
    }
}
