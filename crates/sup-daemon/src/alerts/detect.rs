//! Which events are worth an alert. Trouble is told once when it starts
//! (errored, unhealthy, a crash loop) and once when it ends ("recovered");
//! what happens in between is collapsed. A restart for memory is told
//! each time: each one is news.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use sup_proto::{EventKind, EventRecord};

/// Restarts within [`LOOP_WINDOW`] that make a crash loop.
pub const LOOP_RESTARTS: usize = 5;

/// The window of a crash loop; a loop ends once a window passes with no
/// restart.
pub const LOOP_WINDOW: Duration = Duration::from_secs(300);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// The app gave up.
    Errored,
    /// Its liveness probe fails.
    Unhealthy,
    /// It was restarted for passing its memory limit.
    Memory,
    /// It restarted [`LOOP_RESTARTS`] times within [`LOOP_WINDOW`].
    CrashLoop,
    /// The trouble told before is over.
    Recovered,
}

impl AlertKind {
    /// The name in the alert's body.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Errored => "errored",
            AlertKind::Unhealthy => "unhealthy",
            AlertKind::Memory => "memory",
            AlertKind::CrashLoop => "crash-loop",
            AlertKind::Recovered => "recovered",
        }
    }

    /// Whether it asks for someone's attention (a recovery does not).
    pub fn is_trouble(self) -> bool {
        self != AlertKind::Recovered
    }
}

/// An alert to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// About what.
    pub kind: AlertKind,
    /// App id.
    pub app_id: u32,
    /// App name.
    pub app: String,
    /// For a human: what happened.
    pub detail: String,
    /// When the event happened, milliseconds since the epoch.
    pub ts_ms: i64,
}

/// One app's trouble so far.
#[derive(Debug, Default)]
struct AppState {
    name: String,
    errored: bool,
    unhealthy: bool,
    /// Since when the app crash-loops.
    looping: bool,
    restarts: VecDeque<Instant>,
}

impl AppState {
    fn in_trouble(&self) -> bool {
        self.errored || self.unhealthy || self.looping
    }
}

/// The detector: events in, alerts out.
#[derive(Debug, Default)]
pub struct Detector {
    apps: HashMap<u32, AppState>,
}

impl Detector {
    /// The alerts `event`, seen at `now`, makes.
    pub fn feed(&mut self, event: &EventRecord, now: Instant) -> Vec<Alert> {
        let state = self.apps.entry(event.app_id).or_default();
        if state.name != event.app {
            state.name.clone_from(&event.app);
        }
        let alert = |kind, detail: &str| Alert {
            kind,
            app_id: event.app_id,
            app: event.app.clone(),
            detail: detail.to_string(),
            ts_ms: event.ts_ms,
        };
        let mut out = Vec::new();
        match event.kind {
            EventKind::Errored if !state.errored => {
                state.errored = true;
                out.push(alert(AlertKind::Errored, &event.detail));
            }
            EventKind::Unhealthy if !state.unhealthy => {
                state.unhealthy = true;
                out.push(alert(AlertKind::Unhealthy, &event.detail));
            }
            EventKind::Healthy if state.unhealthy => {
                state.unhealthy = false;
                out.push(alert(
                    AlertKind::Recovered,
                    "the liveness probe passes again",
                ));
            }
            EventKind::Online | EventKind::Ready if state.errored => {
                state.errored = false;
                out.push(alert(AlertKind::Recovered, "online again"));
            }
            EventKind::Triggered if event.detail.starts_with("max memory") => {
                out.push(alert(AlertKind::Memory, &event.detail));
            }
            EventKind::Restarting => {
                state.restarts.push_back(now);
                forget_before(&mut state.restarts, now);
                if !state.looping && state.restarts.len() >= LOOP_RESTARTS {
                    state.looping = true;
                    let detail = format!(
                        "{} restarts within {} minutes; the last: {}",
                        state.restarts.len(),
                        LOOP_WINDOW.as_secs() / 60,
                        event.detail
                    );
                    out.push(alert(AlertKind::CrashLoop, &detail));
                }
            }
            EventKind::Stopped => {
                // Stopped by the user: nothing to recover from any more.
                self.apps.remove(&event.app_id);
            }
            _ => {}
        }
        out
    }

