//! Restart triggers run by the supervisor: the memory check, cron timers
//! and file watchers. Each ends in [`Input::Renew`]; the machine decides
//! between a reload and a restart.
//!
//! [`Supervisor::sync_triggers`] runs after a turn of the event loop that
//! changed the apps (a new app, a spec change, a delete) and brings the
//! timers and watchers in line with their specs.

use super::{Msg, Supervisor};
use crate::machine::Input;
use crate::ownership::cgroup::Told;
use crate::watch::{Report, WatchSpec};
use chrono::Local;
use std::path::PathBuf;
use std::time::Duration;
use sup_proto::schedule::Schedule;
use sup_proto::{EventKind, Status};
use tokio::task::JoinHandle;

/// How often the memory of apps with `--max-memory` is read.
pub const MEMORY_EVERY: Duration = Duration::from_secs(2);

/// The trigger machinery's state.
#[derive(Default)]
pub struct Triggers {
    /// The memory check's timer is armed.
    memory_armed: bool,
    /// App -> (its expression, the arming's sequence number).
    cron: std::collections::HashMap<u32, (String, u64)>,
    /// App -> (what it watches, the watcher task).
    watchers: std::collections::HashMap<u32, (WatchSpec, JoinHandle<()>)>,
}

impl Supervisor {
    /// Arms what the specs of the apps changed since the last turn ask
    /// for, and drops what they no longer do (or what deleted apps did).
    pub(super) fn sync_triggers(&mut self) {
        for id in self.table.take_changed() {
            self.sync_app_triggers(id);
        }
    }

    fn sync_app_triggers(&mut self, id: u32) {
        let app = self.table.get(id);
        let memory = app.is_some_and(|a| a.spec.max_memory.is_some());
        let cron = app.and_then(|a| a.spec.cron_restart.clone());
        let watch = app.and_then(watch_spec);
        if memory && !self.triggers.memory_armed && !self.owner.tells_memory() {
            self.triggers.memory_armed = true;
            self.after(MEMORY_EVERY, Msg::MemoryCheck);
        }
        if self.triggers.cron.get(&id).map(|(expr, _)| expr) != cron.as_ref() {
            // A timer armed before fires into a sequence number no longer kept.
            self.triggers.cron.remove(&id);
            if let Some(expr) = cron {
                self.arm_cron(id, expr);
            }
        }
        if self.triggers.watchers.get(&id).map(|(spec, _)| spec) != watch.as_ref() {
            if let Some((_, task)) = self.triggers.watchers.remove(&id) {
                task.abort();
            }
            if let Some(spec) = watch {
                let task = self.start_watcher(id, spec.clone());
                self.triggers.watchers.insert(id, (spec, task));
            }
        }
    }

    /// What the kernel told of the cgroups: an instance emptied, or went
    /// over its `--max-memory`.
    pub(super) fn cgroups_told(&mut self) {
        for told in self.owner.told() {
            match told {
                Told::Emptied { app, pid } => self.apply(app, Input::GroupGone { pid }),
                Told::OverMemory { app, pid, bytes } => self.over_memory(app, pid, bytes),
            }
        }
    }

