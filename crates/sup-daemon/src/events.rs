//! The event history: every state change with its time, a bounded ring in
//! memory, and the clients following it.

use std::collections::VecDeque;
use sup_proto::EventRecord;
use tokio::sync::mpsc;

/// Events kept in memory.
pub const HISTORY: usize = 2_000;

/// A client following events (of one app, or all).
struct Follower {
    app: Option<u32>,
    tx: mpsc::UnboundedSender<EventRecord>,
}

/// Recorded events and their followers.
#[derive(Default)]
pub struct Events {
    history: VecDeque<EventRecord>,
    followers: Vec<Follower>,
}

impl Events {
    /// Records an event and hands it to the followers.
    pub fn record(&mut self, event: EventRecord) {
        self.followers.retain(|f| {
            f.app.is_some_and(|id| id != event.app_id) || f.tx.send(event.clone()).is_ok()
        });
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(event);
    }

    /// Past events of `app` (or all), oldest first.
    pub fn history(&self, app: Option<u32>) -> Vec<EventRecord> {
        self.history
            .iter()
            .filter(|e| app.is_none_or(|id| e.app_id == id))
            .cloned()
            .collect()
    }

    /// Streams future events of `app` (or all) into `tx`.
    pub fn follow(&mut self, app: Option<u32>, tx: mpsc::UnboundedSender<EventRecord>) {
        self.followers.push(Follower { app, tx });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_proto::EventKind;

    fn ev(app_id: u32, kind: EventKind) -> EventRecord {
        EventRecord {
            ts_ms: 1,
            app_id,
            app: format!("a{app_id}"),
            kind,
            detail: String::new(),
        }
    }

    #[test]
    fn bounded_history_and_filtered_followers() {
        let mut events = Events::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        events.follow(Some(2), tx);
        for i in 0..HISTORY + 5 {
            events.record(ev((i % 3) as u32, EventKind::Started));
        }
        assert_eq!(events.history(None).len(), HISTORY);
        assert!(events.history(Some(1)).iter().all(|e| e.app_id == 1));
        let mut seen = 0;
        while let Ok(e) = rx.try_recv() {
            assert_eq!(e.app_id, 2);
            seen += 1;
        }
        assert_eq!(seen, (HISTORY + 5) / 3);
    }
}
