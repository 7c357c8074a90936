//! The app spec: everything the daemon needs to run and restart one app.
//!
//! One serde type serves the CLI flags, the socket, the dump, the state file
//! and `sup update`'s handover, so every field has a default and new fields
//! are additive. The defaults are the `DEFAULT_*` constants below, which the
//! CLI's flags take too.

use crate::Signal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What to execute. Paths are absolute, resolved by the CLI from the user's
/// cwd and PATH, so a daemon with another cwd or PATH runs the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Program {
    /// An executable run directly.
    Exec {
        /// Absolute path of the executable.
        path: String,
    },
    /// A script run by an interpreter (`node app.js`).
    Script {
        /// Absolute path of the interpreter.
        interpreter: String,
        /// Path of the script, as given (resolved against `cwd`).
        script: String,
    },
    /// A command line run by `/bin/sh -c`, with `exec` in front of its
    /// command when it is one simple command, so that the shell becomes the
    /// app (see [`crate::shellwords`]).
    Shell {
        /// The command line.
        line: String,
    },
}

impl Program {
    /// The argv to execute, with `args` appended.
    pub fn argv(&self, args: &[String]) -> Vec<String> {
        let mut argv = match self {
            Program::Exec { path } => vec![path.clone()],
            Program::Script {
                interpreter,
                script,
            } => vec![interpreter.clone(), script.clone()],
            // `sh -c LINE sh ARGS...` makes ARGS the line's $1, $2, ...
            Program::Shell { line } => {
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    crate::shellwords::with_exec(line),
                ]
            }
        };
        if matches!(self, Program::Shell { .. }) && !args.is_empty() {
            argv.push("sh".into());
        }
        argv.extend(args.iter().cloned());
        argv
    }
}

/// When the daemon restarts an app that exited on its own (Docker's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart on any exit.
    #[default]
    Always,
    /// Restart on a non-zero exit code or death by a signal.
    OnFailure,
    /// As `always`; after a daemon restart, comes back unless the user stopped it.
    UnlessStopped,
    /// Never restart.
    No,
}

impl RestartPolicy {
    /// Whether an exit (`success` = exit code 0) calls for a restart.
    pub fn restarts_after(self, success: bool) -> bool {
        match self {
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure => !success,
            RestartPolicy::No => false,
        }
    }

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
            RestartPolicy::No => "no",
        }
    }
}

impl std::fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default delay before the first restart after a crash: none.
pub const DEFAULT_RESTART_DELAY_MS: u64 = 0;
/// Default `min_uptime_ms`: PM2's one second (docs/guide.md, "Backoff", says why).
pub const DEFAULT_MIN_UPTIME_MS: u64 = 1_000;
/// Default cap of the exponential backoff.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 30_000;
/// Default signal that asks an app to stop.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::TERM;
/// Default time between the stop signal and SIGKILL.
pub const DEFAULT_KILL_TIMEOUT_MS: u64 = 5_000;

/// Most held sockets one app may have: a spawned instance gets them as fds
/// 3..=66, and the daemon's fork path has room for no more.
pub const MAX_LISTEN: usize = 64;

/// Why `count` held sockets, more than [`MAX_LISTEN`], are refused.
pub fn too_many_sockets(count: usize) -> String {
    format!(
        "{count} --listen sockets: at most {MAX_LISTEN} per app (an instance gets them as fds 3..={})",
        2 + MAX_LISTEN
    )
}

/// A held socket's address, as `--listen` and the spec's `listen` say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A Unix socket path (anything with a `/`).
    Unix(std::path::PathBuf),
    /// `ip:port` or `[ipv6]:port`.
    Ip(std::net::SocketAddr),
    /// `:port`: every address, IPv6 and IPv4 alike.
    AnyPort(u16),
}

impl ListenAddr {
    /// Reads `host:port` with an IP host, `[v6]:port`, `:port` or a path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('/') {
            return Ok(Self::Unix(text.into()));
        }
        if let Some(port) = text.strip_prefix(':') {
            return match port.parse::<u16>() {
                Ok(port) if port > 0 => Ok(Self::AnyPort(port)),
                _ => Err(format!("{text:?}: the port must be 1-65535")),
            };
        }
        text.parse()
            .map(Self::Ip)
            .map_err(|_| format!("{text:?} is not IP:port, [IPv6]:port, :port or a socket path"))
    }
}

