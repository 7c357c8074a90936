//! Requests, responses and the views of apps that responses carry.

use crate::kinds::{ErrorKind, EventKind, HealthStatus};
use crate::spec::AppSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest a daemon takes to answer [`Request::Update`]: the new binary's
/// check, then the log writer's drain, with room to spare. A CLI waits
/// longer than this.
pub const UPDATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// Which apps a command applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Every app.
    All,
    /// The app with this numeric id.
    Id(u32),
    /// The app with this name.
    Name(String),
    /// One instance of an app (`api:2`, `3:0`).
    Instance {
        /// The app (by name or id).
        app: Box<Target>,
        /// The instance's index.
        index: u32,
    },
}

impl Target {
    /// Reads a CLI argument: `all`, digits (an id), a name, or either of
    /// them with `:N` for one instance.
    pub fn parse(arg: &str) -> Target {
        if let Some((app, index)) = arg.rsplit_once(':') {
            if let (false, Ok(index)) = (app.is_empty(), index.parse::<u32>()) {
                return Target::Instance {
                    app: Box::new(Target::parse(app)),
                    index,
                };
            }
        }
        if arg == "all" {
            Target::All
        } else if let Ok(id) = arg.parse::<u32>() {
            Target::Id(id)
        } else {
            Target::Name(arg.to_string())
        }
    }

    /// The app this names, and the instance if it names one.
    pub fn split(&self) -> (&Target, Option<u32>) {
        match self {
            Target::Instance { app, index } => (app, Some(*index)),
            other => (other, None),
        }
    }
}

/// How `sup scale` changes the number of instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// To exactly this many (`sup scale api 8`).
    To(u32),
    /// By this many more or fewer (`sup scale api +2`, `-1`).
    By(i32),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::All => f.write_str("all"),
            Target::Id(id) => write!(f, "id {id}"),
            Target::Name(name) => write!(f, "{name:?}"),
            Target::Instance { app, index } => write!(f, "instance {index} of {app}"),
        }
    }
}

/// A command for the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon up? Answered by [`Response::Pong`].
    Ping,
    /// Add a new app and start it; with `wait`, answer once it is ready.
    Add {
        /// The app.
        spec: Box<AppSpec>,
        /// Answer once the app is online (ready), not just spawned.
        wait: bool,
    },
    /// Add new apps and start them, in order (a file's apps): one request
    /// and one answer, [`Response::Batch`], instead of one of each per app.
    AddMany {
        /// The apps.
        specs: Vec<AppSpec>,
    },
    /// Give a known app (by the spec's name) a new spec, on disk before it
    /// is used, then restart it with it (or reload it: zero downtime).
    Apply {
        /// The new spec.
        spec: Box<AppSpec>,
        /// Reload instead of restart.
        reload: bool,
    },
    /// Start apps that are already known (stopped or errored ones).
    Start(Target),
    /// Change how many instances an app runs.
    Scale {
        /// The app.
        target: Target,
        /// The new count.
        scale: Scale,
    },
    /// Send a signal to the main process of each instance (or one).
    Signal {
        /// The apps or instance.
        target: Target,
        /// The signal.
        signal: crate::Signal,
    },
    /// Stop apps; they stay stopped.
    Stop(Target),
    /// Stop (if running) and start apps again.
    Restart(Target),
    /// Stop and forget apps.
    Delete(Target),
    /// All apps, briefly.
    List,
    /// What `sup list` shows: the table's columns of every app, answered
    /// by [`Response::Rows`] (a quarter of [`Request::List`]'s bytes).
    Rows,
    /// Apps with their full spec.
    Describe(Target),
    /// Stop every app gracefully, then the daemon exits.
    Kill,
    /// Empty the log files of apps.
    Flush(Target),
    /// Restart counters back to 0 (PM2's `pm2 reset`).
    Reset(Target),
    /// Serve `/livez`, `/readyz` and `/metrics` on this address (None: stop).
    Web {
        /// `127.0.0.1:9615`, `:9615`, ...
        listen: Option<String>,
    },
    /// Webhooks told about every app's trouble (`[daemon] notify` of a
    /// sup.toml), replacing the previous ones; kept across restarts.
    Notify {
        /// Targets: `[json+|ntfy+]http[s]://...`.
        targets: Vec<String>,
    },
    /// Zero-downtime restart: a new instance first, the old one stopped once it is ready.
    Reload(Target),
    /// Write the dump of every app (`force`: even an empty list).
    Save {
        /// Save even when there are no apps.
        force: bool,
    },
    /// Bring back the apps of the dump.
    Resurrect,
    /// Replace the daemon with the binary at `binary`, keeping every app
    /// running. The daemon answers within [`UPDATE_DEADLINE`] (or execs).
    Update {
        /// Path of the new sup binary.
        binary: String,
    },
    /// Recorded events (of one app, or all); with `follow`, then new ones as they happen.
    Events {
        /// Whose events (None: every app's).
        target: Option<Target>,
        /// Keep the connection open and stream new events.
        follow: bool,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// The daemon's sup version.
        version: String,
        /// Daemon pid.
        pid: u32,
        /// Daemon start time, milliseconds since the Unix epoch.
        started_at_ms: u64,
        /// The daemon's `SUP_HOME`.
        home: String,
    },
    /// The apps a command concerned, after it took effect.
    Apps(Vec<AppInfo>),
    /// Answer to [`Request::Rows`].
    Rows(Vec<AppRow>),
    /// One answer per item of a batch ([`Request::AddMany`]), in order.
    Batch(Vec<Response>),
    /// Done, nothing to report.
    Ok,
    /// Done, with something the user should know: lines, each with its
    /// [`Severity`] marked in its text.
    Note(String),
    /// Events, oldest first.
    Events(Vec<EventRecord>),
    /// The command failed; the connection stays usable.
    Error {
        /// Machine-readable class.
        kind: ErrorKind,
        /// What went wrong, for a human.
        message: String,
    },
}

