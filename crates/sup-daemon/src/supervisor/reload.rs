//! `sup reload`: each app's machine runs the reload; this answers the
//! request once every app named is reloaded (or failed to).

use super::Supervisor;
use crate::machine::Input;
use sup_proto::{ErrorKind, Response, Target};
use tokio::sync::oneshot;

impl Supervisor {
    /// Starts the reload of every app `target` names.
    pub(super) fn reload(&mut self, target: &Target, reply: oneshot::Sender<Response>) {
        let ids = match self.table.resolve(target) {
            Ok(ids) => ids,
            Err(response) => {
                let _ = reply.send(response);
                return;
            }
        };
        let mut outcomes = Vec::new();
        for id in ids {
            let (tx, rx) = oneshot::channel();
            let token = self.next_seq();
            self.reloads.insert(token, tx);
            outcomes.push(rx);
            self.apply(id, Input::Reload { token });
        }
        tokio::spawn(async move {
            let mut notes = Vec::new();
            let mut failures = Vec::new();
            for rx in outcomes {
                match rx.await {
                    Ok(Ok(note)) => notes.push(note),
                    Ok(Err(err)) => failures.push(err),
                    Err(_) => failures.push("the daemon dropped the reload".into()),
                }
            }
            let response = if failures.is_empty() {
                Response::Note(notes.join("\n"))
            } else {
                Response::error(ErrorKind::ReloadFailed, failures.join("\n"))
            };
            let _ = reply.send(response);
        });
    }

    /// A machine finished reload `token` of app `id`.
    pub(super) fn reload_done(&mut self, id: u32, token: u64, result: Result<String, String>) {
        let name = self.table.get(id).map_or("", |a| a.spec.name.as_str());
        let result = result
            .map(|note| format!("{name}: {note}"))
            .map_err(|why| format!("{name}: {why}"));
        if let Err(why) = &result {
            tracing::warn!("{why}");
        }
        if let Some(reply) = self.reloads.remove(&token) {
            let _ = reply.send(result);
        }
    }
}
