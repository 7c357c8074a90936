//! The paths under `SUP_HOME`, and preparing the directory.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Longest socket path `bind(2)` accepts (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why `SUP_HOME` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `SUP_HOME` nor a home directory is known.
    #[error("cannot find a home directory; set SUP_HOME")]
    NoHome,
    /// The directory cannot be created or fixed.
    #[error("cannot use {path} as SUP_HOME (set SUP_HOME to a directory of yours)")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Someone else owns the directory.
    #[error("{0} belongs to another user; refusing to use it as SUP_HOME")]
    Owner(PathBuf),
    /// The socket path is longer than a Unix socket address allows.
    #[error("socket path {0} is longer than {MAX_SOCKET_PATH} bytes; set SUP_HOME to a shorter directory")]
    SocketPathTooLong(PathBuf),
}

/// The paths under `SUP_HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `SUP_HOME` from the environment, or the per-user data directory
    /// (`~/.local/share/sup` on Linux).
    pub fn from_env() -> Result<Home, HomeError> {
        match std::env::var_os("SUP_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => Ok(Home::at(absolute(PathBuf::from(dir)))),
            None => directories::ProjectDirs::from("", "", "sup")
                .map(|dirs| Home::at(dirs.data_local_dir().to_path_buf()))
                .ok_or(HomeError::NoHome),
        }
    }

    /// A home at `dir`.
    pub fn at(dir: PathBuf) -> Home {
        Home { dir }
    }

    /// Checks that the socket path fits in a Unix socket address.
    pub fn check_socket_path(&self) -> Result<(), HomeError> {
        let socket = self.socket();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(HomeError::SocketPathTooLong(socket));
        }
        Ok(())
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The daemon's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("sup.sock")
    }

    /// The lock the running daemon holds for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }

    /// The lock CLIs hold while they start a daemon, so that racing CLIs start one.
    pub fn spawn_lock(&self) -> PathBuf {
        self.dir.join("spawn.lock")
    }

    /// The token the web listener asks for (0600): for the dashboard's
    /// actions, and for everything beyond loopback.
    pub fn web_token(&self) -> PathBuf {
        self.dir.join("web.token")
    }

    /// The webhooks told about every app's trouble (`[daemon] notify`).
    pub fn notify_targets(&self) -> PathBuf {
        self.dir.join("notify.json")
    }

    /// The daemon's own log.
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The dump `sup save` writes.
    pub fn dump(&self) -> PathBuf {
        self.dir.join("dump.json")
    }

    /// The previous dump, kept by `sup save` and read when the dump is corrupt.
    pub fn dump_backup(&self) -> PathBuf {
        backup_of(&self.dump())
    }

    /// Whether there is a dump (or its backup) for `sup resurrect` to read.
    pub fn has_dump(&self) -> bool {
        self.dump().exists() || self.dump_backup().exists()
    }

    /// sup 0.1.0's live state file, one file for every app: read once by
    /// the recovery after a crash of a 0.1.0 daemon, never written.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The live state of the running daemon: one file per app,
    /// `state/<id>.json` (and its previous generation `<id>.json.bak`),
    /// written on each change of that app, emptied by a clean shutdown.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The live state file of app `id`.
    pub fn app_state(&self, id: u32) -> PathBuf {
        self.state_dir().join(format!("{id}.json"))
    }

    /// Whether the last daemon died without a clean shutdown: a live state
    /// file (or its previous generation) is still there, in the layout of
    /// this sup or of 0.1.0. Only meaningful while no daemon runs; the next
    /// daemon restores that state (or drops it when it is of an earlier boot).
    pub fn last_daemon_died_uncleanly(&self) -> bool {
        if self.state().exists() {
            return true;
        }
        let Ok(entries) = fs::read_dir(self.state_dir()) else {
            return false;
        };
        entries
            .flatten()
            .any(|e| is_live_state_file(&e.file_name().to_string_lossy()))
    }

    /// The directory of per-instance sd_notify sockets.
    pub fn notify_dir(&self) -> PathBuf {
        self.dir.join("notify")
    }

    /// The directory of app logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The default log file of `app`'s `stream`: `logs/<app>-out.log` or
    /// `logs/<app>-err.log`, `<app>` made a file name as PM2 makes it ([`log_stem`]).
    pub fn app_log(&self, app: &str, stream: LogStream) -> PathBuf {
        app_log_in(&self.logs_dir(), app, stream)
    }

    /// The app whose default stdout log is the file `file_name` in `logs/`.
    pub fn app_of_out_log(file_name: &str) -> Option<&str> {
        file_name.strip_suffix("-out.log")
    }

    /// Creates the directory (0700) and `logs/`, or checks an existing one is
    /// ours and tightens it to 0700; also checks the socket path fits.
    pub fn prepare(&self) -> Result<(), HomeError> {
        self.check_socket_path()?;
        let io_err = |source| HomeError::Io {
            path: self.dir.clone(),
            source,
        };
        private_dir(&self.dir).map_err(io_err)?;
        let meta = fs::metadata(&self.dir).map_err(io_err)?;
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(HomeError::Owner(self.dir.clone()));
        }
        for dir in [self.logs_dir(), self.notify_dir(), self.state_dir()] {
            private_dir(&dir).map_err(io_err)?;
        }
        Ok(())
    }
}

