//! Restarts asked for by a trigger (a memory limit, a cron schedule, a
//! watched file) rather than by the user: graceful, so with held sockets a
//! rolling reload, else a restart.

use super::{AppMachine, Input};
use crate::lifecycle::Event;
use std::collections::VecDeque;
use std::time::Instant;
use sup_proto::{AppSpec, EventKind, Status};

/// The token of a trigger's reload: no request waits for its answer
/// (requests' tokens start at 1).
const TRIGGER_TOKEN: u64 = 0;

impl AppMachine {
    /// Renews instance `slot` (or every one) because of `why`. An app that
    /// is down stays down: a trigger never starts what the user stopped.
    pub(super) fn renew(&mut self, spec: &AppSpec, slot: Option<usize>, why: String, now: Instant) {
        let down = match slot {
            Some(i) => !self.slots.has(i) || self.slots[i].leaving || self.slots[i].lc.is_down(),
            None => self.is_down(),
        };
        if down {
            return;
        }
        if self.reload.is_some() {
            // The reload under way renews every instance already.
            return self.record(
                EventKind::Triggered,
                format!("{why}; a reload is under way"),
            );
        }
        let online = match slot {
            Some(i) => self.slots[i].lc.status() == Status::Online,
            None => self.status() == Status::Online,
        };
        if !spec.listen.is_empty() && online {
            self.record(EventKind::Triggered, format!("{why}; reloading"));
            let queue: VecDeque<usize> = match slot {
                Some(i) => VecDeque::from([i]),
                None => self
                    .slots
                    .iter()
                    .filter(|(_, s)| !s.leaving)
                    .map(|(i, _)| i)
                    .collect(),
            };
            return self.roll(TRIGGER_TOKEN, queue);
        }
        self.record(EventKind::Triggered, format!("{why}; restarting"));
        match slot {
            Some(i) => self.one_slot(spec, i, Input::Restart, now),
            None => self.each_slot(spec, Event::Restart, now),
        }
        // The trigger's reason, not "restarted by the user".
        let renewed: Vec<usize> = match slot {
            Some(i) => vec![i],
            None => self.slots.iter().map(|(i, _)| i).collect(),
        };
        for i in renewed {
            if self.slots.has(i) {
                self.slots[i].lc.restarted_for(&why);
            }
        }
    }
}
