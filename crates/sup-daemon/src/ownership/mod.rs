//! Which processes belong to an instance, and acting on exactly those.
//!
//! Two back ends behind one interface, keyed by the instance's main pid:
//! - **cgroup** ([`cgroup`]): a cgroup v2 leaf per instance, where the
//!   daemon can own a subtree (root with a writable cgroup2, or a unit with
//!   `Delegate=yes`). Membership is exact, escapes are impossible, a kill is
//!   one write, emptiness is an inotify event, CPU and memory one read each.
//! - **tags** ([`tags`]): elsewhere. An instance is its process group, plus
//!   what carries its tags; the scan for the latter runs off the loop.
//!
//! `SUP_CGROUPS=auto` (default) picks cgroups where it can, `off` forces
//! tags, `on` makes the daemon refuse to start without cgroups.

pub mod cgroup;
pub mod tags;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use sup_proto::{AppSpec, Tracking, TrackingMode};
use tracing::{info, warn};

/// CPU time and resident memory of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, microseconds.
    pub cpu_usec: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
}

/// Where an instance's usage is read from: its cgroup, or its process
/// tree under `/proc`. Owned, so a blocking thread can read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageSource {
    /// Its leaf cgroup; `memory` when the memory controller counts it.
    Cgroup {
        /// The leaf's directory.
        dir: std::path::PathBuf,
        /// `memory.current` is there.
        memory: bool,
    },
    /// The process tree of this pid.
    Tree(u32),
}

impl UsageSource {
    /// Reads the usage now.
    pub fn read(&self) -> Usage {
        match self {
            UsageSource::Cgroup { dir, memory } => cgroup::usage(dir, *memory),
            UsageSource::Tree(pid) => {
                let tree = crate::procstat::tree_usage(*pid);
                Usage {
                    cpu_usec: tree.ticks * 1_000_000 / crate::procstat::ticks_per_second(),
                    rss_bytes: tree.rss_bytes,
                }
            }
        }
    }
}

/// What a quick exit left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// Known at once (cgroup mode): a process left in its cgroup, if any.
    Known(Option<u32>),
    /// Only a scan of /proc can tell (tag mode).
    Scan,
}

/// Where a daemon's subtree is, handed to the next one by `sup update`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subtree {
    /// Its directory.
    pub base: PathBuf,
    /// The daemon made it (and removes it at exit).
    pub owned: bool,
}

/// The ownership of every instance's processes.
#[derive(Debug)]
pub struct Ownership {
    back: Back,
}

#[derive(Debug)]
enum Back {
    Cgroup(Box<cgroup::Tree>),
    Tags { why: String },
}

impl Ownership {
    /// Chooses the back end per `SUP_CGROUPS`; with a `handed` subtree
    /// (after `sup update`), resumes it. Fails only when `SUP_CGROUPS=on`
    /// and cgroups can't be had, or the setting is not understood.
    pub fn setup(home: &Path, handed: Option<Subtree>) -> Result<Ownership, String> {
        let setting = std::env::var("SUP_CGROUPS").unwrap_or_default();
        let required = match setting.as_str() {
            "" | "auto" => false,
            "on" => true,
            "off" => return Ok(Ownership::tags("SUP_CGROUPS=off".into())),
            other => return Err(format!("SUP_CGROUPS={other}: expected auto, on or off")),
        };
        let tree = match handed {
            Some(s) => cgroup::Tree::resume(s.base, s.owned),
            None => cgroup::Tree::setup(home),
        };
        match tree {
            Ok(tree) => {
                info!(cgroup = %tree.base().0.display(), controllers = ?tree.controllers(), "tracking apps by cgroup");
                Ok(Ownership {
                    back: Back::Cgroup(Box::new(tree)),
                })
            }
            Err(why) if required => Err(format!("SUP_CGROUPS=on, but {why}")),
            Err(why) => {
                info!("tracking apps by process group and tags: {why}");
                Ok(Ownership::tags(why))
            }
        }
    }

    /// The tag back end, for `why`.
    pub fn tags(why: String) -> Ownership {
        Ownership {
            back: Back::Tags { why },
        }
    }

