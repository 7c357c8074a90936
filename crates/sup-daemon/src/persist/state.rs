//! The live state: one small file per app, `state/<id>.json`, so a change
//! costs one write of that app's file however many apps there are. Each
//! write keeps the previous generation as `<id>.json.bak`, so a file found
//! corrupt after a crash falls back to the one before it. A clean shutdown
//! removes them all; finding any means the last daemon died uncleanly.

use super::{backup_of, read, write_atomic, LoadError, SavedApp};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use sup_home::{is_live_state_file, Home};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// Where the outcome of a write the caller waits for goes: `Err` holds
/// the reason, for the user.
pub type Ack = oneshot::Sender<Result<(), String>>;

enum Op {
    /// Write app `id`'s file.
    Put {
        id: u32,
        data: Vec<u8>,
        ack: Option<Ack>,
    },
    /// Remove app `id`'s file and its previous generation.
    Remove { id: u32, ack: Option<Ack> },
}

impl Op {
    fn id(&self) -> u32 {
        match self {
            Op::Put { id, .. } | Op::Remove { id, .. } => *id,
        }
    }
}

/// Writes the live state on its own thread, so the event loop never waits
/// for the disk. A write nobody waits for is skipped when a newer one of
/// the same app is already queued.
pub struct StateWriter {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
    home: Home,
}

impl StateWriter {
    /// Starts the writer for `home`'s state directory.
    pub fn start(home: Home) -> io::Result<StateWriter> {
        let (tx, rx) = mpsc::channel::<Op>();
        let writer_home = home.clone();
        let thread = std::thread::Builder::new()
            .name("sup-state-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    batch.extend(rx.try_iter());
                    write_batch(&writer_home, batch);
                }
            })?;
        Ok(StateWriter {
            tx: Some(tx),
            thread: Some(thread),
            home,
        })
    }

    /// Queues app `id`'s new state; `ack` hears once it is on disk.
    pub fn put(&self, id: u32, data: Vec<u8>, ack: Option<Ack>) {
        self.send(Op::Put { id, data, ack });
    }

    /// Queues the removal of app `id`'s state; `ack` hears once it is gone.
    pub fn remove(&self, id: u32, ack: Option<Ack>) {
        self.send(Op::Remove { id, ack });
    }

    fn send(&self, op: Op) {
        if let Some(tx) = &self.tx {
            // A dead writer drops the op, and with it the ack: the waiter
            // then hears that the write failed.
            let _ = tx.send(op);
        }
    }

    /// A clean shutdown: waits for the writer, then removes the live state
    /// (so the next daemon does not treat this one as crashed).
    pub fn finish_clean(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let dir = self.home.state_dir();
        let live = fs::read_dir(&dir).into_iter().flatten().flatten();
        for entry in live.filter(|e| is_live_state_file(&e.file_name().to_string_lossy())) {
            remove_if_there(&entry.path());
        }
        remove_if_there(&self.home.state());
    }
}

fn write_batch(home: &Home, batch: Vec<Op>) {
    let last: HashMap<u32, usize> = batch
        .iter()
        .enumerate()
        .map(|(i, op)| (op.id(), i))
        .collect();
    for (i, op) in batch.into_iter().enumerate() {
        let (result, ack) = match op {
            Op::Put { ack: None, id, .. } if last[&id] != i => continue,
            Op::Put { id, data, ack } => {
                let path = home.app_state(id);
                (
                    write_atomic(&path, &data, false, true).map_err(|e| (path, e)),
                    ack,
                )
            }
            Op::Remove { id, ack } => (remove_app(home, id), ack),
        };
        let result = result.map_err(|(path, e)| format!("cannot write {}: {e}", path.display()));
        if let Err(e) = &result {
            warn!("{e}");
        }
        if let Some(ack) = ack {
            let _ = ack.send(result);
        }
    }
}

/// Removes app `id`'s file, then its previous generation (a lone `.bak`
/// left by a crash between the two is dropped by the next recovery).
fn remove_app(home: &Home, id: u32) -> Result<(), (PathBuf, io::Error)> {
    let path = home.app_state(id);
    for file in [path.clone(), backup_of(&path)] {
        match fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err((file, e)),
            _ => {}
        }
    }
    Ok(())
}

fn remove_if_there(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            warn!("cannot remove {}: {e}", path.display());
        }
        _ => {}
    }
}

/// What a dead daemon's live state told.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Live state of this boot was found (readable or not): the last
    /// daemon died uncleanly, and its processes must be stopped.
    pub found: bool,
    /// The apps of this boot that could be read, by id.
    pub apps: Vec<SavedApp>,
    /// What could not be read, and what was done about it, for the user.
    pub warnings: Vec<String>,
}