impl Response {
    /// Builds an error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

/// How much a line of a [`Response::Note`] matters. A note stays one string
/// on the wire, as in sup 0.1.0: a warning line starts with `warning: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something done, for the record.
    Info,
    /// Something the user should look at.
    Warning,
}

impl Severity {
    const WARNING: &'static str = "warning: ";

    /// One line of a note with this severity.
    pub fn line(self, text: &str) -> String {
        match self {
            Severity::Info => text.to_string(),
            Severity::Warning => format!("{}{text}", Severity::WARNING),
        }
    }

    /// Splits a line of a note into its severity and its text.
    pub fn of(line: &str) -> (Severity, &str) {
        match line.strip_prefix(Severity::WARNING) {
            Some(text) => (Severity::Warning, text),
            None => (Severity::Info, line),
        }
    }
}

/// A request as framed on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub proto: u32,
    /// sup version of the sender.
    pub client: String,
    /// The command.
    pub request: Request,
}

impl RequestEnvelope {
    /// Wraps a request with this crate's versions.
    pub fn new(request: Request) -> Self {
        RequestEnvelope {
            proto: crate::PROTOCOL_VERSION,
            client: crate::SUP_VERSION.to_string(),
            request,
        }
    }
}

/// A response as framed on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// [`crate::PROTOCOL_VERSION`] of the daemon.
    pub proto: u32,
    /// sup version of the daemon.
    pub daemon: String,
    /// The answer.
    pub response: Response,
    /// What the user should know whatever they asked, while it stands
    /// (state lost in a crash, say); the CLI prints each to stderr. Absent
    /// when empty, so an older CLI reads the envelope as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ResponseEnvelope {
    /// Wraps a response with this crate's versions.
    pub fn new(response: Response) -> Self {
        ResponseEnvelope {
            proto: crate::PROTOCOL_VERSION,
            daemon: crate::SUP_VERSION.to_string(),
            response,
            warnings: Vec::new(),
        }
    }
}