    /// What `list` and `describe` say of it.
    pub fn tracking(&self) -> Tracking {
        match &self.back {
            Back::Cgroup(tree) => Tracking {
                mode: TrackingMode::Cgroup,
                reason: None,
                controllers: tree.controllers().to_vec(),
                cgroup: Some(tree.apps_dir().display().to_string()),
            },
            Back::Tags { why } => Tracking {
                mode: TrackingMode::Tags,
                reason: Some(why.clone()),
                controllers: Vec::new(),
                cgroup: None,
            },
        }
    }

    /// Whether the tag back end is in use (its scans are needed).
    pub fn by_tags(&self) -> bool {
        matches!(self.back, Back::Tags { .. })
    }

    /// The subtree to hand to the next daemon.
    pub fn subtree(&self) -> Option<Subtree> {
        match &self.back {
            Back::Cgroup(tree) => {
                let (base, owned) = tree.base();
                Some(Subtree {
                    base: base.to_path_buf(),
                    owned,
                })
            }
            Back::Tags { .. } => None,
        }
    }

    /// Why `spec`'s limits can't be applied here, if they can't.
    pub fn check_limits(&self, spec: &AppSpec) -> Result<(), String> {
        let has = |c: &str| match &self.back {
            Back::Cgroup(tree) => tree.has(c),
            Back::Tags { .. } => false,
        };
        let (mode, why) = match &self.back {
            Back::Cgroup(_) => (
                "cgroup",
                "is not enabled in the daemon's subtree".to_string(),
            ),
            Back::Tags { why } => (
                "tags",
                format!("needs cgroup tracking, which is off here ({why})"),
            ),
        };
        for (set, flag, controller) in [
            (spec.memory_max.is_some(), "--memory-max", "memory"),
            (spec.cpu_quota.is_some(), "--cpu-quota", "cpu"),
        ] {
            if set && !has(controller) {
                return Err(format!(
                    "{flag} needs the {controller} controller, which {why} (tracking: {mode})"
                ));
            }
        }
        Ok(())
    }

    /// Makes the home of a new instance of app `id`, slot `slot`, before
    /// its spawn: the fd the child writes itself into (cgroup mode).
    pub fn prepare(
        &mut self,
        id: u32,
        slot: usize,
        spec: &AppSpec,
    ) -> std::io::Result<Option<cgroup::NewLeaf>> {
        let Back::Cgroup(tree) = &mut self.back else {
            return Ok(None);
        };
        let mut limits = Vec::new();
        if let Some(bytes) = spec.memory_max {
            limits.push(("memory.max", bytes.to_string()));
        }
        if let Some(bytes) = spec.max_memory.filter(|_| tree.has("memory")) {
            // The kernel reclaims above it and tells through memory.events:
            // `--max-memory` needs no poll, and an app growing fast is held
            // near its limit until it is restarted.
            limits.push(("memory.high", bytes.to_string()));
        }
        if let Some(pct) = spec.cpu_quota {
            limits.push((
                "cpu.max",
                format!("{} {CPU_PERIOD_US}", u64::from(pct) * CPU_PERIOD_US / 100),
            ));
        }
        tree.make_leaf(id, slot, &limits).map(Some)
    }

    /// The spawn for `leaf` gave `pid` (or failed: `pid` is None).
    pub fn placed(&mut self, pid: Option<u32>, leaf: Option<cgroup::NewLeaf>) {
        let (Back::Cgroup(tree), Some(leaf)) = (&mut self.back, leaf) else {
            return;
        };
        match pid {
            Some(pid) => tree.placed(pid, leaf),
            None => tree.discard(leaf),
        }
    }

    /// Takes over instance `pid` of app `id` from a previous daemon.
    pub fn adopt(&mut self, id: u32, slot: usize, pid: u32) {
        if let Back::Cgroup(tree) = &mut self.back {
            tree.adopt(id, slot, pid);
        }
    }

    /// Whether instance `pid` still has a live process.
    pub fn has_processes(&self, pid: u32) -> bool {
        match &self.back {
            Back::Cgroup(tree) => match tree.populated(pid) {
                Some(populated) => populated,
                None => group_alive(pid),
            },
            Back::Tags { .. } => group_alive(pid),
        }
    }