/// Default size at which a log file is rotated.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Default number of rotated files kept per log.
pub const DEFAULT_LOG_KEEP: u32 = 5;
/// Whether log lines carry their arrival time by default.
pub const DEFAULT_LOG_TIMESTAMPS: bool = true;

/// Where and how an app's output is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSpec {
    /// File for stdout (default `SUP_HOME/logs/<name>-out.log`).
    pub out_file: Option<String>,
    /// File for stderr (default `SUP_HOME/logs/<name>-err.log`).
    pub err_file: Option<String>,
    /// One file for both streams: alone, the app's only log; with either of
    /// the two above, a third file that gets every line besides them.
    pub combined_file: Option<String>,
    /// Prefix each line with its arrival time.
    pub timestamps: bool,
    /// PM2's `log_date_format` (dayjs tokens, see
    /// [`crate::datefmt::DateFormat`]): the prefix in that format instead
    /// of ISO 8601. `sup logs` can then neither merge by time nor `--since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<String>,
    /// Rotate a file once it passes this many bytes (0: never).
    pub max_size: u64,
    /// Rotated files kept per log (`<file>.1` is the newest).
    pub keep: u32,
    /// Each line written as one JSON object (`--log-format json`), for
    /// log shippers: `{"app","instance","stream","time","message"}`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub json: bool,
    /// Rotated files are gzipped (`<file>.1.gz`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub compress: bool,
    /// Rotated files older than this many days are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
    /// One file per instance, `<file>-<N>.log` (PM2's `merge_logs: false`);
    /// by default the instances share the app's files, each line tagged
    /// `[N]` with its instance.
    #[serde(default)]
    pub per_instance: bool,
}

impl Default for LogSpec {
    fn default() -> Self {
        LogSpec {
            out_file: None,
            err_file: None,
            combined_file: None,
            timestamps: DEFAULT_LOG_TIMESTAMPS,
            date_format: None,
            max_size: DEFAULT_LOG_MAX_SIZE,
            keep: DEFAULT_LOG_KEEP,
            json: false,
            compress: false,
            keep_days: None,
            per_instance: false,
        }
    }
}

/// A check of an app instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// HTTP GET; a 2xx or 3xx answer passes.
    Http {
        /// `http://host:port/path`.
        url: String,
    },
    /// A TCP connection that opens passes.
    Tcp {
        /// `host:port`.
        addr: String,
    },
    /// A command (under `/bin/sh -c`) that exits 0 passes.
    Cmd {
        /// The command line.
        line: String,
    },
    /// Readiness only: the app sends `READY=1` to its `NOTIFY_SOCKET` (sd_notify).
    Notify,
    /// Readiness only: the app calls `process.send('ready')` on Node's IPC
    /// channel (PM2's `wait_ready`).
    Message,
}

/// Default time between liveness probes.
pub const DEFAULT_HEALTH_INTERVAL_MS: u64 = 10_000;
/// Default time a probe may take.
pub const DEFAULT_HEALTH_TIMEOUT_MS: u64 = 2_000;
/// Default consecutive failures that make an app unhealthy.
pub const DEFAULT_HEALTH_RETRIES: u32 = 3;
/// Default time after a start during which failed probes do not count.
pub const DEFAULT_HEALTH_START_PERIOD_MS: u64 = 0;
/// Default time an instance has to become ready.
pub const DEFAULT_READY_TIMEOUT_MS: u64 = 60_000;

/// Liveness and readiness checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthSpec {
    /// Liveness probe: failing `retries` times in a row restarts the app.
    pub liveness: Option<Probe>,
    /// Readiness check: the instance stays `launching` until it passes.
    pub readiness: Option<Probe>,
    /// Time between probes (readiness probes run ten times as often).
    pub interval_ms: u64,
    /// Time a probe may take before it counts as failed.
    pub timeout_ms: u64,
    /// Consecutive liveness failures that make the app unhealthy.
    pub retries: u32,
    /// After a start, liveness failures during this period do not count.
    pub start_period_ms: u64,
    /// Time an instance has to become ready.
    pub ready_timeout_ms: u64,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            liveness: None,
            readiness: None,
            interval_ms: DEFAULT_HEALTH_INTERVAL_MS,
            timeout_ms: DEFAULT_HEALTH_TIMEOUT_MS,
            retries: DEFAULT_HEALTH_RETRIES,
            start_period_ms: DEFAULT_HEALTH_START_PERIOD_MS,
            ready_timeout_ms: DEFAULT_READY_TIMEOUT_MS,
        }
    }
}