/// Reads the live state a dead daemon left: 0.1.0's `state.json` (once:
/// it is removed, the restored apps are written in the new layout) and
/// the per-app files. A corrupt file is renamed aside with the time in its
/// name, and its app restored from the previous generation when that
/// reads. State of another boot is void and removed.
pub fn recover(home: &Home, boot: &str) -> Recovered {
    let mut out = Recovered::default();
    let mut apps = BTreeMap::new();
    let legacy = home.state();
    if legacy.exists() {
        match read(&legacy) {
            Ok(snapshot) if snapshot.boot_id == boot => {
                out.found = true;
                apps.extend(snapshot.apps.into_iter().map(|a| (a.id, a)));
            }
            Ok(_) => info!("{} is of an earlier boot; removed", legacy.display()),
            Err(err) => {
                out.found = true;
                out.warnings.push(format!("{err}; {}", set_aside(&legacy)));
            }
        }
        remove_if_there(&legacy);
    }
    for (id, path) in live_files(home) {
        if fs::symlink_metadata(&path).is_err() {
            // A previous generation alone: its app was being deleted.
            remove_if_there(&backup_of(&path));
            continue;
        }
        match read_app(&path, id, &mut out.warnings) {
            Some((file_boot, app)) if file_boot == boot => {
                out.found = true;
                apps.insert(id, app);
            }
            Some(_) => {
                info!("{} is of an earlier boot; removed", path.display());
                let _ = remove_app(home, id);
            }
            None => out.found = true,
        }
    }
    out.apps = apps.into_values().collect();
    out
}

/// `sup run`: live state found at start is another run's (a volume kept
/// it; its boot id may even be this host's): removed unread, so nothing of
/// it is restored or stopped.
pub fn forget(home: &Home) {
    remove_if_there(&home.state());
    for (_, path) in live_files(home) {
        remove_if_there(&path);
        remove_if_there(&backup_of(&path));
    }
}

/// The ids of the live state files in the state directory, with the path
/// of each app's file (which may be missing when only its `.bak` is left).
fn live_files(home: &Home) -> BTreeMap<u32, PathBuf> {
    let entries = fs::read_dir(home.state_dir())
        .into_iter()
        .flatten()
        .flatten();
    entries
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_live_state_file(&name) {
                return None;
            }
            let id = name.split('.').next()?.parse().ok()?;
            Some((id, home.app_state(id)))
        })
        .collect()
}

/// Reads one app's file (boot id and app); when it is unreadable, sets it
/// aside and falls back to its previous generation, saying so in `warnings`.
fn read_app(path: &Path, id: u32, warnings: &mut Vec<String>) -> Option<(String, SavedApp)> {
    let err = match read_one(path, id) {
        Ok(found) => return Some(found),
        Err(err) => err,
    };
    let aside = set_aside(path);
    let backup = backup_of(path);
    match read_one(&backup, id) {
        Ok((boot, app)) => {
            warnings.push(format!(
                "{err}; {aside}; app {:?} was restored from its previous state {}",
                app.spec.name,
                backup.display()
            ));
            Some((boot, app))
        }
        Err(bak_err) => {
            if !matches!(bak_err, LoadError::Missing(_)) {
                set_aside(&backup);
            }
            warnings.push(format!(
                "{err}; {aside}; that app could not be restored (its processes were stopped): start it again"
            ));
            None
        }
    }
}

/// App `id`'s file: a regular file (never a link: one planted there would
/// lose the app or bring in another's), holding a snapshot of exactly that
/// app.
fn read_one(path: &Path, id: u32) -> Result<(String, SavedApp), LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt {
        path: path.into(),
        reason,
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LoadError::Missing(path.into()))
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(corrupt(
                "it is a symbolic link, not a file sup wrote".into(),
            ))
        }
        Ok(meta) if !meta.is_file() => return Err(corrupt("it is not a regular file".into())),
        _ => {}
    }
    let text = read_nofollow(path).map_err(|e| corrupt(e.to_string()))?;
    let (boot, app) = one_app(path, super::parse(path, &text)?)?;
    if app.id != id {
        return Err(corrupt(format!(
            "it holds app id {} ({:?}), not the {id} of its name",
            app.id, app.spec.name
        )));
    }
    Ok((boot, app))
}

/// The bytes of `path`, opened with `O_NOFOLLOW` (a link swapped in after
/// the check is refused too).
fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("it is not a regular file"));
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text)?;
    Ok(text)
}

/// The boot id and app of one app's file, which holds exactly one app.
pub(super) fn one_app(
    path: &Path,
    mut snapshot: super::Snapshot,
) -> Result<(String, SavedApp), LoadError> {
    match (snapshot.apps.pop(), snapshot.apps.is_empty()) {
        (Some(app), true) => Ok((snapshot.boot_id, app)),
        _ => Err(LoadError::Corrupt {
            path: path.into(),
            reason: "a live state file holds exactly one app".into(),
        }),
    }
}

/// Renames a corrupt file to `<name>.corrupt-<UTC time>` beside it, so
/// nothing overwrites it; says where it went.
fn set_aside(path: &Path) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let stamp = sup_proto::logfmt::format_ts(now, 0).replace(':', "");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(aside);
    match fs::rename(path, &aside) {
        Ok(()) => format!("it was kept as {}", aside.display()),
        Err(e) => format!("it could not be kept aside ({e})"),
    }
}

#[cfg(test)]
mod tests;
