//! The tag back end's scan: where no cgroup can be made, a process belongs
//! to an instance when it is in the instance's process group, or carries
//! its tags in its environment (`SUP_HOME`, `SUP_APP_ID`, `SUP_INSTANCE`).
//!
//! One pass over /proc, made off the event loop, returns candidates, each
//! pinned by a pidfd opened before its tags are read again: a pid reused
//! meanwhile is never signalled. The supervisor then drops every candidate
//! its live table accounts for (an indexed pid, a live instance's group,
//! a hook or a probe) before any signal. The same scan serves crash
//! recovery, the sweep after a stop, and the quick-exit check.

use crate::groupwatch::pidfd_open;
use crate::procstat::read_stat;
use std::os::fd::OwnedFd;
use std::path::Path;

pub use sup_proto::spec::{APP_ID_VAR as APP_VAR, INSTANCE_VAR};

/// Which tagged processes a scan wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every process tagged for the home (crash recovery, shutdown).
    All,
    /// Those of instance `index` of app `app`.
    Instance {
        /// App id.
        app: u32,
        /// Instance index.
        index: u32,
    },
}

/// A tagged process, pinned.
#[derive(Debug)]
pub struct Candidate {
    /// Its pid.
    pub pid: u32,
    /// A pidfd on it: every signal goes through this.
    pub pidfd: OwnedFd,
    /// The app id it carries.
    pub app: u32,
    /// Its process group.
    pub pgrp: u32,
}

/// The tags a process's environment carries for `home`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tags {
    app: u32,
    index: Option<u32>,
}

/// Tagged processes of `home` in `scope`, other than this process and its
/// ancestors (a shell started from inside an app carries its tags, and so
/// does a CLI started from it).
pub fn scan(home: &Path, scope: Scope) -> Vec<Candidate> {
    let home_var = format!("SUP_HOME={}", home.display());
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let spared = ancestors();
    let read = |pid: u32| {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        tags_of(&environ, &home_var).filter(|t| wanted(*t, scope))
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if spared.contains(&pid) || read(pid).is_none() {
            continue;
        }
        // Pinned first, then read again: the tags are the pinned process's.
        let Some(pidfd) = pidfd_open(pid) else {
            continue;
        };
        let (Some(tags), Some(stat)) = (read(pid), read_stat(pid)) else {
            continue;
        };
        found.push(Candidate {
            pid,
            pidfd,
            app: tags.app,
            pgrp: stat.pgrp,
        });
    }
    found
}

fn wanted(tags: Tags, scope: Scope) -> bool {
    match scope {
        Scope::All => true,
        Scope::Instance { app, index } => tags.app == app && tags.index == Some(index),
    }
}

/// The tags in a NUL-separated environment, if it names `home_var`.
fn tags_of(environ: &[u8], home_var: &str) -> Option<Tags> {
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    if !vars.contains(&home_var.as_bytes()) {
        return None;
    }
    let value = |name: &str| {
        let prefix = format!("{name}=");
        vars.iter()
            .find_map(|v| v.strip_prefix(prefix.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok())
    };
    Some(Tags {
        app: value(APP_VAR)?,
        index: value(INSTANCE_VAR),
    })
}

/// This process and its ancestors: parent, grandparent, ... up to init.
fn ancestors() -> Vec<u32> {
    let mut found = vec![std::process::id()];
    let mut pid = std::process::id();
    while let Some(parent) = read_stat(pid)
        .map(|s| s.ppid)
        .filter(|p| *p > 1 && !found.contains(p))
    {
        found.push(parent);
        pid = parent;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_need_the_home_and_an_app_id() {
        let home = "SUP_HOME=/h";
        let env = b"A=1\0SUP_HOME=/h\0SUP_APP_ID=7\0SUP_INSTANCE=2\0";
        assert_eq!(
            tags_of(env, home),
            Some(Tags {
                app: 7,
                index: Some(2)
            })
        );
        let hook = b"SUP_HOME=/h\0SUP_APP_ID=7\0";
        assert_eq!(
            tags_of(hook, home),
            Some(Tags {
                app: 7,
                index: None
            })
        );
        assert_eq!(tags_of(b"SUP_HOME=/other\0SUP_APP_ID=7\0", home), None);
        assert_eq!(tags_of(b"SUP_HOME=/h\0", home), None);
    }

    #[test]
    fn an_instance_scope_wants_its_app_and_index_only() {
        let scope = Scope::Instance { app: 7, index: 1 };
        assert!(wanted(
            Tags {
                app: 7,
                index: Some(1)
            },
            scope
        ));
        assert!(!wanted(
            Tags {
                app: 7,
                index: Some(0)
            },
            scope
        ));
        assert!(!wanted(
            Tags {
                app: 7,
                index: None
            },
            scope
        ));
        assert!(!wanted(
            Tags {
                app: 8,
                index: Some(1)
            },
            scope
        ));
        assert!(wanted(
            Tags {
                app: 8,
                index: None
            },
            Scope::All
        ));
    }
}
