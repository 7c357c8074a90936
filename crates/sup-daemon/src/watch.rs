//! `--watch`: file changes under an app's paths, through inotify on the
//! event loop (an `AsyncFd`, no thread, no polling).
//!
//! inotify watches one directory, not a tree, so every directory under a
//! root gets its own watch, and a directory created later gets one as soon
//! as its creation is read (then it is scanned, since files may appear in
//! it before its watch exists). A deleted directory's watch goes with it.
//! Changes are debounced: the first one arms the delay, later ones within it
//! ride along, and one [`Fired`] goes out when it ends, so an app restarts
//! at most once per delay.

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Names never watched, whatever the app says (DECISIONS: "Watch").
const ALWAYS_IGNORED: [&str; 2] = ["node_modules", ".git"];

/// What one app watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSpec {
    /// Paths watched (directories recursively, or single files).
    pub roots: Vec<PathBuf>,
    /// Globs (`ignore_watch`) matched against a path relative to its root,
    /// against each of its components, and against the full path.
    pub ignore: Vec<String>,
    /// The app's own log files (and their rotations).
    pub logs: Vec<PathBuf>,
    /// The debounce delay.
    pub delay: Duration,
}

/// What a watcher tells the supervisor.
#[derive(Debug)]
pub enum Report {
    /// A burst of changes ended its delay; `path` is its first change.
    Fired(PathBuf),
    /// A root cannot be watched (detail: the path and why).
    Failed(String),
}

impl WatchSpec {
    /// Whether a change at `path` (under `root`) counts.
    fn counts(&self, root: &Path, path: &Path, ignore: &[glob::Pattern]) -> bool {
        if self
            .logs
            .iter()
            .any(|log| path.starts_with(log) || is_rotation(path, log))
        {
            return false;
        }
        let rel = path.strip_prefix(root).unwrap_or(path);
        let named = |p: &glob::Pattern| {
            p.matches_path(rel)
                || p.matches_path(path)
                || rel
                    .components()
                    .any(|c| p.matches(&c.as_os_str().to_string_lossy()))
        };
        let always = rel
            .components()
            .any(|c| ALWAYS_IGNORED.iter().any(|n| c.as_os_str() == *n));
        !always && !ignore.iter().any(named)
    }
}

/// `app-out.log.1` is a rotation of `app-out.log`.
fn is_rotation(path: &Path, log: &Path) -> bool {
    let (Some(p), Some(l)) = (path.to_str(), log.to_str()) else {
        return false;
    };
    p.strip_prefix(l)
        .and_then(|rest| rest.strip_prefix('.'))
        .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses the globs; a bad one is reported and left out.
fn patterns(spec: &WatchSpec, report: &mut impl FnMut(Report) -> bool) -> Vec<glob::Pattern> {
    let mut out = Vec::new();
    for text in &spec.ignore {
        match glob::Pattern::new(text) {
            Ok(p) => out.push(p),
            Err(e) => {
                report(Report::Failed(format!("ignore glob {text:?}: {e}")));
            }
        }
    }
    out
}

/// An inotify instance tokio can wait on.
#[derive(Debug)]
pub struct Fd(pub Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A new non-blocking inotify instance, registered with tokio.
pub fn async_inotify() -> std::io::Result<AsyncFd<Fd>> {
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    // SAFETY: the AsyncFd owns the Inotify, so its fd stays open and the
    // same for the AsyncFd's whole life.
    unsafe { AsyncFd::register_with_interest(Fd(inotify), Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// The inotify instance and what each of its watches is.
struct Tree {
    fd: AsyncFd<Fd>,
    /// Watch -> what it was made for (one inode can be both a root's
    /// parent and a directory of another root: the kernel gives one watch).
    dirs: HashMap<WatchDescriptor, Vec<Watched>>,
}

/// One watched directory (or file) and the root it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    dir: PathBuf,
    root: PathBuf,
    /// The root's parent, watched for the root's own name only: a file
    /// saved by rename, or a root directory deleted and made again, is seen
    /// and watched again.
    anchor: bool,
}

fn mask() -> AddWatchFlags {
    AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB
        | AddWatchFlags::IN_DELETE_SELF
}

impl Tree {
    /// Watches `dir` and every directory under it that counts (a directory
    /// created while watching: small, so scanned on the loop).
    fn add(
        &mut self,
        spec: &WatchSpec,
        root: &Path,
        dir: &Path,
        ignore: &[glob::Pattern],
    ) -> nix::Result<()> {
        self.watch(root, dir)?;
        for sub in subdirs(spec, root, dir, ignore) {
            // A subdirectory that vanished meanwhile is no error.
            let _ = self.watch(root, &sub);
        }
        Ok(())
    }

    /// Watches `dir` (or a file) alone, for `root`.
    fn watch(&mut self, root: &Path, dir: &Path) -> nix::Result<()> {
        self.watch_as(root, dir, false)
    }

    fn watch_as(&mut self, root: &Path, dir: &Path, anchor: bool) -> nix::Result<()> {
        let wd = self.fd.get_ref().0.add_watch(dir, mask())?;
        let entry = Watched {
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            anchor,
        };
        let all = self.dirs.entry(wd).or_default();
        if !all.contains(&entry) {
            all.push(entry);
        }
        Ok(())
    }

    /// Watches a root: the root at once, the tree under it as listed on a
    /// blocking thread (a large tree must not stall the event loop).
    async fn add_root(
        &mut self,
        spec: &WatchSpec,
        root: &Path,
        ignore: &[glob::Pattern],
    ) -> nix::Result<()> {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: a parent the daemon can't read still leaves the
            // root itself watched (only a replaced root goes unseen).
            let _ = self.watch_as(root, parent, true);
        }
        if !root.is_dir() {
            // A file root: its parent's watch sees it change and be replaced.
            return if root.exists() {
                Ok(())
            } else {
                Err(nix::errno::Errno::ENOENT)
            };
        }
        self.watch(root, root)?;
        let listed = {
            let (spec, root, ignore) = (spec.clone(), root.to_path_buf(), ignore.to_vec());
            tokio::task::spawn_blocking(move || subdirs(&spec, &root, &root, &ignore))
        };
        for sub in listed.await.unwrap_or_default() {
            let _ = self.watch(root, &sub);
        }
        Ok(())
    }
}

/// Every directory under `dir` that counts, depth first.
fn subdirs(spec: &WatchSpec, root: &Path, dir: &Path, ignore: &[glob::Pattern]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) && spec.counts(root, &path, ignore) {
            found.extend(subdirs(spec, root, &path, ignore));
            found.push(path);
        }
    }
    found
}

/// Watches `spec`'s roots and tells `report` what happens, until it
/// returns false or the task is aborted (the app is gone or its spec
/// changed).
pub async fn run(spec: WatchSpec, mut report: impl FnMut(Report) -> bool) {
    let ignore = patterns(&spec, &mut report);
    let fd = match async_inotify() {
        Ok(fd) => fd,
        Err(e) => {
            report(Report::Failed(format!("inotify: {e}")));
            return;
        }
    };
    let mut tree = Tree {
        fd,
        dirs: HashMap::new(),
    };
    for root in &spec.roots {
        if let Err(e) = tree.add_root(&spec, root, &ignore).await {
            report(Report::Failed(format!("{}: {}", root.display(), e.desc())));
        }
    }
    let mut first: Option<PathBuf> = None;
    let deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ready = tree.fd.readable() => {
                let Ok(mut guard) = ready else { return };
                let events = match guard.get_inner().0.read_events() {
                    Ok(events) => events,
                    Err(nix::errno::Errno::EAGAIN) => {
                        guard.clear_ready();
                        continue;
                    }
                    Err(_) => return,
                };
                drop(guard);
                let changed = tree.take(&spec, &ignore, events);
                if let (None, Some(path)) = (&first, changed) {
                    first = Some(path);
                    deadline.as_mut().reset(tokio::time::Instant::now() + spec.delay);
                }
            }
            () = &mut deadline, if first.is_some() => {
                if !report(Report::Fired(first.take().expect("armed"))) {
                    return;
                }
            }
        }
    }
}

