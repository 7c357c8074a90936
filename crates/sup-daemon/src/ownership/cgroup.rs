//! The cgroup v2 back end: a leaf cgroup per instance, under a subtree the
//! daemon owns, so membership, emptiness, kills and figures come from the
//! kernel.
//!
//! Layout (`base` is the daemon's own cgroup when it is delegated, else
//! `<mount>/sup/<uid>-<hash of SUP_HOME>` for a root daemon):
//!
//! ```text
//! base/daemon/            the daemon itself, when base was its own cgroup
//! base/apps/              controllers enabled for the leaves
//! base/apps/<id>-<n>-<k>  instance n of app id (k tells spawns apart)
//! ```

use super::Usage;
use crate::groupwatch::pidfd_open;
use crate::procstat::read_stat;
use nix::sys::inotify::{AddWatchFlags, WatchDescriptor};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tokio::io::unix::AsyncFd;

/// Controllers sup enables for the leaves, where the parent offers them.
const WANTED: [&str; 3] = ["cpu", "memory", "pids"];

/// The subtree the daemon owns, and the leaves of its instances.
#[derive(Debug)]
pub struct Tree {
    mount: PathBuf,
    base: PathBuf,
    apps: PathBuf,
    /// The daemon made `base` (root mode) and removes it at exit.
    owns_base: bool,
    controllers: Vec<String>,
    inotify: AsyncFd<crate::watch::Fd>,
    leaves: HashMap<u32, Leaf>,
    by_wd: HashMap<WatchDescriptor, (u32, Watched)>,
    made: u64,
}

/// Which file of a leaf an inotify watch is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    /// `cgroup.events`: emptiness.
    Events,
    /// `memory.events`: the leaf went over its `memory.high`.
    Memory,
}

/// What the kernel told of the leaves since the last look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// Instance `pid` of app `app` has no process left.
    Emptied { app: u32, pid: u32 },
    /// Instance `pid` of app `app` went over its `memory.high`, and uses
    /// `bytes` now.
    OverMemory { app: u32, pid: u32, bytes: u64 },
}

/// One instance's cgroup.
#[derive(Debug)]
struct Leaf {
    app: u32,
    dir: PathBuf,
    wd: Option<WatchDescriptor>,
    /// The watch on `memory.events`, when the leaf has a `memory.high`.
    memory_wd: Option<WatchDescriptor>,
    /// `memory.events`' `high` count last seen.
    high_seen: u64,
    /// The supervisor is done with the instance: the leaf goes once empty.
    released: bool,
}

/// A leaf made for a spawn that has not happened yet.
#[derive(Debug)]
pub struct NewLeaf {
    app: u32,
    dir: PathBuf,
    /// A `memory.high` was set: the kernel tells when it is crossed.
    high: bool,
    /// The leaf's directory, open: the child is born in it.
    pub procs: OwnedFd,
}

/// Why the cgroup back end cannot be used here.
pub type Refusal = String;

impl Tree {
    /// Sets up the subtree for the daemon of `home`, or says why it can't.
    pub fn setup(home: &Path) -> Result<Tree, Refusal> {
        let mount = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        let own = own_cgroup().ok_or("the daemon's cgroup v2 is unknown (/proc/self/cgroup)")?;
        let own_dir = mount.join(own.trim_start_matches('/'));
        let (base, owns_base) = if own != "/" && delegated(&own_dir) {
            (own_dir, false)
        } else if nix::unistd::geteuid().is_root() {
            (mount.join("sup").join(home_key(home)), true)
        } else {
            return Err(format!(
                "not delegated: the daemon's cgroup {own} is not its own to manage; run it from \
                 `sup startup`'s unit (Delegate=yes)"
            ));
        };
        Tree::open(mount, base, owns_base)
    }

    /// Takes over the subtree at `base` (after `sup update`).
    pub fn resume(base: PathBuf, owns_base: bool) -> Result<Tree, Refusal> {
        let mount = cgroup2_mount().ok_or("no cgroup2 file system is mounted")?;
        Tree::open(mount, base, owns_base)
    }