    /// Instance `pid` of app `id` went over its memory.high: renewed, as the
    /// poll would.
    fn over_memory(&mut self, id: u32, pid: u32, bytes: u64) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        let (Some(limit), None) = (app.spec.max_memory, app.machine.reloading_slot()) else {
            return;
        };
        let slot = app.machine.slots().iter().find_map(|(slot, s)| {
            s.running()
                .filter(|p| p.pid == pid && s.lc().status() == Status::Online)
                .map(|_| slot)
        });
        if let Some(slot) = slot {
            let why = over_why(slot, pid, bytes, limit);
            self.apply(
                id,
                Input::Renew {
                    slot: Some(slot),
                    why,
                },
            );
        }
    }

    /// Reads the memory of every instance of the apps that set a limit;
    /// renews those over it. Runs where the kernel can't tell.
    pub(super) fn memory_check(&mut self) {
        let mut over = Vec::new();
        let mut any = false;
        for app in self.table.iter() {
            let Some(limit) = app.spec.max_memory else {
                continue;
            };
            any = true;
            // A reload under way replaces instances already.
            if app.machine.reloading_slot().is_some() {
                continue;
            }
            for (slot, s) in app.machine.slots().iter() {
                let Some(p) = s.running().filter(|_| s.lc().status() == Status::Online) else {
                    continue;
                };
                let rss = self.owner.usage(p.pid).rss_bytes;
                if rss > limit {
                    over.push((app.id, slot, over_why(slot, p.pid, rss, limit)));
                }
            }
        }
        for (id, slot, why) in over {
            self.apply(
                id,
                Input::Renew {
                    slot: Some(slot),
                    why,
                },
            );
        }
        self.triggers.memory_armed = any;
        if any {
            self.after(MEMORY_EVERY, Msg::MemoryCheck);
        }
    }

    /// Arms app `id`'s timer for the next time `expr` fires.
    fn arm_cron(&mut self, id: u32, expr: String) {
        let seq = self.next_seq();
        let next = Schedule::parse(&expr).ok().and_then(|s| {
            let now = Local::now();
            s.next_after(&now).and_then(|t| (t - now).to_std().ok())
        });
        match next {
            Some(after) => self.after(after, Msg::Cron { app: id, seq }),
            None => tracing::warn!(app = id, "cron {expr:?} never fires again"),
        }
        self.triggers.cron.insert(id, (expr, seq));
    }

    /// App `id`'s cron timer fired: renew it, if that timer is still its own.
    pub(super) fn cron_fired(&mut self, id: u32, seq: u64) {
        let Some((expr, armed)) = self.triggers.cron.get(&id).cloned() else {
            return;
        };
        if armed != seq {
            return;
        }
        let why = format!("cron {expr}");
        self.apply(id, Input::Renew { slot: None, why });
        self.arm_cron(id, expr);
    }

    /// Runs a watcher for app `id`; its reports come back as messages.
    fn start_watcher(&self, id: u32, spec: WatchSpec) -> JoinHandle<()> {
        let tx = self.tx.clone();
        tokio::spawn(crate::watch::run(spec, move |report| {
            tx.send(Msg::Watch { app: id, report }).is_ok()
        }))
    }

    /// A watcher of app `id` reported.
    pub(super) fn watch_report(&mut self, id: u32, report: Report) {
        if !self.triggers.watchers.contains_key(&id) {
            return;
        }
        match report {
            Report::Fired(path) => {
                let why = format!("watch: {} changed", path.display());
                self.apply(id, Input::Renew { slot: None, why });
            }
            Report::Failed(why) => self.record(id, EventKind::WatchFailed, why),
        }
    }
}

/// Why an instance is renewed for its memory.
fn over_why(slot: usize, pid: u32, bytes: u64, limit: u64) -> String {
    format!(
        "max memory: instance {slot} (pid {pid}) uses {} MiB, over {} MiB",
        bytes >> 20,
        limit >> 20
    )
}

/// What `app` watches, if anything: its paths, minus its own log files.
fn watch_spec(app: &super::table::App) -> Option<WatchSpec> {
    if app.spec.watch.is_empty() {
        return None;
    }
    let cwd = PathBuf::from(&app.spec.cwd);
    let logs = app
        .all_logs()
        .iter()
        .flat_map(|l| [l.out.path.clone(), l.err.path.clone()])
        .collect();
    Some(WatchSpec {
        roots: app.spec.watch.iter().map(|p| cwd.join(p)).collect(),
        ignore: app.spec.ignore_watch.clone(),
        logs,
        delay: Duration::from_millis(app.spec.watch_delay_ms),
    })
}
