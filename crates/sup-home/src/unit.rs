//! Which systemd unit runs the daemon, recorded by the daemon so that a CLI
//! finding no daemon waits for the unit to bring it back instead of
//! starting one outside the unit.

use crate::Home;
use std::path::PathBuf;

/// A systemd unit that runs the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagingUnit {
    /// Its name, e.g. `sup-root.service`.
    pub name: String,
    /// A unit of the user's manager (`systemctl --user`).
    pub user: bool,
}

impl ManagingUnit {
    /// The unit whose cgroup a `/proc/self/cgroup` text places us in.
    pub fn from_cgroup(text: &str) -> Option<ManagingUnit> {
        let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
        let name = path.rsplit('/').find(|c| c.ends_with(".service"))?;
        let safe = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        safe.then(|| ManagingUnit {
            name: name.to_string(),
            user: path.contains("/user@"),
        })
    }

    fn line(&self) -> String {
        let manager = if self.user { "user" } else { "system" };
        format!("{manager} {}\n", self.name)
    }

    fn parse(text: &str) -> Option<ManagingUnit> {
        let (manager, name) = text.trim().split_once(' ')?;
        let unit = ManagingUnit::from_cgroup(&format!("0::/{name}"))?;
        Some(ManagingUnit {
            user: manager == "user",
            ..unit
        })
    }
}

impl Home {
    /// Where the daemon records the systemd unit that runs it.
    pub fn unit_marker(&self) -> PathBuf {
        self.dir().join("daemon.unit")
    }

    /// The unit that ran the last daemon, while its record stands (a clean
    /// exit removes it).
    pub fn managing_unit(&self) -> Option<ManagingUnit> {
        ManagingUnit::parse(&std::fs::read_to_string(self.unit_marker()).ok()?)
    }

    /// Records `unit` as the daemon's (None: started by hand, no record).
    pub fn record_unit(&self, unit: Option<&ManagingUnit>) -> std::io::Result<()> {
        match unit {
            Some(unit) => std::fs::write(self.unit_marker(), unit.line()),
            None => self.forget_unit(),
        }
    }

    /// Removes the record (a clean exit: nothing will bring the daemon back).
    pub fn forget_unit(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.unit_marker()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_read_from_the_cgroup_path() {
        let system = ManagingUnit::from_cgroup("0::/system.slice/sup-root.service\n").unwrap();
        assert_eq!(
            (system.name.as_str(), system.user),
            ("sup-root.service", false)
        );
        let user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/sup.service";
        let user = ManagingUnit::from_cgroup(user).unwrap();
        assert_eq!((user.name.as_str(), user.user), ("sup.service", true));
        assert_eq!(
            ManagingUnit::from_cgroup("0::/user.slice/session-3.scope"),
            None
        );
        assert_eq!(ManagingUnit::parse(&user.line()), Some(user));
        assert_eq!(ManagingUnit::parse("system x;rm.service"), None);
    }
}