/// Everything the daemon needs to run one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSpec {
    /// Unique name (see [`crate::validate_name`]).
    pub name: String,
    /// What to execute.
    pub program: Program,
    /// Arguments appended to the program.
    pub args: Vec<String>,
    /// Absolute working directory.
    pub cwd: String,
    /// The variables the user declared (`--env`, a config file's `env`,
    /// its profile and `env_file`); they win over `inherited_env`. Specs of
    /// sup 0.1.0 hold the whole environment here.
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Delay before the first restart after a crash.
    pub restart_delay_ms: u64,
    /// Cap of the exponential backoff between consecutive unstable restarts.
    pub backoff_max_ms: u64,
    /// Uptime after which a run counts as stable and the backoff resets.
    pub min_uptime_ms: u64,
    /// Unstable restarts allowed before the app turns `errored` (none: no limit).
    pub max_restarts: Option<u32>,
    /// Signal sent to the process group to stop the app.
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    pub kill_timeout_ms: u64,
    /// Log files and rotation.
    pub logs: LogSpec,
    /// Sockets the daemon binds and holds, handed to every instance as fds
    /// 3.. (`host:port`, `[v6]:port`, `:port` for every address, or a Unix
    /// socket path: see [`ListenAddr`]); at most
    /// [`MAX_LISTEN`].
    pub listen: Vec<String>,
    /// Liveness and readiness checks.
    pub health: HealthSpec,
    /// Command run for each event of the app (the event as JSON on stdin
    /// and in `SUP_EVENT`).
    pub on_event: Option<String>,
    /// Webhooks told when the app turns errored, fails its health checks,
    /// is restarted for memory, crash-loops or recovers (`--notify`; see
    /// [`crate::notify::NotifyTarget`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// How many instances run (each with its index in `SUP_INSTANCE`); at
    /// most [`MAX_INSTANCES`].
    pub instances: u32,
    /// Also give each instance its index in this variable (PM2's
    /// `instance_var`; `NODE_APP_INSTANCE` when unset).
    pub instance_var: Option<String>,
    /// PM2's `increment_var`: this variable (`PORT`) is its declared value
    /// plus the instance's index in each instance (0 when not declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_var: Option<String>,
    /// The variables inherited from the shell that started the app, under
    /// `env`; `sup restart --update-env` replaces them, `sup export` leaves
    /// them out. Shared: the apps a shell or a file starts all inherit
    /// the same variables, and the daemon keeps one copy of them.
    pub inherited_env: Arc<BTreeMap<String, String>>,
    /// PM2's `namespace`: a label that groups apps.
    pub namespace: Option<String>,
    /// The config file the app was started from (absolute), so that
    /// `sup reload FILE --prune` knows which apps left it.
    pub source: Option<String>,
    /// Restart an instance whose process tree's resident memory passes
    /// this many bytes (PM2's `max_memory_restart`).
    pub max_memory: Option<u64>,
    /// Hard memory limit of each instance (`memory.max` of its cgroup: the
    /// kernel's OOM killer ends it past this many bytes). Needs cgroup
    /// tracking with the memory controller.
    pub memory_max: Option<u64>,
    /// CPU limit of each instance, percent of one core (`cpu.max` of its
    /// cgroup; 200 is two cores). Needs cgroup tracking with the cpu
    /// controller.
    pub cpu_quota: Option<u32>,
    /// Restart the app on this schedule (PM2's `cron_restart`): 5 cron
    /// fields, or 6 with seconds first; see [`crate::schedule`].
    pub cron_restart: Option<String>,
    /// Restart the app when a file under these paths changes (relative to
    /// `cwd`; empty: no watching).
    pub watch: Vec<String>,
    /// Changes under paths matching these globs do not count (besides
    /// `node_modules`, `.git` and the app's own logs, always ignored).
    pub ignore_watch: Vec<String>,
    /// A burst of changes restarts the app once, this long after its first
    /// change; never more often.
    pub watch_delay_ms: u64,
    /// Exits with these codes are not restarted (PM2's `stop_exit_codes`).
    pub stop_exit_codes: Vec<i32>,
    /// Run the app as this user (a name, or a uid), with its groups, `HOME`
    /// and `USER`; only a daemon running as root can (PM2's `user`/`uid`).
    pub user: Option<String>,
    /// Run the app with this group (a name or a gid) instead of the user's
    /// primary group (PM2's `gid`).
    pub group: Option<String>,
}