    /// Sends `sig` to every process of instance `pid`: its group, and in
    /// cgroup mode whatever else its cgroup holds.
    pub fn signal(&self, pid: u32, sig: Signal) {
        // ESRCH: the group is already gone, which is what we wanted.
        let _ = killpg(Pid::from_raw(pid as i32), sig);
        if let Back::Cgroup(tree) = &self.back {
            tree.signal_outside_group(pid, sig as i32);
        }
    }

    /// SIGKILL to every process of instance `pid`.
    pub fn kill(&self, pid: u32) {
        let killed = match &self.back {
            Back::Cgroup(tree) => tree.kill(pid),
            Back::Tags { .. } => false,
        };
        if !killed {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }

    /// Whether the kernel tells when an instance goes over its
    /// `--max-memory` (the memory controller is on in the subtree); else
    /// the supervisor polls.
    pub fn tells_memory(&self) -> bool {
        match &self.back {
            Back::Cgroup(tree) => tree.has("memory"),
            Back::Tags { .. } => false,
        }
    }

    /// Whether the back end reports instance `pid`'s emptiness by itself
    /// (cgroup mode); else the caller watches its process group.
    pub fn reports_empty(&self, pid: u32) -> bool {
        match &self.back {
            Back::Cgroup(tree) => tree.watched(pid),
            Back::Tags { .. } => false,
        }
    }

    /// What instance `pid` left behind as its main process exited: in its
    /// cgroup, or (tag mode) outside its process group.
    pub fn leftover(&self, pid: u32) -> Leftover {
        match &self.back {
            // Whatever lives on in its cgroup: a child may not have left
            // the group yet when its parent's exit 0 is reaped.
            Back::Cgroup(tree) => Leftover::Known(tree.members(pid).into_iter().next()),
            Back::Tags { .. } => Leftover::Scan,
        }
    }

    /// CPU time and memory of instance `pid`.
    pub fn usage(&self, pid: u32) -> Usage {
        self.usage_source(pid).read()
    }

    /// Where instance `pid`'s usage is read from, to read it off the loop.
    pub fn usage_source(&self, pid: u32) -> UsageSource {
        match &self.back {
            Back::Cgroup(tree) => tree
                .leaf_dir(pid)
                .map(|dir| UsageSource::Cgroup {
                    dir: dir.to_path_buf(),
                    memory: tree.has("memory"),
                })
                .unwrap_or(UsageSource::Tree(pid)),
            Back::Tags { .. } => UsageSource::Tree(pid),
        }
    }

    /// The supervisor is done with instance `pid`.
    pub fn release(&mut self, pid: u32) {
        if let Back::Cgroup(tree) = &mut self.back {
            tree.release(pid);
        }
    }

    /// Waits for a cgroup event (forever in tag mode).
    pub async fn changed(&self) {
        match &self.back {
            Back::Cgroup(tree) => tree.changed().await,
            Back::Tags { .. } => std::future::pending().await,
        }
    }

    /// What the kernel told of the instances since the last call.
    pub fn told(&mut self) -> Vec<cgroup::Told> {
        match &mut self.back {
            Back::Cgroup(tree) => tree.told(),
            Back::Tags { .. } => Vec::new(),
        }
    }

    /// What a previous daemon left: its instances' leaves (cgroup mode),
    /// as (app id, pids in it, directory).
    pub fn stale(&self) -> Vec<(u32, Vec<u32>, PathBuf)> {
        match &self.back {
            Back::Cgroup(tree) => tree
                .stale()
                .into_iter()
                .map(|(app, dir)| (app, cgroup::procs(&dir), dir))
                .collect(),
            Back::Tags { .. } => Vec::new(),
        }
    }

    /// At exit: nothing of the apps is left running, and the subtree goes.
    pub fn finish(&mut self) {
        if let Back::Cgroup(tree) = &mut self.back {
            tree.finish();
        }
    }
}

/// `cpu.max`'s period, microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Whether process group `pgid` has members. Zombies count here; the watch
/// that follows ([`crate::groupwatch`]) does not count them.
fn group_alive(pgid: u32) -> bool {
    killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// Sends `sig` through a pidfd: it reaches that process or none.
pub fn pidfd_signal(pidfd: &OwnedFd, sig: i32) {
    let fd: RawFd = pidfd.as_raw_fd();
    // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ESRCH) {
            warn!("pidfd_send_signal: {e}");
        }
    }
}
