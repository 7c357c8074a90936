//! Files that outlive the daemon: the dump `sup save` writes (and
//! `resurrect` reads), and the live state a daemon that died uncleanly
//! leaves for the next one ([`state`]).

pub mod state;

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use sup_home::backup_of;
use sup_proto::{AppSpec, RestartPolicy, Status};

/// Version of the dump and state formats this daemon writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// One app as saved. Written from a borrowed spec (`S = &AppSpec`, no
/// copy of every spec for each write), read into an owned one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedApp<S = AppSpec> {
    /// Its id (kept across save and resurrect).
    pub id: u32,
    /// Its full spec.
    pub spec: S,
    /// Stopped by `sup stop`.
    pub stopped_by_user: bool,
    /// It was running (or about to) when saved.
    pub was_running: bool,
    /// In the state file only: the live instance, to find it after a crash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<LiveInstance>,
}

/// A running process, identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveInstance {
    /// Pid (and process group id).
    pub pid: u32,
    /// Start time after boot, in clock ticks (`/proc/PID/stat` field 22).
    pub start_time: u64,
}

/// The dump, 0.1.0's state file, or one app's live state file (then with
/// exactly one app).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot<S = AppSpec> {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// sup version of the writer.
    pub sup: String,
    /// When written, ms since the epoch.
    pub written_at_ms: i64,
    /// The boot it was written in (state file: a reboot makes it void).
    #[serde(default)]
    pub boot_id: String,
    /// The apps, by id.
    pub apps: Vec<SavedApp<S>>,
}

impl<S> Snapshot<S> {
    /// `apps`, stamped with this sup, the time and this boot.
    pub fn new(apps: Vec<SavedApp<S>>) -> Snapshot<S> {
        let written_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Snapshot {
            version: FORMAT_VERSION,
            sup: sup_proto::SUP_VERSION.to_string(),
            written_at_ms,
            boot_id: boot_id(),
            apps,
        }
    }
}

/// Whether a saved app starts on `resurrect` (and after a daemon crash):
/// `always` apps come back; `unless-stopped` ones unless the user stopped
/// them; `on-failure` and `no` ones if they were running.
pub fn should_start(app: &SavedApp) -> bool {
    match app.spec.restart {
        RestartPolicy::Always => true,
        RestartPolicy::UnlessStopped => !app.stopped_by_user,
        RestartPolicy::OnFailure | RestartPolicy::No => app.was_running,
    }
}

/// Whether a status counts as running for [`SavedApp::was_running`].
pub fn is_running(status: Status) -> bool {
    !matches!(status, Status::Stopped | Status::Errored)
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file.
    #[error("no saved apps: {0} does not exist (run `sup save` first)")]
    Missing(PathBuf),
    /// Written by a newer sup.
    #[error("{path} was written by sup {sup} (format {version}); this sup {ours} reads format {FORMAT_VERSION}: upgrade sup")]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its writer's version.
        sup: String,
        /// Its format.
        version: u32,
        /// Our version.
        ours: &'static str,
    },
    /// Unreadable or corrupt.
    #[error("cannot read {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads a snapshot file.
pub fn read(path: &Path) -> Result<Snapshot, LoadError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LoadError::Missing(path.into()))
        }
        Err(e) => {
            return Err(LoadError::Corrupt {
                path: path.into(),
                reason: e.to_string(),
            })
        }
    };
    parse(path, &text)
}

