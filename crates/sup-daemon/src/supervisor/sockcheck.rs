//! Telling the user when an app does not take the sockets sup holds for
//! it (see [`crate::sockcheck`]): checked after a failed liveness probe,
//! which is when such an app gets restarted, and for `describe`.

use super::Supervisor;
use sup_proto::EventKind;

const KIND: EventKind = EventKind::SocketNotTaken;

impl Supervisor {
    /// Why app `id`'s instance `pid` (its main one when None) does not
    /// take the held sockets, if something says so.
    pub(super) fn sockets_not_taken(&self, id: u32, pid: Option<u32>) -> Option<String> {
        let app = self.table.get(id)?;
        let pid = pid.or_else(|| app.machine.first().running().map(|p| p.pid))?;
        app.sockets
            .iter()
            .find_map(|held| crate::sockcheck::not_taken(&held.addr, &held.fd, pid))
    }

    /// After a failed liveness probe of instance `pid`: records a
    /// `socket-not-taken` event, once per instance.
    pub(super) fn check_sockets_taken(&mut self, id: u32, pid: u32) {
        if self.table.get(id).is_none_or(|a| a.sockets.is_empty()) {
            return;
        }
        let Some(why) = self.sockets_not_taken(id, Some(pid)) else {
            return;
        };
        let prefix = format!("pid {pid}: ");
        let told = self
            .events
            .history(Some(id))
            .iter()
            .any(|e| e.kind == KIND && e.detail.starts_with(&prefix));
        if !told {
            tracing::warn!(app = id, "{why}");
            self.record(id, KIND, format!("{prefix}{why}"));
        }
    }
}
