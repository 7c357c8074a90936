//! Liveness health, a dimension beside the lifecycle: unknown, healthy, or
//! unhealthy after `retries` consecutive failures.

use crate::probe::Outcome;
use sup_proto::{HealthInfo, HealthStatus};

/// What a probe result changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing worth telling.
    Same,
    /// Passed again after failing.
    Recovered,
    /// Failed: the failure count, not yet at the threshold.
    Failing(u32),
    /// Reached the threshold: restart the app.
    Unhealthy(String),
}

/// Health of an app's current instance.
#[derive(Debug, Clone, Default)]
pub struct Health {
    known: bool,
    failures: u32,
    last: Option<Outcome>,
    /// The instance before this one was failing: this one's first pass is
    /// a recovery (what an alert about the failures waits for).
    owed: bool,
}

impl Health {
    /// Forgets everything (a new instance starts) but that the one before
    /// was failing.
    pub fn reset(&mut self) {
        let owed = self.owed || self.failures > 0;
        *self = Health {
            owed,
            ..Health::default()
        };
    }

    /// Records a liveness probe result; `counts` is false during the start
    /// period, when failures are shown but not counted.
    pub fn record(&mut self, outcome: Outcome, retries: u32, counts: bool) -> Verdict {
        let was_failing = self.failures > 0 || self.owed;
        self.known = true;
        let verdict = if outcome.ok {
            self.failures = 0;
            self.owed = false;
            if was_failing {
                Verdict::Recovered
            } else {
                Verdict::Same
            }
        } else if !counts {
            Verdict::Same
        } else {
            self.failures += 1;
            if self.failures >= retries.max(1) {
                Verdict::Unhealthy(format!(
                    "liveness probe failed {} in a row: {}",
                    crate::plural::count(self.failures.into(), "time"),
                    outcome.detail
                ))
            } else {
                Verdict::Failing(self.failures)
            }
        };
        self.last = Some(outcome);
        verdict
    }

    /// The view clients get; `probed` says whether a liveness probe is set
    /// (then the state before its first result is `starting`).
    pub fn info(&self, probed: bool) -> HealthInfo {
        let status = match (self.known, self.failures) {
            (false, _) if probed => HealthStatus::Starting,
            (false, _) => HealthStatus::Unknown,
            (true, 0) => HealthStatus::Healthy,
            (true, _) => HealthStatus::Unhealthy,
        };
        HealthInfo {
            status,
            failures: self.failures,
            last_result: self.last.as_ref().map(|o| o.detail.clone()),
            last_latency_ms: self.last.as_ref().map(|o| o.latency.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn ok() -> Outcome {
        Outcome::new(true, "HTTP 200", Instant::now())
    }
    fn bad() -> Outcome {
        Outcome::new(false, "connection refused", Instant::now())
    }

    #[test]
    fn threshold_then_recovery() {
        let mut h = Health::default();
        assert_eq!(h.info(false).status, HealthStatus::Unknown);
        assert_eq!(h.info(true).status, HealthStatus::Starting);
        assert_eq!(h.record(ok(), 3, true), Verdict::Same);
        assert_eq!(h.info(true).status, HealthStatus::Healthy);
        assert_eq!(h.record(bad(), 3, true), Verdict::Failing(1));
        assert_eq!(h.info(true).status, HealthStatus::Unhealthy);
        assert_eq!(h.record(ok(), 3, true), Verdict::Recovered);
        // Restarted while failing: the new instance's first pass recovers.
        h.record(bad(), 3, true);
        h.reset();
        assert_eq!(h.info(true).status, HealthStatus::Starting);
        assert_eq!(h.record(ok(), 3, true), Verdict::Recovered);
        assert_eq!(h.record(ok(), 3, true), Verdict::Same);
        h.record(bad(), 3, true);
        h.record(bad(), 3, true);
        let Verdict::Unhealthy(why) = h.record(bad(), 3, true) else {
            panic!()
        };
        assert!(why.contains("3 times") && why.contains("refused"), "{why}");
    }

    #[test]
    fn start_period_failures_do_not_count() {
        let mut h = Health::default();
        for _ in 0..5 {
            assert_eq!(h.record(bad(), 1, false), Verdict::Same);
        }
        assert_eq!(h.info(true).failures, 0);
        assert_eq!(
            h.info(true).last_result.as_deref(),
            Some("connection refused")
        );
    }
}