/// Parses the text of a snapshot file read from `path` (named in errors).
pub fn parse(path: &Path, text: &[u8]) -> Result<Snapshot, LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt {
        path: path.into(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| corrupt(e.to_string()))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0) as u32;
    if version > FORMAT_VERSION {
        let sup = value
            .get("sup")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_string();
        return Err(LoadError::Newer {
            path: path.into(),
            sup,
            version,
            ours: sup_proto::SUP_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// The dump, falling back to its backup when it is unreadable. The second
/// value is a warning to show (naming both files) when the backup was used.
pub fn read_dump(dump: &Path) -> Result<(Snapshot, Option<String>), LoadError> {
    match read(dump) {
        Ok(snapshot) => Ok((snapshot, None)),
        Err(err @ (LoadError::Missing(_) | LoadError::Newer { .. })) => Err(err),
        Err(err) => {
            let backup = backup_of(dump);
            let snapshot = read(&backup).map_err(|_| err_with_backup(&err, &backup))?;
            let warning = format!(
                "{err}; using the previous dump {} instead (nothing is overwritten until you `sup save` again)",
                backup.display()
            );
            Ok((snapshot, Some(warning)))
        }
    }
}

fn err_with_backup(err: &LoadError, backup: &Path) -> LoadError {
    LoadError::Corrupt {
        path: backup.into(),
        reason: format!("{err}, and the backup {} is unusable too", backup.display()),
    }
}

/// Writes `data` to `path` atomically: a 0600 temp file in the same
/// directory, written (and fsynced, if `durable`), renamed over `path`.
/// With `keep_backup`, the previous file becomes `<path>.bak` first (by
/// link and rename, so there is never a moment without a file at `path`).
/// A name part no other write (of this process or another) is using: two
/// writes of the same file at once (two `sup save`s) each rename their own
/// whole temp file, never the other's half-written one.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

/// On failure, no temp file is left behind.
pub fn write_atomic(path: &Path, data: &[u8], durable: bool, keep_backup: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        unique()
    ));
    let result = write_through(&tmp, path, data, durable, keep_backup);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_through(
    tmp: &Path,
    path: &Path,
    data: &[u8],
    durable: bool,
    keep_backup: bool,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(data)?;
    if durable {
        file.sync_all()?;
    }
    drop(file);
    if keep_backup && path.exists() {
        let bak_tmp = dir.join(format!(".bak.tmp.{}", unique()));
        link_current(path, &bak_tmp)?;
        if let Err(e) = fs::rename(&bak_tmp, backup_of(path)) {
            let _ = fs::remove_file(&bak_tmp);
            return Err(e);
        }
    }
    fs::rename(tmp, path)?;
    if durable {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Hard-links the file now at `path` as `to`. A write of the same file
/// at once can replace it between the lookup and the link, which then says
/// ENOENT for a file that is still there: try again.
fn link_current(path: &Path, to: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::hard_link(path, to) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 10 && path.exists() => {
                tries += 1;
            }
            other => return other,
        }
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> String {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID.get_or_init(read_boot_id).clone()
}

fn read_boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sup-persist-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn snapshot(names: &[&str]) -> Snapshot {
        Snapshot {
            version: FORMAT_VERSION,
            sup: "0.1.0".into(),
            written_at_ms: 1,
            boot_id: String::new(),
            apps: names
                .iter()
                .enumerate()
                .map(|(i, n)| SavedApp {
                    id: i as u32,
                    spec: AppSpec {
                        name: n.to_string(),
                        ..AppSpec::default()
                    },
                    stopped_by_user: false,
                    was_running: true,
                    instance: None,
                })
                .collect(),
        }
    }

    #[test]
    fn save_keeps_a_backup_and_a_corrupt_dump_falls_back_loudly() {
        let d = dir("backup");
        let path = d.join("dump.json");
        write_atomic(
            &path,
            &serde_json::to_vec(&snapshot(&["a"])).unwrap(),
            true,
            true,
        )
        .unwrap();
        write_atomic(
            &path,
            &serde_json::to_vec(&snapshot(&["a", "b"])).unwrap(),
            true,
            true,
        )
        .unwrap();
        assert_eq!(read(&backup_of(&path)).unwrap().apps.len(), 1);
        let (snap, warning) = read_dump(&path).unwrap();
        assert_eq!((snap.apps.len(), warning), (2, None));
        fs::write(&path, b"{ truncated").unwrap();
        let (snap, warning) = read_dump(&path).unwrap();
        assert_eq!(snap.apps.len(), 1);
        let warning = warning.unwrap();
        assert!(
            warning.contains("dump.json") && warning.contains("dump.json.bak"),
            "{warning}"
        );
        fs::write(backup_of(&path), b"junk").unwrap();
        assert!(matches!(read_dump(&path), Err(LoadError::Corrupt { .. })));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn writes_of_one_file_at_once_each_rename_a_whole_file() {
        let d = dir("race");
        let path = d.join("dump.json");
        let bodies: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 256 * 1024]).collect();
        std::thread::scope(|scope| {
            for body in &bodies {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..5 {
                        write_atomic(path, body, false, true).unwrap();
                    }
                });
            }
        });
        let text = fs::read(&path).unwrap();
        assert!(
            bodies.contains(&text),
            "a whole body, never a mix or a part"
        );
        let backup = fs::read(backup_of(&path)).unwrap();
        assert!(bodies.contains(&backup));
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let d = dir("tmp");
        let path = d.join("0.json");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("x"), b"occupied").unwrap();
        assert!(write_atomic(&path, b"{}", false, false).is_err());
        assert!(write_atomic(&path, b"{}", false, true).is_err());
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn missing_and_newer_dumps_are_clear_errors() {
        let d = dir("newer");
        let path = d.join("dump.json");
        assert!(matches!(read_dump(&path), Err(LoadError::Missing(_))));
        fs::write(&path, br#"{"version": 99, "sup": "9.0.0", "apps": []}"#).unwrap();
        let err = read_dump(&path).unwrap_err().to_string();
        assert!(err.contains("9.0.0") && err.contains("upgrade"), "{err}");
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn resurrect_rules() {
        let app = |restart, stopped_by_user, was_running| SavedApp {
            id: 0,
            spec: AppSpec {
                restart,
                ..AppSpec::default()
            },
            stopped_by_user,
            was_running,
            instance: None,
        };
        assert!(should_start(&app(RestartPolicy::Always, true, false)));
        assert!(should_start(&app(
            RestartPolicy::UnlessStopped,
            false,
            false
        )));
        assert!(!should_start(&app(
            RestartPolicy::UnlessStopped,
            true,
            false
        )));
        assert!(should_start(&app(RestartPolicy::OnFailure, false, true)));
        assert!(!should_start(&app(RestartPolicy::No, false, false)));
    }
}