    fn open(mount: PathBuf, base: PathBuf, owns_base: bool) -> Result<Tree, Refusal> {
        let fail = |what: &str, path: &Path, e: io::Error| {
            format!("cannot {what} {}: {e}", path.display())
        };
        if owns_base {
            let top = base.parent().expect("base has a parent");
            mkdir(top).map_err(|e| fail("create", top, e))?;
            mkdir(&base).map_err(|e| fail("create", &base, e))?;
            enable(top);
        } else if has_processes(&base) {
            // No internal processes: the daemon moves to a leaf of its own.
            let leaf = base.join("daemon");
            mkdir(&leaf).map_err(|e| fail("create", &leaf, e))?;
            write_file(&leaf.join("cgroup.procs"), &std::process::id().to_string())
                .map_err(|e| fail("move the daemon into", &leaf, e))?;
        }
        enable(&base);
        let apps = base.join("apps");
        mkdir(&apps).map_err(|e| fail("create", &apps, e))?;
        let controllers = enable(&apps);
        let inotify = crate::watch::async_inotify().map_err(|e| format!("inotify: {e}"))?;
        Ok(Tree {
            mount,
            base,
            apps,
            owns_base,
            controllers,
            inotify,
            leaves: HashMap::new(),
            by_wd: HashMap::new(),
            made: 0,
        })
    }

    /// Where the subtree is, and whether the daemon made it.
    pub fn base(&self) -> (&Path, bool) {
        (&self.base, self.owns_base)
    }

    /// The directory of the leaves.
    pub fn apps_dir(&self) -> &Path {
        &self.apps
    }