/// Lifecycle state of an app or instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Being spawned.
    Launching,
    /// Running.
    Online,
    /// Stop signal sent, waiting for the exit.
    Stopping,
    /// Not running, and not coming back on its own.
    Stopped,
    /// Exited; a restart is scheduled.
    WaitingRestart,
    /// Gave up: too many unstable restarts, or it cannot be spawned.
    Errored,
}

impl Status {
    /// Every status, in the order of a lifecycle.
    pub const ALL: [Status; 6] = [
        Status::Launching,
        Status::Online,
        Status::Stopping,
        Status::Stopped,
        Status::WaitingRestart,
        Status::Errored,
    ];

    /// The name shown by `list` and used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Launching => "launching",
            Status::Online => "online",
            Status::Stopping => "stopping",
            Status::Stopped => "stopped",
            Status::WaitingRestart => "waiting-restart",
            Status::Errored => "errored",
        }
    }
}

/// One running (or last run) copy of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    /// Its index (`SUP_INSTANCE`); a reload's new instance has the index
    /// of the one it replaces.
    #[serde(default)]
    pub index: u32,
    /// Pid of the instance's main process (null when none runs).
    pub pid: Option<u32>,
    /// Restarts of this instance.
    #[serde(default)]
    pub restarts: u32,
    /// It passed its readiness check (or runs without one).
    #[serde(default)]
    pub ready: bool,
    /// Lifecycle state.
    pub status: Status,
    /// Milliseconds since this instance started (null when none runs).
    pub uptime_ms: Option<u64>,
    /// CPU use of the instance's process group, in percent of one core.
    pub cpu: f64,
    /// Resident memory of the instance's process group, in bytes.
    pub memory: u64,
    /// CPU time its processes used so far, in seconds.
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Pid of its last main process, running or not (null before the first).
    #[serde(default)]
    pub last_pid: Option<u32>,
    /// What its Node preload did with the app's `listen()` (held sockets
    /// only): which socket it adopted, or that it listens elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<ListenNote>,
}

/// One app as `sup list` shows it: [`AppInfo`]'s table columns only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppRow {
    /// Stable numeric id.
    pub id: u32,
    /// Unique name.
    pub name: String,
    /// Pid of the main instance, null when none runs.
    pub pid: Option<u32>,
    /// Lifecycle state of the app.
    pub status: Status,
    /// Liveness health.
    pub health: HealthStatus,
    /// Consecutive failed liveness probes.
    pub health_failures: u32,
    /// An instance listens elsewhere than the socket sup holds.
    pub listen_mismatch: bool,
    /// Restarts since the app was added.
    pub restarts: u32,
    /// Milliseconds the main instance has been up, null when none runs.
    pub uptime_ms: Option<u64>,
    /// CPU use of every instance, percent of one core.
    pub cpu: f64,
    /// Resident memory of every instance, bytes.
    pub memory: u64,
    /// How many of its instances are ready.
    pub ready_instances: u32,
    /// Its instances.
    pub instances: Vec<InstanceRow>,
}

/// One instance as `sup list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Its index.
    pub index: u32,
    /// Pid of its main process, null when none runs.
    pub pid: Option<u32>,
    /// Lifecycle state.
    pub status: Status,
    /// Restarts of this instance.
    pub restarts: u32,
    /// Milliseconds since it started, null when none runs.
    pub uptime_ms: Option<u64>,
    /// CPU use, percent of one core.
    pub cpu: f64,
    /// Resident memory, bytes.
    pub memory: u64,
}

impl From<&AppInfo> for AppRow {
    fn from(a: &AppInfo) -> AppRow {
        AppRow {
            id: a.id,
            name: a.name.clone(),
            pid: a.pid,
            status: a.status,
            health: a.health.status,
            health_failures: a.health.failures,
            listen_mismatch: a
                .instances
                .iter()
                .any(|i| i.listen.as_ref().is_some_and(|l| l.mismatch)),
            restarts: a.restarts,
            uptime_ms: a.uptime_ms,
            cpu: a.cpu,
            memory: a.memory,
            ready_instances: a.ready_instances,
            instances: a.instances.iter().map(InstanceRow::from).collect(),
        }
    }
}