    /// The crash loops that ended by `now` (a whole window without a
    /// restart), as recoveries told at `now_ms`.
    pub fn tick(&mut self, now: Instant, now_ms: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for (&app_id, state) in self.apps.iter_mut().filter(|(_, s)| s.looping) {
            forget_before(&mut state.restarts, now);
            if state.restarts.is_empty() {
                state.looping = false;
                out.push(Alert {
                    kind: AlertKind::Recovered,
                    app_id,
                    app: state.name.clone(),
                    detail: format!(
                        "no restart for {} minutes: the crash loop is over",
                        LOOP_WINDOW.as_secs() / 60
                    ),
                    ts_ms: now_ms,
                });
            }
        }
        self.apps
            .retain(|_, s| s.in_trouble() || !s.restarts.is_empty());
        out
    }

    /// When [`Detector::tick`] has something to do next (None: no crash
    /// loop, no timer).
    pub fn next_tick(&self) -> Option<Instant> {
        self.apps
            .values()
            .filter(|s| s.looping)
            .filter_map(|s| s.restarts.back())
            .map(|&last| last + LOOP_WINDOW)
            .min()
    }

    /// Forgets an app that was deleted.
    pub fn forget(&mut self, app_id: u32) {
        self.apps.remove(&app_id);
    }
}

/// Drops the restarts older than the window.
fn forget_before(restarts: &mut VecDeque<Instant>, now: Instant) {
    while restarts
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= LOOP_WINDOW)
    {
        restarts.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, detail: &str) -> EventRecord {
        EventRecord {
            ts_ms: 1,
            app_id: 7,
            app: "api".into(),
            kind,
            detail: detail.into(),
        }
    }

    fn kinds(alerts: Vec<Alert>) -> Vec<AlertKind> {
        alerts.into_iter().map(|a| a.kind).collect()
    }

    #[test]
    fn trouble_is_told_once_and_its_end_once() {
        use AlertKind::*;
        use EventKind as E;
        let mut d = Detector::default();
        let now = Instant::now();
        let memory = "max memory: instance 0 (pid 9) uses 300 MiB, over 200 MiB; restarting";
        let steps: [(EventKind, &str, &[AlertKind]); 11] = [
            (E::Online, "", &[]),
            (E::Unhealthy, "1 of 3", &[Unhealthy]),
            (E::Unhealthy, "2 of 3", &[]),
            (E::Healthy, "", &[Recovered]),
            (E::Healthy, "", &[]),
            (E::Errored, "code 1", &[Errored]),
            (E::Errored, "code 1", &[]),
            (E::Online, "", &[Recovered]),
            // Each restart for memory is news.
            (E::Triggered, memory, &[Memory]),
            (E::Triggered, memory, &[Memory]),
            (E::Triggered, "cron", &[]),
        ];
        for (kind, detail, want) in steps {
            assert_eq!(
                kinds(d.feed(&ev(kind, detail), now)),
                want,
                "{kind:?} {detail}"
            );
        }
    }

    #[test]
    fn a_crash_loop_is_told_once_and_ends_after_a_quiet_window() {
        let mut d = Detector::default();
        let start = Instant::now();
        let mut told = Vec::new();
        for i in 0..8u64 {
            let at = start + Duration::from_secs(i);
            told.extend(kinds(d.feed(&ev(EventKind::Restarting, "in 100 ms"), at)));
        }
        assert_eq!(told, [AlertKind::CrashLoop]);
        let next = d.next_tick().unwrap();
        assert_eq!(next, start + Duration::from_secs(7) + LOOP_WINDOW);
        assert!(d.tick(next - Duration::from_secs(1), 0).is_empty());
        assert_eq!(kinds(d.tick(next, 0)), [AlertKind::Recovered]);
        assert_eq!(d.next_tick(), None);
        assert!(d.apps.is_empty(), "nothing kept once the trouble is over");
    }

    #[test]
    fn restarts_spread_out_are_no_loop_and_a_stop_forgets() {
        let mut d = Detector::default();
        let start = Instant::now();
        for i in 0..10u64 {
            let at = start + LOOP_WINDOW / 4 * i as u32;
            assert!(d.feed(&ev(EventKind::Restarting, ""), at).is_empty());
        }
        d.feed(&ev(EventKind::Errored, ""), start);
        d.feed(&ev(EventKind::Stopped, ""), start);
        assert!(d.feed(&ev(EventKind::Online, ""), start).is_empty());
    }
}
