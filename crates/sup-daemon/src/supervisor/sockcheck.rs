//! Telling the user when an app does not take the sockets sup holds for
//! it (see [`crate::sockcheck`]): checked after a failed liveness probe,
//! which is when such an app gets restarted; and when
//! an instance exits saying the address is in use (it tried to bind the
//! port sup holds).

use super::{Msg, Supervisor};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use sup_proto::EventKind;

const KIND: EventKind = EventKind::SocketNotTaken;

/// How long after an exit the log tail is read: the exiting instance's last
/// lines reach the file through the writer thread first.
const LOG_SETTLE: Duration = Duration::from_millis(300);

/// How much of the end of each log file is read.
const TAIL: u64 = 8 * 1024;

/// Where an exit-time diagnosis starts, so it is told once per app.
const EXIT_PREFIX: &str = "its instances exit with \"address already in use\"";

impl Supervisor {
    /// After instance `pid` of an app with held sockets exited with a
    /// failure: reads the end of its logs (off the loop, once its last lines
    /// are written) for "address already in use".
    pub(super) fn check_exit_for_bind_error(&mut self, id: u32) {
        let Some(app) = self.table.get(id).filter(|a| !a.sockets.is_empty()) else {
            return;
        };
        let files: Vec<_> = app
            .all_logs()
            .iter()
            .flat_map(|l| [l.out.path.clone(), l.err.path.clone()])
            .collect();
        let addrs: Vec<String> = app.sockets.iter().map(|h| h.addr.clone()).collect();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LOG_SETTLE).await;
            let found = tokio::task::spawn_blocking(move || tails_say_in_use(&files)).await;
            if found.unwrap_or(false) {
                let _ = tx.send(Msg::BindError { app: id, addrs });
            }
        });
    }

    /// The end of app `id`'s logs says its instance could not bind: tell the
    /// user once (until the app is online again), and in `describe`.
    pub(super) fn bind_error(&mut self, id: u32, addrs: Vec<String>) {
        let why = format!(
            "{EXIT_PREFIX}: the app binds {} itself, which sup already holds for it; \
             make it take the socket sup passes as fd 3 (LISTEN_FDS/LISTEN_PID, \
             gunicorn and uvicorn --fd 3, or drop --listen)",
            addrs.join(", ")
        );
        let history = self.events.history(Some(id));
        let last = history.iter().rev().find(|e| e.kind == KIND);
        if last.is_none_or(|e| !e.detail.starts_with(EXIT_PREFIX)) {
            tracing::warn!(app = id, "{why}");
            self.record(id, KIND, why.clone());
        }
        self.socket_warnings.insert(id, why);
    }

    /// After a failed liveness probe of instance `pid`: looks (off the
    /// loop: /proc/net/tcp can be long on a busy machine) whether the app
    /// ignores its held sockets; [`Supervisor::socket_not_taken`] tells.
    pub(super) fn check_sockets_taken(&mut self, id: u32, pid: u32) {
        let Some(app) = self.table.get(id) else {
            return;
        };
        let held: Vec<(String, std::os::fd::OwnedFd)> = app
            .sockets
            .iter()
            .filter_map(|h| Some((h.addr.clone(), h.fd.try_clone().ok()?)))
            .collect();
        if held.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let check = tokio::task::spawn_blocking(move || {
                held.iter()
                    .find_map(|(addr, fd)| crate::sockcheck::not_taken(addr, fd, pid))
            });
            if let Ok(Some(why)) = check.await {
                let _ = tx.send(Msg::SocketNotTaken { app: id, pid, why });
            }
        });
    }

    /// Instance `pid` of app `id` does not take its held sockets: a
    /// `socket-not-taken` event, once per instance, and a line in `describe`.
    pub(super) fn socket_not_taken(&mut self, id: u32, pid: u32, why: String) {
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
        self.socket_warnings.insert(id, why);
    }
}

/// Whether the last [`TAIL`] bytes of any of `files` say an address was in use.
fn tails_say_in_use(files: &[PathBuf]) -> bool {
    files.iter().any(|f| {
        tail(f).is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t.contains("address already in use") || t.contains("eaddrinuse")
        })
    })
}

fn tail(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}
