//! Changing the set of instances: `sup scale`, and requests for one
//! instance (`api:2`).

use super::{AppMachine, Input};
use crate::lifecycle::Event;
use std::time::Instant;
use sup_proto::{AppSpec, Status};

impl AppMachine {
    /// Grows to `to` instances (new ones start if the app runs) or shrinks
    /// (the highest indices stop, then go). At least one instance stays.
    pub(super) fn scale(&mut self, spec: &AppSpec, to: usize, now: Instant) {
        let to = to.max(1);
        let staying: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.leaving)
            .map(|(i, _)| i)
            .collect();
        if to > staying.len() {
            let runs = self.runs();
            for _ in staying.len()..to {
                let i = self.slots.add();
                if runs {
                    self.feed(spec, i, Event::Start, now);
                }
            }
        } else {
            for &i in staying.iter().skip(to) {
                self.leave(spec, i, now);
            }
        }
    }

    /// Whether the app is meant to run: some instance is not stopped or
    /// errored. A new instance of an app the user stopped stays stopped.
    fn runs(&self) -> bool {
        self.slots
            .all()
            .any(|s| !s.leaving && !matches!(s.lc.status(), Status::Stopped | Status::Errored))
    }

    /// Routes a start, restart or stop to instance `slot` only.
    pub(super) fn one_slot(&mut self, spec: &AppSpec, slot: usize, input: Input, now: Instant) {
        if !self.slots.has(slot) || self.slots[slot].leaving {
            return;
        }
        let event = match input {
            Input::Start => Event::Start,
            Input::Restart => Event::Restart,
            Input::Stop { by_user } => Event::Stop { by_user },
            _ => return,
        };
        if self.reload.is_some() && !matches!(event, Event::Start) {
            self.cancel_reload("an instance was stopped or restarted during the reload");
        }
        self.feed(spec, slot, event, now);
    }

    /// Stops instance `slot` and removes it once it is down; the last
    /// instance is never removed (deleting the app does that).
    pub(super) fn remove_slot(&mut self, spec: &AppSpec, slot: usize, now: Instant) {
        let others = self.slots.iter().any(|(i, s)| i != slot && !s.leaving);
        if self.slots.has(slot) && others {
            self.leave(spec, slot, now);
        }
    }

    fn leave(&mut self, spec: &AppSpec, i: usize, now: Instant) {
        if self.reload.as_ref().is_some_and(|r| r.slot == i) {
            self.cancel_reload("its instance was removed during the reload");
        }
        self.slots[i].leaving = true;
        self.feed(spec, i, Event::Stop { by_user: false }, now);
    }

    /// Forgets the leaving slots that are down with nothing left running.
    pub(super) fn forget_left_slots(&mut self) {
        let gone: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.leaving && s.lc.is_down() && s.inst.is_none())
            .map(|(i, _)| i)
            .collect();
        for i in gone {
            self.slots.remove(i);
        }
    }
}