impl Tree {
    /// Follows created and deleted directories, and roots replaced; returns
    /// the first change that counts. Lost events (the queue overflowed)
    /// count as a change, and every root is watched again.
    fn take(
        &mut self,
        spec: &WatchSpec,
        ignore: &[glob::Pattern],
        events: Vec<nix::sys::inotify::InotifyEvent>,
    ) -> Option<PathBuf> {
        let mut first = None;
        let mut overflow = false;
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                overflow = true;
                continue;
            }
            if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                self.dirs.remove(&ev.wd);
                continue;
            }
            for w in self.dirs.get(&ev.wd).cloned().unwrap_or_default() {
                let path = match &ev.name {
                    Some(name) => w.dir.join(name),
                    None => w.dir.clone(),
                };
                if w.anchor {
                    if path != w.root {
                        continue;
                    }
                    let made = ev
                        .mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                    if made && w.root.is_dir() {
                        let _ = self.add(spec, &w.root, &w.root, ignore);
                    }
                    first.get_or_insert(path);
                    continue;
                }
                if !spec.counts(&w.root, &path, ignore) {
                    continue;
                }
                let new_dir = ev.mask.contains(AddWatchFlags::IN_ISDIR)
                    && ev
                        .mask
                        .intersects(AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO);
                if new_dir {
                    let _ = self.add(spec, &w.root, &path, ignore);
                }
                first.get_or_insert(path);
            }
        }
        if overflow {
            for root in spec.roots.iter().filter(|r| r.is_dir()) {
                let _ = self.add(spec, root, root, ignore);
            }
            first = first.or_else(|| spec.roots.first().cloned());
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ignore: &[&str]) -> WatchSpec {
        WatchSpec {
            roots: vec!["/app".into()],
            ignore: ignore.iter().map(|s| s.to_string()).collect(),
            logs: vec!["/app/logs/api-out.log".into()],
            delay: Duration::from_millis(10),
        }
    }

    fn counts(spec: &WatchSpec, path: &str) -> bool {
        let ignore = patterns(spec, &mut |_| true);
        spec.counts(Path::new("/app"), Path::new(path), &ignore)
    }

    #[test]
    fn defaults_ignore_node_modules_git_and_the_logs() {
        let s = spec(&[]);
        assert!(counts(&s, "/app/src/index.js"));
        assert!(!counts(&s, "/app/node_modules/x/index.js"));
        assert!(!counts(&s, "/app/.git/HEAD"));
        assert!(!counts(&s, "/app/logs/api-out.log"));
        assert!(!counts(&s, "/app/logs/api-out.log.1"));
        assert!(counts(&s, "/app/logs/other.log"));
    }

    #[test]
    fn globs_match_relative_paths_names_and_full_paths() {
        let s = spec(&["*.tmp", "cache", "dist/**", "/app/secret/*"]);
        assert!(!counts(&s, "/app/src/a.tmp"));
        assert!(!counts(&s, "/app/src/cache/x.js"));
        assert!(!counts(&s, "/app/dist/bundle.js"));
        assert!(!counts(&s, "/app/secret/key"));
        assert!(counts(&s, "/app/src/a.js"));
    }
}