    /// The controllers enabled for the leaves.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// Whether the leaves have controller `name`.
    pub fn has(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == name)
    }

    /// Makes the leaf of a new instance of app `app`, slot `slot`, with
    /// `limits` (file, value) written into it.
    pub fn make_leaf(
        &mut self,
        app: u32,
        slot: usize,
        limits: &[(&str, String)],
    ) -> io::Result<NewLeaf> {
        let dir = loop {
            self.made += 1;
            let dir = self.apps.join(format!("{app}-{slot}-{}", self.made));
            match fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        };
        let opened = limits
            .iter()
            .try_for_each(|(file, value)| write_file(&dir.join(file), value))
            .and_then(|()| {
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                    .open(&dir)
            });
        match opened {
            Ok(file) => Ok(NewLeaf {
                app,
                dir,
                high: limits.iter().any(|(f, _)| *f == "memory.high"),
                procs: file.into(),
            }),
            Err(e) => {
                let _ = fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// The spawn of `leaf` failed: it goes.
    pub fn discard(&mut self, leaf: NewLeaf) {
        let _ = fs::remove_dir(&leaf.dir);
    }

    /// Instance `pid` lives in `leaf` now: its emptiness is watched.
    pub fn placed(&mut self, pid: u32, leaf: NewLeaf) {
        self.track(pid, leaf.app, leaf.dir, leaf.high);
    }

    /// Tracks an existing leaf (handed over, or made for an adopted
    /// process); with `high`, its `memory.events` too.
    fn track(&mut self, pid: u32, app: u32, dir: PathBuf, high: bool) {
        let wd = self.watch(&dir.join("cgroup.events"), pid, Watched::Events);
        let memory_wd = high
            .then(|| self.watch(&dir.join("memory.events"), pid, Watched::Memory))
            .flatten();
        if high && memory_wd.is_none() {
            // memory.high still holds the instance near its limit.
            tracing::warn!(
                pid,
                "cannot watch memory.events: --max-memory will not restart it"
            );
        }
        let high_seen = read_key(&dir.join("memory.events"), "high").unwrap_or(0);
        self.leaves.insert(
            pid,
            Leaf {
                app,
                dir,
                wd,
                memory_wd,
                high_seen,
                released: false,
            },
        );
    }

    fn watch(&mut self, file: &Path, pid: u32, what: Watched) -> Option<WatchDescriptor> {
        let wd = self
            .inotify
            .get_ref()
            .0
            .add_watch(file, AddWatchFlags::IN_MODIFY)
            .ok()?;
        self.by_wd.insert(wd, (pid, what));
        Some(wd)
    }

    /// Takes over instance `pid` of app `app` (slot `slot`) from a previous
    /// daemon: its own leaf if it has one here, else a new leaf that its
    /// process group and tagged processes are moved into.
    pub fn adopt(&mut self, app: u32, slot: usize, pid: u32) {
        if let Some(dir) = cgroup_of(pid).map(|c| self.mount.join(c.trim_start_matches('/'))) {
            if dir.parent() == Some(self.apps.as_path()) {
                let high = self.has("memory")
                    && fs::read_to_string(dir.join("memory.high")).is_ok_and(|v| v.trim() != "max");
                return self.track(pid, app, dir, high);
            }
        }
        let Ok(leaf) = self.make_leaf(app, slot, &[]) else {
            return;
        };
        // Only here (a handover from a daemon without cgroups): one /proc
        // pass for the members of its group.
        let members = crate::procstat::live_group_members(pid);
        for member in std::iter::once(&pid).chain(&members) {
            let _ = write_file(&leaf.dir.join("cgroup.procs"), &member.to_string());
        }
        self.placed(pid, leaf);
    }

    /// Whether the emptiness of instance `pid`'s leaf is watched (an
    /// inotify watch can fail, at `max_user_watches`).
    pub fn watched(&self, pid: u32) -> bool {
        self.leaves.get(&pid).is_some_and(|l| l.wd.is_some())
    }

    /// Whether instance `pid` still has a live process. `None`: not tracked.
    pub fn populated(&self, pid: u32) -> Option<bool> {
        self.leaves.get(&pid).map(|l| populated(&l.dir))
    }

    /// The live processes of instance `pid`.
    pub fn members(&self, pid: u32) -> Vec<u32> {
        self.leaves
            .get(&pid)
            .map(|l| procs(&l.dir))
            .unwrap_or_default()
    }

    /// Sends `sig` to every process of instance `pid` that is not in its
    /// process group (the caller signals the group), each through a pidfd
    /// opened before its membership is checked.
    pub fn signal_outside_group(&self, pid: u32, sig: i32) {
        let Some(leaf) = self.leaves.get(&pid) else {
            return;
        };
        for member in procs(&leaf.dir) {
            if read_stat(member).is_some_and(|s| s.pgrp == pid) {
                continue;
            }
            if let Some(pidfd) = pidfd_open(member).filter(|_| is_member(member, &leaf.dir)) {
                super::pidfd_signal(&pidfd, sig);
            }
        }
    }

    /// SIGKILL to every process of instance `pid`: one write of
    /// `cgroup.kill`, or each pid of `cgroup.procs` on kernels before 5.14.
    /// Returns false when `pid` has no leaf.
    pub fn kill(&self, pid: u32) -> bool {
        match self.leaves.get(&pid) {
            Some(leaf) => {
                kill_dir(&leaf.dir);
                true
            }
            None => false,
        }
    }

    /// The leaf directory of instance `pid`.
    pub fn leaf_dir(&self, pid: u32) -> Option<&Path> {
        self.leaves.get(&pid).map(|leaf| leaf.dir.as_path())
    }

    /// The supervisor is done with instance `pid`; its leaf goes now if
    /// empty, else once it empties.
    pub fn release(&mut self, pid: u32) {
        let Some(leaf) = self.leaves.get_mut(&pid) else {
            return;
        };
        leaf.released = true;
        if !populated(&leaf.dir) {
            self.remove(pid);
        }
    }

    fn remove(&mut self, pid: u32) {
        if let Some(leaf) = self.leaves.remove(&pid) {
            for wd in leaf.wd.into_iter().chain(leaf.memory_wd) {
                self.by_wd.remove(&wd);
                let _ = self.inotify.get_ref().0.rm_watch(wd);
            }
            let _ = fs::remove_dir(&leaf.dir);
        }
    }

    /// Waits until a leaf's `cgroup.events` changed.
    pub async fn changed(&self) {
        if let Ok(mut guard) = self.inotify.readable().await {
            guard.clear_ready();
        }
    }

    /// What the kernel told since the last call: leaves that emptied (the
    /// released ones are removed) and leaves over their `memory.high`.
    pub fn told(&mut self) -> Vec<Told> {
        let mut seen = Vec::new();
        // Drained to EAGAIN: readiness was cleared, so what is left unread
        // would never be announced again.
        while let Ok(events) = self.inotify.get_ref().0.read_events() {
            seen.extend(events.iter().filter_map(|e| self.by_wd.get(&e.wd).copied()));
        }
        seen.sort_unstable_by_key(|(pid, what)| (*pid, *what as u8));
        seen.dedup();
        let mut told = Vec::new();
        for (pid, what) in seen {
            let Some(leaf) = self.leaves.get_mut(&pid) else {
                continue;
            };
            let app = leaf.app;
            match what {
                Watched::Memory => {
                    let high = read_key(&leaf.dir.join("memory.events"), "high").unwrap_or(0);
                    if high > leaf.high_seen {
                        leaf.high_seen = high;
                        let bytes = read_u64(&leaf.dir.join("memory.current")).unwrap_or(0);
                        told.push(Told::OverMemory { app, pid, bytes });
                    }
                }
                Watched::Events => {
                    if populated(&leaf.dir) {
                        continue;
                    }
                    told.push(Told::Emptied { app, pid });
                    if leaf.released {
                        self.remove(pid);
                    }
                }
            }
        }
        told
    }

    /// Leaves a previous daemon left, as (app id, directory).
    pub fn stale(&self) -> Vec<(u32, PathBuf)> {
        let tracked: Vec<&Path> = self.leaves.values().map(|l| l.dir.as_path()).collect();
        let Ok(dir) = fs::read_dir(&self.apps) else {
            return Vec::new();
        };
        dir.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .filter(|p| !tracked.contains(&p.as_path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let app = name.split('-').next()?.parse().ok()?;
                Some((app, p))
            })
            .collect()
    }

    /// At exit: kills what is left in any leaf (a daemonized process of an
    /// errored app), waits for the leaves to empty, and removes the subtree.
    pub fn finish(&mut self) {
        let dirs: Vec<PathBuf> = self.leaves.values().map(|l| l.dir.clone()).collect();
        let stale = self.stale().into_iter().map(|(_, d)| d);
        let all: Vec<PathBuf> = dirs.into_iter().chain(stale).collect();
        remove_leaves(&all);
        let _ = fs::remove_dir(&self.apps);
        if self.owns_base {
            let _ = fs::remove_dir(&self.base);
            if let Some(top) = self.base.parent() {
                // Another SUP_HOME's subtree may still be there.
                let _ = fs::remove_dir(top);
            }
        }
    }
}

/// Kills every process in each of `dirs`, waits (a bounded time) for them
/// to be gone, and removes the directories.
pub fn remove_leaves(dirs: &[PathBuf]) {
    for dir in dirs.iter().filter(|d| populated(d)) {
        kill_dir(dir);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    for dir in dirs {
        // The kernel empties a killed cgroup within moments; the wait only
        // spans the exits already under way.
        while populated(dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _ = fs::remove_dir(dir);
    }
}

/// CPU and memory of the cgroup at `dir`: its memory from
/// `memory.current` when that controller counts it, else the sum of its
/// processes' resident memory.
pub fn usage(dir: &Path, memory: bool) -> Usage {
    let read = |file: &str| {
        let mut buf = Vec::new();
        crate::procstat::read_into(&dir.join(file), &mut buf).ok()?;
        String::from_utf8(buf).ok()
    };
    let cpu_usec = read("cpu.stat")
        .and_then(|t| key_in(&t, "usage_usec"))
        .unwrap_or(0);
    let rss_bytes = if memory {
        read("memory.current")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    } else {
        let members = read("cgroup.procs").unwrap_or_default();
        let mut scratch = Vec::with_capacity(256);
        members
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter_map(|p| crate::procstat::resident_bytes(p, &mut scratch))
            .sum()
    };
    Usage {
        cpu_usec,
        rss_bytes,
    }
}

/// The pids in the cgroup at `dir`.
pub fn procs(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether the cgroup at `dir` (or one below it) has a live process.
pub fn populated(dir: &Path) -> bool {
    read_key(&dir.join("cgroup.events"), "populated") == Some(1)
}

/// Whether process `pid` is in the cgroup at `dir` (checked after the
/// caller pinned it with a pidfd, so the answer is about that process).
pub fn is_member(pid: u32, dir: &Path) -> bool {
    cgroup_of(pid).is_some_and(|c| dir.ends_with(c.trim_start_matches('/')))
}

fn has_processes(dir: &Path) -> bool {
    !procs(dir).is_empty()
}

fn kill_dir(dir: &Path) {
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // Before 5.14: kill what is listed, again while forks race the kill.
    for _ in 0..8 {
        let left = procs(dir);
        if left.is_empty() {
            return;
        }
        for pid in left {
            if let Some(pidfd) = pidfd_open(pid) {
                super::pidfd_signal(&pidfd, libc::SIGKILL);
            }
        }
    }
}

/// Enables in `dir`'s children the wanted controllers that `dir` offers;
/// returns those that took.
fn enable(dir: &Path) -> Vec<String> {
    let offered = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let mut on = Vec::new();
    for c in WANTED {
        if offered.split_whitespace().any(|o| o == c)
            && write_file(&dir.join("cgroup.subtree_control"), &format!("+{c}")).is_ok()
        {
            on.push(c.to_string());
        }
    }
    on
}

fn mkdir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    // cgroup files take one value per write(2).
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// `key N` in a flat-keyed cgroup file.
fn read_key(path: &Path, key: &str) -> Option<u64> {
    key_in(&fs::read_to_string(path).ok()?, key)
}

/// `key N` in the text of a flat-keyed cgroup file.
fn key_in(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A file holding one number.
fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Where cgroup2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid layout).
fn cgroup2_mount() -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text)
}

fn parse_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// This process's cgroup v2 path (`0::/path`).
fn own_cgroup() -> Option<String> {
    cgroup_of(std::process::id())
}

/// A process's cgroup v2 path.
fn cgroup_of(pid: u32) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Whether the cgroup at `dir` was delegated to us: systemd marks a
/// `Delegate=yes` unit's cgroup with the `trusted.delegate` (or, for user
/// managers, `user.delegate`) attribute; a user's own writable cgroup is
/// delegated by construction.
fn delegated(dir: &Path) -> bool {
    let marked = ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(dir, name).as_deref() == Some(b"1".as_slice()));
    let own_and_writable = !nix::unistd::geteuid().is_root()
        && fs::metadata(dir).is_ok_and(|m| m.uid() == nix::unistd::geteuid().as_raw())
        && nix::unistd::access(&dir.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_ok();
    marked || own_and_writable
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated; the buffer's length is passed.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// A stable name for `home`'s subtree: the uid and an FNV-1a hash of the
/// path (the same across sup versions, so a new daemon finds an old one's).
pub fn home_key(home: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in home.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!(
        "{}-{:012x}",
        nix::unistd::geteuid(),
        hash & 0xffff_ffff_ffff
    )
}

impl NewLeaf {
    /// The fd of the leaf's directory, for the spawn.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.procs.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_cgroup2_mount_in_a_hybrid_layout() {
        let text = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(parse_mountinfo("1 2 0:1 / / rw - ext4 /dev/sda rw\n"), None);
    }

    #[test]
    fn home_keys_are_stable_and_distinct() {
        let a = home_key(Path::new("/root/.sup"));
        assert_eq!(a, home_key(Path::new("/root/.sup")));
        assert_ne!(a, home_key(Path::new("/root/.sup2")));
        assert!(a.starts_with(&format!("{}-", nix::unistd::geteuid())));
    }
}