impl From<&InstanceInfo> for InstanceRow {
    fn from(i: &InstanceInfo) -> InstanceRow {
        InstanceRow {
            index: i.index,
            pid: i.pid,
            status: i.status,
            restarts: i.restarts,
            uptime_ms: i.uptime_ms,
            cpu: i.cpu,
            memory: i.memory,
        }
    }
}

/// What a Node instance's `listen()` did with the sockets sup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenNote {
    /// For a human: `listen(3000) adopts the held socket :3000 (fd 3)`.
    pub note: String,
    /// The app listens on an address sup does not hold: clients of the
    /// held one wait and are never served.
    #[serde(default)]
    pub mismatch: bool,
}

/// Something that happened to an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// App id.
    pub app_id: u32,
    /// App name.
    pub app: String,
    /// What happened.
    pub kind: EventKind,
    /// Details for a human (exit code, probe error, ...).
    pub detail: String,
}

/// Health of an app beside its lifecycle status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// `starting` (no result yet), `healthy`, `unhealthy`, or `unknown` (no probe).
    pub status: HealthStatus,
    /// Consecutive failed liveness probes.
    pub failures: u32,
    /// The last probe's outcome (`ok`, or why it failed).
    pub last_result: Option<String>,
    /// The last probe's duration, milliseconds.
    pub last_latency_ms: Option<u64>,
}

/// An app's log files and their health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogInfo {
    /// File holding stdout.
    pub out: String,
    /// File holding stderr (the same as `out` when combined).
    pub err: String,
    /// A third file holding both, beside separate `out` and `err` (PM2's
    /// `log_file` with `out_file` or `error_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined: Option<String>,
    /// Whether lines carry timestamps.
    pub timestamps: bool,
    /// Bytes of output dropped because the log could not be written.
    pub dropped_bytes: u64,
    /// Bytes written to its out and err files by this daemon.
    #[serde(default)]
    pub written_bytes: u64,
    /// The last write error, while writing fails.
    pub error: Option<String>,
    /// With one file per instance: each instance's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceLogs>,
}

/// The log files of one instance, when each has its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceLogs {
    /// The instance's index.
    pub index: u32,
    /// File holding its stdout.
    pub out: String,
    /// File holding its stderr.
    pub err: String,
}

/// What the daemon knows about one app. `list --json` prints an array of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Stable numeric id.
    pub id: u32,
    /// Unique name.
    pub name: String,
    /// Pid of the main instance, null when none runs.
    pub pid: Option<u32>,
    /// Lifecycle state of the app.
    pub status: Status,
    /// Restarts since the app was added (crashes and `sup restart`).
    pub restarts: u32,
    /// Consecutive restarts that happened before `min_uptime` was reached.
    pub unstable_restarts: u32,
    /// Whether the user stopped the app with `sup stop`.
    pub stopped_by_user: bool,
    /// Milliseconds the main instance has been up, null when none runs.
    pub uptime_ms: Option<u64>,
    /// CPU use of the app's process group, percent of one core.
    pub cpu: f64,
    /// Resident memory of the app's process group, bytes.
    pub memory: u64,
    /// How the last run ended (`exit code 1`, `signal SIGKILL`), if any.
    pub last_exit: Option<String>,
    /// The same as a number: the exit code, or 128 + the signal.
    #[serde(default)]
    pub last_exit_code: Option<i32>,
    /// Why the app is errored, or the last spawn failure.
    pub error: Option<String>,
    /// Why the app was last restarted (a crash, a failed probe, the user).
    #[serde(default)]
    pub restart_reason: Option<String>,
    /// Milliseconds until the scheduled restart, when waiting.
    pub restart_in_ms: Option<u64>,
    /// When this daemon took the app in (started, restored or handed
    /// over), milliseconds since the Unix epoch.
    #[serde(default)]
    pub added_at_ms: Option<i64>,
    /// The instances of the app.
    pub instances: Vec<InstanceInfo>,
    /// How many of its instances are ready (online).
    #[serde(default)]
    pub ready_instances: u32,
    /// Where its logs are, and whether writing them works.
    #[serde(default)]
    pub logs: LogInfo,
    /// Liveness health, beside `status`.
    #[serde(default)]
    pub health: HealthInfo,
    /// Sockets the daemon holds for the app (empty while it is stopped).
    #[serde(default)]
    pub listen: Vec<String>,
    /// Set by `describe` when the last resurrect had to fall back to the
    /// dump's backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_warning: Option<String>,
    /// Set by `describe`: what the recovery after a daemon crash could not
    /// read (live state set aside, apps lost), until the next `sup save`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state_warnings: Vec<String>,
    /// Why the app seems not to take the sockets sup holds for it
    /// (`describe` only; see the `socket-not-taken` event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_warning: Option<String>,
    /// How the daemon tells which processes are the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<Tracking>,
    /// The full spec; filled by `describe` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<AppSpec>,
}

