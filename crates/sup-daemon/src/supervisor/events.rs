//! Recording events, answering `sup events`, and running `on_event` hooks
//! from a bounded per-app queue, one at a time, never in supervision's way.

use super::table::Role;
use super::{epoch_ms, Msg, Supervisor};
use crate::lifecycle::ExitKind;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime};
use sup_proto::{EventKind, EventRecord, Response, Target};
use tokio::sync::mpsc;
use tracing::{info, warn};

/// Events waiting for an app's hook; beyond this the oldest are dropped,
/// so a crash loop cannot pile up hooks.
const HOOK_QUEUE: usize = 16;

/// Past events `sup events --follow` prints before the new ones.
const FOLLOW_TAIL: usize = 10;

/// Time a hook may run before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

impl Supervisor {
    /// Records an event of app `id` and queues its hook.
    pub(super) fn record(&mut self, id: u32, kind: EventKind, detail: String) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        let event = EventRecord {
            ts_ms: epoch_ms(SystemTime::now()),
            app_id: id,
            app: app.spec.name.clone(),
            kind,
            detail,
        };
        // A failing hook must not trigger hooks about itself.
        if app.spec.on_event.is_some() && kind != EventKind::HookFailed {
            if app.hook_queue.len() == HOOK_QUEUE {
                let dropped = app.hook_queue.pop_front();
                warn!(app = %app.spec.name, "hook queue full; dropped the hook for {:?}", dropped.map(|e| e.kind));
            }
            app.hook_queue.push_back(event.clone());
        }
        self.alerts.event(&event, &app.spec.notify);
        self.events.record(event);
        self.run_next_hook(id);
    }

    /// Past events of the apps `target` names (all when None).
    pub(super) fn past_events(&self, target: Option<&Target>) -> Result<Response, Response> {
        let app = self.single_app(target)?;
        Ok(Response::Events(self.events.history(app)))
    }

    /// Past events now; new ones go into `tx` as they happen.
    pub(super) fn follow(
        &mut self,
        target: Option<Target>,
        tx: mpsc::UnboundedSender<EventRecord>,
    ) -> Response {
        match self.single_app(target.as_ref()) {
            Ok(app) => {
                self.events.follow(app, tx);
                // Like `tail -f`: the last few, then what happens from now.
                let mut past = self.events.history(app);
                past.drain(..past.len().saturating_sub(FOLLOW_TAIL));
                Response::Events(past)
            }
            Err(response) => response,
        }
    }

    fn single_app(&self, target: Option<&Target>) -> Result<Option<u32>, Response> {
        match target {
            None | Some(Target::All) => Ok(None),
            Some(t) => Ok(self.table.resolve(t)?.first().copied()),
        }
    }

    /// Starts the app's next hook, unless one runs. Once the daemon shuts
    /// down, queued hooks are dropped (a running one may finish).
    fn run_next_hook(&mut self, id: u32) {
        let shutting_down = self.shutdown.is_some();
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        if shutting_down {
            app.hook_queue.clear();
        }
        if app.hook_pid.is_some() {
            return;
        }
        let (Some(line), Some(event)) = (app.spec.on_event.clone(), app.hook_queue.pop_front())
        else {
            return;
        };
        let json = serde_json::to_string(&event).unwrap_or_default();
        let env = vec![
            ("SUP_EVENT".to_string(), json.clone()),
            ("SUP_EVENT_KIND".to_string(), event.kind.to_string()),
            ("SUP_EVENT_DETAIL".to_string(), event.detail.clone()),
            ("SUP_APP".to_string(), event.app.clone()),
        ];
        let result = stdin_with(json.as_bytes())
            .and_then(|stdin| self.spawn_helper(id, &line, env, Some(&stdin), false, Role::Hook));
        match result {
            Ok(pid) => {
                if let Some(app) = self.table.get_mut(id) {
                    app.hook_pid = Some(pid);
                }
                self.after(HOOK_TIMEOUT, Msg::Deadline { pid });
            }
            Err(e) => {
                warn!(app = %event.app, "cannot run the on-event hook: {e}");
                self.record(id, EventKind::HookFailed, format!("cannot run: {e}"));
            }
        }
    }

    /// A hook ended: a failure is logged and shown in events; the next runs.
    pub(super) fn hook_exited(&mut self, id: u32, exit: ExitKind) {
        let Some(app) = self.table.get_mut(id) else {
            return;
        };
        app.hook_pid = None;
        if !exit.success() {
            let detail = match exit {
                ExitKind::Code(127) => "command not found (exit code 127)".to_string(),
                ExitKind::Signal(9) => format!("killed after {} s", HOOK_TIMEOUT.as_secs()),
                other => other.to_string(),
            };
            warn!(app = %app.spec.name, "on-event hook failed: {detail}");
            self.record(id, EventKind::HookFailed, detail);
        } else {
            info!(app = %app.spec.name, "on-event hook done");
        }
        self.run_next_hook(id);
    }
}

/// A pipe whose read end yields `data` then EOF (data fits in the pipe).
fn stdin_with(data: &[u8]) -> std::io::Result<OwnedFd> {
    let (read, write) = crate::logs::pipe()?;
    let mut file = std::fs::File::from(write);
    // Events are small; a pipe holds 64 KiB, so this never blocks.
    file.write_all(&data[..data.len().min(60 * 1024)])?;
    Ok(read)
}
