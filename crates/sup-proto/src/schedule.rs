//! Cron schedules of `--cron-restart` (PM2's `cron_restart`).
//!
//! Standard cron: 5 fields (minute hour day-of-month month day-of-week, in
//! local time), or 6 with seconds first as PM2 accepts. Parsed and
//! evaluated by the `croner` crate, which PM2's own scheduler is a port of.
//! The CLI validates with [`Schedule::parse`]; the daemon asks
//! [`Schedule::next_after`] when to fire next, a pure function of `now`.

use chrono::{DateTime, TimeZone};
use croner::Cron;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
}

/// Why an expression is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression {text:?}: {why} (5 fields: minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"; or 6 with seconds first)")]
pub struct ScheduleError {
    text: String,
    why: String,
}

impl Schedule {
    /// Parses `text`; refuses anything but 5 or 6 fields.
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let err = |why: String| ScheduleError {
            text: text.to_string(),
            why,
        };
        let fields = text.split_whitespace().count();
        if !(5..=6).contains(&fields) {
            return Err(err(format!("{fields} fields")));
        }
        let cron = Cron::new(text)
            .with_seconds_optional()
            .parse()
            .map_err(|e| err(e.to_string()))?;
        // A pattern that never fires (`0 0 30 2 *`) is refused too.
        cron.find_next_occurrence(&chrono::Utc::now(), false)
            .map_err(|e| err(e.to_string()))?;
        Ok(Schedule { cron })
    }

    /// The first time strictly after `now` that the schedule fires, in
    /// `now`'s time zone; `None` if it never does again.
    pub fn next_after<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.cron.find_next_occurrence(now, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn daily_at_three_fires_next_at_three() {
        let s = Schedule::parse("0 3 * * *").unwrap();
        let next = s.next_after(&at("2024-05-01T10:15:00Z")).unwrap();
        assert_eq!(next, at("2024-05-02T03:00:00Z"));
        // Strictly after: at the very firing time, the next is a day later.
        let after = s.next_after(&next).unwrap();
        assert_eq!(after, at("2024-05-03T03:00:00Z"));
    }

    #[test]
    fn steps_ranges_and_weekdays() {
        let s = Schedule::parse("*/15 9-17 * * 1-5").unwrap();
        // Friday 17:50 -> Monday 09:00.
        let next = s.next_after(&at("2024-05-03T17:50:00Z")).unwrap();
        assert_eq!(next, at("2024-05-06T09:00:00Z"));
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let s = Schedule::parse("*/2 * * * * *").unwrap();
        let next = s.next_after(&at("2024-05-01T10:15:01Z")).unwrap();
        assert_eq!(next, at("2024-05-01T10:15:02Z"));
    }

    #[test]
    fn bad_expressions_are_refused_with_the_text() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "0 3 * * * * *",
            "a b c d e",
            "0 0 30 2 *",
        ] {
            let err = Schedule::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