/// Which of an app's output streams a log file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

impl LogStream {
    /// `out` or `err`, as in the default file names.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Out => "out",
            LogStream::Err => "err",
        }
    }
}

/// [`Home::app_log`] for a logs directory already at hand.
pub fn app_log_in(logs_dir: &Path, app: &str, stream: LogStream) -> PathBuf {
    logs_dir.join(format!("{}-{}.log", log_stem(app), stream.as_str()))
}

/// Longest stem of a log file name, in bytes: with `-out.log`, an instance
/// and a rotation suffix it stays well under the 255 bytes of a file name.
const MAX_STEM: usize = 100;

/// The stem of an app's default log files, as PM2 makes it (its
/// `Common.js`): every character outside `[a-zA-Z0-9.-]` becomes `-`. Cut
/// to [`MAX_STEM`] bytes; never `.` or `..`, so the file stays in `logs/`.
pub fn log_stem(name: &str) -> String {
    let mut stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    stem.truncate(MAX_STEM);
    if stem.bytes().all(|b| b == b'.') {
        stem = stem.replace('.', "-");
    }
    stem
}

/// Whether `name`, in the state directory, is live state: `<id>.json` or
/// its previous generation `<id>.json.bak` (not a corrupt file set aside).
pub fn is_live_state_file(name: &str) -> bool {
    let id = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".json.bak"));
    id.is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The backup of a file written with a backup kept: `<path>.bak`.
pub fn backup_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".bak");
    PathBuf::from(name)
}

/// Creates `dir` 0700, or tightens an existing one to 0700: app logs and
/// notify sockets are nobody else's business.
fn private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    if fs::metadata(dir)?.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_creates_private_dir() {
        let base = std::env::temp_dir().join(format!("sup-home-test-{}", std::process::id()));
        let home = Home::at(base.join("h"));
        home.prepare().unwrap();
        let mode = fs::metadata(home.dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(home.logs_dir().is_dir());
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn layout_names() {
        let home = Home::at(PathBuf::from("/h"));
        assert_eq!(home.app_state(7), Path::new("/h/state/7.json"));
        assert!(is_live_state_file("7.json") && is_live_state_file("7.json.bak"));
        assert!(!is_live_state_file(".json") && !is_live_state_file("a.json"));
        assert!(!is_live_state_file("7.json.corrupt-x") && !is_live_state_file(".7.json.tmp.1"));
        assert_eq!(home.dump_backup(), Path::new("/h/dump.json.bak"));
        assert_eq!(
            home.app_log("api", LogStream::Err),
            Path::new("/h/logs/api-err.log")
        );
        let out = home.app_log("api", LogStream::Out);
        let file = out.file_name().unwrap().to_str().unwrap();
        assert_eq!(Home::app_of_out_log(file), Some("api"));
        assert_eq!(Home::app_of_out_log("api-err.log"), None);
    }

    #[test]
    fn a_state_file_means_an_unclean_shutdown() {
        let base = std::env::temp_dir().join(format!("sup-home-state-{}", std::process::id()));
        let home = Home::at(base.clone());
        home.prepare().unwrap();
        assert!(!home.last_daemon_died_uncleanly());
        fs::write(home.state(), b"{}").unwrap();
        assert!(home.last_daemon_died_uncleanly());
        fs::remove_file(home.state()).unwrap();
        let aside = home
            .state_dir()
            .join("3.json.corrupt-2024-01-01T000000.000+0000");
        fs::write(aside, b"x").unwrap();
        assert!(
            !home.last_daemon_died_uncleanly(),
            "a file set aside is not live"
        );
        fs::write(backup_of(&home.app_state(3)), b"{").unwrap();
        assert!(home.last_daemon_died_uncleanly());
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn prepare_tightens_a_loose_logs_dir() {
        let base = std::env::temp_dir().join(format!("sup-home-loose-{}", std::process::id()));
        let home = Home::at(base.join("h"));
        home.prepare().unwrap();
        fs::set_permissions(home.logs_dir(), fs::Permissions::from_mode(0o777)).unwrap();
        home.prepare().unwrap();
        let mode = fs::metadata(home.logs_dir()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn long_socket_path_is_refused() {
        let home = Home::at(std::env::temp_dir().join("x".repeat(120)));
        assert!(matches!(
            home.prepare(),
            Err(HomeError::SocketPathTooLong(_))
        ));
        assert!(!home.dir().exists());
    }

    #[test]
    fn log_stems_are_pm2s_and_stay_in_their_directory() {
        assert_eq!(log_stem("NearBy Server"), "NearBy-Server");
        assert_eq!(
            log_stem("express-ejs/development"),
            "express-ejs-development"
        );
        assert_eq!(log_stem("my_app.v2"), "my-app.v2");
        assert_eq!(log_stem(".."), "--");
        assert_eq!(log_stem("é"), "-");
        assert_eq!(log_stem(&"x".repeat(300)).len(), MAX_STEM);
    }
}