/// How the daemon tells which processes are an app's, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    /// `cgroup` or `tags`.
    pub mode: crate::TrackingMode,
    /// Why the daemon fell back to tags (no cgroup2, not delegated,
    /// `SUP_CGROUPS=off`); null in cgroup mode.
    #[serde(default)]
    pub reason: Option<String>,
    /// The controllers enabled for the apps' cgroups (`cpu`, `memory`,
    /// `pids`); figures and limits that need a missing one degrade.
    #[serde(default)]
    pub controllers: Vec<String>,
    /// The directory that holds the apps' cgroups (cgroup mode), one
    /// `<app id>-<instance>-<n>` leaf per running instance.
    #[serde(default)]
    pub cgroup: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parsing() {
        assert_eq!(Target::parse("all"), Target::All);
        assert_eq!(Target::parse("7"), Target::Id(7));
        assert_eq!(Target::parse("api"), Target::Name("api".into()));
    }

    #[test]
    fn request_round_trip() {
        let env = RequestEnvelope::new(Request::Stop(Target::Name("api".into())));
        let text = serde_json::to_string(&env).unwrap();
        assert_eq!(serde_json::from_str::<RequestEnvelope>(&text).unwrap(), env);
        assert!(text.contains(r#""op":"stop""#), "{text}");
    }

    #[test]
    fn note_lines_carry_their_severity() {
        let line = Severity::Warning.line("dump.json is corrupt");
        assert_eq!(line, "warning: dump.json is corrupt");
        assert_eq!(
            Severity::of(&line),
            (Severity::Warning, "dump.json is corrupt")
        );
        assert_eq!(
            Severity::of("saved 2 apps"),
            (Severity::Info, "saved 2 apps")
        );
        assert_eq!(Severity::Info.line("saved 2 apps"), "saved 2 apps");
    }

    #[test]
    fn error_response_keeps_its_0_1_0_shape() {
        let text = serde_json::to_string(&Response::error(ErrorKind::NotFound, "no app")).unwrap();
        assert_eq!(
            text,
            r#"{"type":"error","data":{"kind":"not_found","message":"no app"}}"#
        );
    }

    #[test]
    fn warnings_are_absent_when_empty_and_default_when_missing() {
        let plain = serde_json::to_string(&ResponseEnvelope::new(Response::Ok)).unwrap();
        assert!(!plain.contains("warnings"), "{plain}");
        let old = r#"{"proto":1,"daemon":"0.1.0","response":{"type":"ok"}}"#;
        let env: ResponseEnvelope = serde_json::from_str(old).unwrap();
        assert!(env.warnings.is_empty());
        let mut warned = ResponseEnvelope::new(Response::Ok);
        warned.warnings.push("state lost".into());
        let text = serde_json::to_string(&warned).unwrap();
        assert_eq!(
            serde_json::from_str::<ResponseEnvelope>(&text).unwrap(),
            warned
        );
    }

    #[test]
    fn status_names_are_kebab_case() {
        let text = serde_json::to_string(&Status::WaitingRestart).unwrap();
        assert_eq!(text, r#""waiting-restart""#);
        assert_eq!(Status::WaitingRestart.as_str(), "waiting-restart");
    }
}