/// The variable that marks a process as started by a sup daemon for an app
/// (its id).
pub const APP_ID_VAR: &str = "SUP_APP_ID";

/// The variable that holds an instance's index.
pub const INSTANCE_VAR: &str = "SUP_INSTANCE";

impl AppSpec {
    /// What instance `index` gets on top of the app's environment: its
    /// index under sup's name and PM2's (`instance_var`, else
    /// `NODE_APP_INSTANCE`), and `increment_var`'s declared (or inherited)
    /// value plus the index. The daemon spawns with these; `sup env` shows
    /// them.
    pub fn instance_env(&self, index: usize) -> Vec<(String, String)> {
        let pm2_var = self.instance_var.as_deref().unwrap_or("NODE_APP_INSTANCE");
        let mut vars = vec![
            (INSTANCE_VAR.to_string(), index.to_string()),
            (pm2_var.to_string(), index.to_string()),
        ];
        if let Some(var) = &self.increment_var {
            let base = self
                .env
                .get(var)
                .or_else(|| self.inherited_env.get(var))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
            vars.push((var.clone(), (base + index as u64).to_string()));
        }
        vars
    }

    /// The app's whole environment: the inherited variables, overlaid with
    /// the declared ones.
    pub fn full_env(&self) -> BTreeMap<String, String> {
        let mut env = (*self.inherited_env).clone();
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// What no process could be given as asked: an environment variable
    /// with an empty name, `=` or a NUL byte in its name, or a NUL byte in
    /// its value (execve takes C strings), and an exit code outside 0–255.
    /// The CLI refuses such a spec before asking the daemon, which refuses
    /// it too.
    pub fn check(&self) -> Result<(), String> {
        for (key, value) in self.inherited_env.iter().chain(&self.env) {
            if key.is_empty() {
                return Err("an environment variable has an empty name".into());
            }
            if key.contains(['=', '\0']) {
                return Err(format!(
                    "environment variable {key:?}: a name cannot hold `=` or a NUL byte"
                ));
            }
            if value.contains('\0') {
                return Err(format!(
                    "environment variable {key}: its value holds a NUL byte, which no environment can carry"
                ));
            }
        }
        if let Some(code) = self
            .stop_exit_codes
            .iter()
            .find(|c| !(0..=255).contains(*c))
        {
            return Err(format!("stop exit code {code} is outside 0-255"));
        }
        for target in &self.notify {
            crate::notify::NotifyTarget::parse(target)?;
        }
        Ok(())
    }
}

/// Default `watch_delay_ms`: PM2's one second.
pub const DEFAULT_WATCH_DELAY_MS: u64 = 1_000;

/// Most instances an app may have.
pub const MAX_INSTANCES: u32 = 1024;

impl Default for AppSpec {
    fn default() -> Self {
        AppSpec {
            name: String::new(),
            program: Program::Shell {
                line: String::new(),
            },
            args: Vec::new(),
            cwd: "/".into(),
            env: BTreeMap::new(),
            restart: RestartPolicy::default(),
            restart_delay_ms: DEFAULT_RESTART_DELAY_MS,
            backoff_max_ms: DEFAULT_BACKOFF_MAX_MS,
            min_uptime_ms: DEFAULT_MIN_UPTIME_MS,
            max_restarts: None,
            stop_signal: DEFAULT_STOP_SIGNAL,
            kill_timeout_ms: DEFAULT_KILL_TIMEOUT_MS,
            logs: LogSpec::default(),
            listen: Vec::new(),
            health: HealthSpec::default(),
            on_event: None,
            notify: Vec::new(),
            instances: 1,
            instance_var: None,
            increment_var: None,
            inherited_env: Arc::default(),
            namespace: None,
            source: None,
            max_memory: None,
            memory_max: None,
            cpu_quota: None,
            cron_restart: None,
            watch: Vec::new(),
            ignore_watch: Vec::new(),
            watch_delay_ms: DEFAULT_WATCH_DELAY_MS,
            stop_exit_codes: Vec::new(),
            user: None,
            group: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_per_program_kind() {
        let args = vec!["--queue".to_string(), "high".to_string()];
        let exec = Program::Exec {
            path: "/bin/w".into(),
        };
        assert_eq!(exec.argv(&args), ["/bin/w", "--queue", "high"]);
        let script = Program::Script {
            interpreter: "/usr/bin/node".into(),
            script: "app.js".into(),
        };
        assert_eq!(script.argv(&[]), ["/usr/bin/node", "app.js"]);
        let shell = Program::Shell {
            line: "echo $1".into(),
        };
        assert_eq!(
            shell.argv(&args),
            ["/bin/sh", "-c", "exec echo $1", "sh", "--queue", "high"]
        );
        // A 0.1.0 dump's plain line: the shell execs the app too.
        let plain = Program::Shell {
            line: "gunicorn -w 2 app:app".into(),
        };
        assert_eq!(
            plain.argv(&[]),
            ["/bin/sh", "-c", "exec gunicorn -w 2 app:app"]
        );
        let pipe = Program::Shell {
            line: "a | b".into(),
        };
        assert_eq!(pipe.argv(&[]), ["/bin/sh", "-c", "a | b"]);
    }

    #[test]
    fn declared_env_wins_over_the_inherited() {
        let spec = AppSpec {
            env: [("A".to_string(), "declared".to_string())].into(),
            inherited_env: Arc::new(
                [("A", "shell"), ("B", "shell")]
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .into(),
            ),
            ..AppSpec::default()
        };
        let env = spec.full_env();
        assert_eq!(env["A"], "declared");
        assert_eq!(env["B"], "shell");
    }

    #[test]
    fn what_no_process_can_be_given_is_refused() {
        let with = |k: &str, v: &str| {
            let mut spec = AppSpec::default();
            spec.env.insert(k.into(), v.into());
            spec.check()
        };
        assert_eq!(with("A", "1"), Ok(()));
        assert!(with("A", "x\0y")
            .unwrap_err()
            .contains("variable A: its value holds a NUL"));
        assert!(with("", "1").unwrap_err().contains("empty name"));
        assert!(with("A=B", "1").unwrap_err().contains("cannot hold `=`"));
        let spec = AppSpec {
            stop_exit_codes: vec![0, 256],
            ..AppSpec::default()
        };
        assert!(spec.check().unwrap_err().contains("256 is outside 0-255"));
    }

    #[test]
    fn policies() {
        use RestartPolicy::*;
        assert!(Always.restarts_after(true) && Always.restarts_after(false));
        assert!(!OnFailure.restarts_after(true) && OnFailure.restarts_after(false));
        assert!(UnlessStopped.restarts_after(true));
        assert!(!No.restarts_after(false));
    }

    #[test]
    fn missing_fields_take_defaults() {
        let spec: AppSpec =
            serde_json::from_str(r#"{"name":"api","program":{"kind":"exec","path":"/bin/true"}}"#)
                .unwrap();
        assert_eq!(spec.kill_timeout_ms, DEFAULT_KILL_TIMEOUT_MS);
        assert_eq!(spec.restart, RestartPolicy::Always);
        assert_eq!(spec.stop_signal, DEFAULT_STOP_SIGNAL);
    }

    #[test]
    fn a_spec_with_a_bad_signal_does_not_parse() {
        let spec = |signal: &str| {
            serde_json::from_str::<AppSpec>(&format!(
                r#"{{"name":"api","program":{{"kind":"exec","path":"/bin/true"}},"stop_signal":"{signal}"}}"#
            ))
        };
        assert_eq!(spec("SIGINT").unwrap().stop_signal.to_string(), "SIGINT");
        let err = spec("SIGNOPE").unwrap_err().to_string();
        assert!(err.starts_with(r#"unknown signal "SIGNOPE""#), "{err}");
    }
}
