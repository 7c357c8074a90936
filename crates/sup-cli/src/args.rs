//! Command-line syntax (clap), and parsers for the values it takes.

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::fmt;
use std::time::Duration;
use sup_proto::spec::*;
use sup_proto::Scale;
use sup_proto::{RestartPolicy, Signal};

/// sup: keeps your apps running, restarts them when they die, and tells you.
#[derive(Debug, Parser)]
#[command(name = "sup", version, propagate_version = true)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: TopCommand,
    /// Longest wait for the daemon's answer (default: 5s; for commands that wait for apps, their longest kill and ready timeouts plus 5s).
    #[arg(long, global = true, value_parser = parse_duration, allow_hyphen_values = true, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

impl Cli {
    /// Parses the process's arguments (a usage error exits, as clap does),
    /// and notes which spec flags a `sup start` line gave.
    pub fn parse_noting_flags() -> Cli {
        let matches = Cli::command().get_matches();
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        if let (TopCommand::Cli(Command::Start(start)), Some(("start", sub))) =
            (&mut cli.command, matches.subcommand())
        {
            start.given = given_spec_flags(sub);
        }
        cli
    }
}

/// Flags of `sup start` that are not part of the new app's spec.
const NOT_SPEC: [&str; 3] = ["script", "wait", "timeout"];

/// The spec flags typed on a `sup start` line (`--env`, ...), and
/// "arguments after --" when there were some.
fn given_spec_flags(matches: &ArgMatches) -> Vec<String> {
    let command = Cli::command();
    let Some(start) = command.find_subcommand("start") else {
        return Vec::new();
    };
    start
        .get_arguments()
        .filter(|arg| !NOT_SPEC.contains(&arg.get_id().as_str()))
        .filter(|arg| matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|arg| match arg.get_long() {
            Some(long) => format!("--{long}"),
            None => "arguments after --".to_string(),
        })
        .collect()
}

/// `sup daemon`, which the binary runs, or a command of the CLI's.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// A command of the CLI's.
    #[command(flatten)]
    Cli(Command),
    /// Run the daemon in the foreground (for systemd and containers).
    Daemon(DaemonArgs),
    /// Run apps in the foreground, as a container's entrypoint (PID 1): those of a file, or one app with `start`'s flags. Their logs go to stdout and stderr; `sup list` and the other commands work from a second shell.
    Run(Box<RunArgs>),
}

/// `sup run`: `start`'s flags, and how the run behaves. Each has a `SUP_*`
/// variable too, for container images.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// What to run, as for `sup start`.
    #[command(flatten)]
    pub start: StartArgs,
    /// Write each log line as one JSON object.
    #[arg(long, env = "SUP_JSON")]
    pub json: bool,
    /// Also keep the usual log files under SUP_HOME (off: a container's disk does not fill).
    #[arg(long, env = "SUP_LOG_FILES")]
    pub log_files: bool,
    /// End as soon as an app turns errored, with its exit code, so that the orchestrator restarts the container.
    #[arg(long, env = "SUP_EXIT_ON_ERROR")]
    pub exit_on_error: bool,
    /// Serve /livez and /readyz here (`:9000` is every address), for Kubernetes' probes.
    #[arg(long, env = "SUP_HEALTH_LISTEN", value_name = "ADDR")]
    pub health_listen: Option<String>,
}

/// Every `sup` command the CLI runs itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an app (a script, an executable or a quoted command line), or a known app by name or id.
    Start(Box<StartArgs>),
    /// Stop apps (or a config file's apps); they stay stopped until started again.
    Stop(AppsArgs),
    /// Restart apps; with a config file, start its apps with the file's specs.
    Restart(RestartArgs),
    /// Stop apps (or a config file's apps) and forget them.
    #[command(visible_aliases = ["del", "rm"])]
    Delete(AppsArgs),
    /// List apps.
    #[command(visible_aliases = ["ls", "status"])]
    List(ListArgs),
    /// Show everything known about an app.
    #[command(visible_aliases = ["show", "info"])]
    Describe(DescribeArgs),
    /// Print the pid of an app's main process (nothing when it is not running).
    Pid(TargetsArg),
    /// Is the daemon up? Prints its version and pid.
    Ping,
    /// Stop every app gracefully, then the daemon.
    Kill,
    /// Freeze the current app list (specs, and who was stopped by the user).
    Save(SaveArgs),
    /// Bring back the saved app list.
    Resurrect,
    /// Install and enable a systemd unit that runs the daemon at boot and resurrects the saved list.
    Startup(StartupArgs),
    /// Disable and remove the unit `sup startup` installed.
    Unstartup(StartupArgs),
    /// Replace the running daemon with this sup binary; apps keep running.
    Update,
    /// Show apps' logs: the last lines, then follow.
    Logs(LogsArgs),
    /// A full-screen view of the apps, their figures and the selected app's live logs; keys restart, stop, start and reload it (PM2's monit).
    Monit,
    /// Empty the log files of one app, or of all.
    Flush(FlushArgs),
    /// Restart counters back to 0, for apps or `all` (PM2's reset).
    Reset(TargetsArg),
    /// Print the environment an app (or `app:N`) runs with: declared values, inherited names, what sup adds.
    Env(EnvArgs),
    /// Print a shell's completion script: `sup completions bash > /etc/bash_completion.d/sup`.
    Completions(CompletionsArgs),
    /// Write a commented sup.toml here to start from (`--pm2`: an ecosystem.config.js).
    Init(InitArgs),
    /// Serve /livez, /readyz and Prometheus' /metrics: `sup web --listen 127.0.0.1:9615` (beyond loopback /metrics needs a token, shown once).
    Web(WebArgs),
    /// Zero-downtime restart: start a new instance on the held sockets, stop the old one once the new is ready. With a config file: start new apps, reload changed ones, leave the rest.
    Reload(ReloadArgs),
    /// Print the running apps as a sup.toml (declared env only): `sup export > sup.toml`.
    Export,
    /// Show what happened: exits, restarts, health changes, reloads.
    Events(EventsArgs),
    /// Change how many instances an app runs: `sup scale api 8`, `+2` or `-1`.
    Scale(ScaleArgs),
    /// Send a signal to the main process of every instance of apps (or `api:N` for one).
    Signal(SignalArgs),
    /// Start PM2's saved apps under sup: `sup import pm2` reads $PM2_HOME/dump.pm2 (or ~/.pm2), PM2 need not run.
    Import(ImportArgs),
}

/// `sup import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Where from: `pm2` (the list `pm2 save` wrote).
    pub from: ImportFrom,
    /// Print the apps as a sup.toml, and what is not carried over; start nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `sup import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFrom {
    /// PM2's `dump.pm2`.
    Pm2,
}

/// `sup scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// App name or id.
    pub target: String,
    /// The new count (`8`), or a change (`+2`, `-1`).
    #[arg(allow_hyphen_values = true, value_parser = parse_scale)]
    pub count: Scale,
}

/// `sup signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The signal: `SIGUSR2`, `USR2` or a number.
    pub signal: Signal,
    /// App names, ids, `all`, or `app:N` for one instance.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// `--instances` as given: resolved against the CPU count at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// Exactly this many.
    Count(u32),
    /// One per CPU, minus this many (`max` is 0 fewer).
    Fewer(u32),
}

impl Instances {
    /// The count on a machine with `cpus()` CPUs: at least one. Only
    /// `max` and its kin ask how many there are (a few file reads).
    pub fn resolve(self, cpus: impl FnOnce() -> u32) -> u32 {
        match self {
            Instances::Count(n) => n,
            Instances::Fewer(k) => cpus().saturating_sub(k).max(1),
        }
    }
}

pub(crate) fn parse_instances(text: &str) -> Result<Instances, String> {
    let max = sup_proto::spec::MAX_INSTANCES;
    match text {
        "max" => Ok(Instances::Fewer(0)),
        _ => match text.parse::<i64>() {
            // `0`, and `-0` as PM2 reads it: one per CPU.
            Ok(0) => Ok(Instances::Fewer(0)),
            Ok(n) if n < 0 => Ok(Instances::Fewer(n.unsigned_abs().min(u64::from(max)) as u32)),
            Ok(n) if n <= i64::from(max) => Ok(Instances::Count(n as u32)),
            Ok(n) => Err(format!("{n} instances is more than the {max} an app may have")),
            Err(_) => Err(format!(
                "invalid instance count {text:?}: use a number, `max` (one per CPU) or -N (N fewer than the CPUs)"
            )),
        },
    }
}

fn parse_scale(text: &str) -> Result<Scale, String> {
    let bad = || format!("invalid count {text:?}: use a number (8), or a change (+2, -1)");
    if let Some(rest) = text.strip_prefix('+') {
        return rest.parse::<i32>().map(Scale::By).map_err(|_| bad());
    }
    if text.starts_with('-') {
        return text.parse::<i32>().map(Scale::By).map_err(|_| bad());
    }
    match text.parse::<u32>() {
        Ok(0) => Err("an app runs at least one instance; `sup stop` stops it".into()),
        Ok(n) => Ok(Scale::To(n)),
        Err(_) => Err(bad()),
    }
}

/// `sup list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show names in full, however wide the table gets.
    #[arg(long, short = 'w')]
    pub wide: bool,
}

/// One or more app names, numeric ids, or `all`.
#[derive(Debug, Args)]
pub struct TargetsArg {
    /// App names, numeric ids, or `all`.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// Apps by target, or the apps of a config file.
#[derive(Debug, Args)]
pub struct AppsArgs {
    /// App names, numeric ids, `all`, or a config file (sup.toml, ecosystem.config.js, ...).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// With a config file: only these apps (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// With a PM2 file: the profile env_NAME laid over env.
    #[arg(long = "env", value_name = "NAME")]
    pub profile: Option<String>,
}

/// `sup restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The apps.
    #[command(flatten)]
    pub apps: AppsArgs,
    /// Give the apps the environment of this shell (their declared env stays on top).
    #[arg(long)]
    pub update_env: bool,
}

/// `sup reload`.
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The apps.
    #[command(flatten)]
    pub apps: AppsArgs,
    /// Give the apps the environment of this shell (their declared env stays on top).
    #[arg(long)]
    pub update_env: bool,
    /// With a config file: delete the apps started from it that are no longer in it.
    #[arg(long)]
    pub prune: bool,
}

/// `sup describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// App names, numeric ids, or `all`.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sup start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Script (`app.js`, `app.py`, ...), executable, "quoted command line", or the name or id of a known app.
    #[arg(required_unless_present = "watch")]
    pub script: Option<String>,
    /// Arguments passed to the app (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
    /// App name (default: the script's file name without extension).
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// Restart policy.
    #[arg(long, value_parser = parse_policy, default_value_t = RestartPolicy::default())]
    pub restart: RestartPolicy,
    /// Delay before the first restart after a crash (e.g. 500ms, 2s).
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_RESTART_DELAY_MS))]
    pub restart_delay: Millis,
    /// Cap of the exponential backoff between consecutive unstable restarts.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_BACKOFF_MAX_MS))]
    pub backoff_max: Millis,
    /// Uptime after which a run counts as stable and the backoff resets.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_MIN_UPTIME_MS))]
    pub min_uptime: Millis,
    /// Unstable restarts allowed before the app turns errored (default: no limit).
    #[arg(long)]
    pub max_restarts: Option<u32>,
    /// Instances to run: a number, `max` (one per CPU, as does 0), or `-N`
    /// (N fewer than the CPUs, at least one). Each gets its index in
    /// SUP_INSTANCE and NODE_APP_INSTANCE.
    #[arg(long, short = 'i', allow_hyphen_values = true, value_parser = parse_instances, default_value = "1")]
    pub instances: Instances,
    /// Also put the instance index in this variable (PM2's instance_var).
    #[arg(long, value_name = "VAR")]
    pub instance_var: Option<String>,
    /// Signal sent to the app's process group to stop it.
    #[arg(long, default_value_t = DEFAULT_STOP_SIGNAL)]
    pub stop_signal: Signal,
    /// Time between the stop signal and SIGKILL.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_KILL_TIMEOUT_MS))]
    pub kill_timeout: Millis,
    /// A variable (`KEY=VALUE`), or with a PM2 file the profile env_NAME laid over env (repeatable).
    #[arg(long = "env", value_parser = parse_env, value_name = "KEY=VALUE|NAME")]
    pub env: Vec<EnvArg>,
    /// Variables from a .env file (KEY=VALUE lines); --env wins over them.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<String>,
    /// With a config file: only these apps (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// With a config file: give apps already running the environment of this shell.
    #[arg(long)]
    pub update_env: bool,
    /// Working directory (default: the current one).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Interpreter to run the script with (default: by extension).
    #[arg(long)]
    pub interpreter: Option<String>,
    /// File for stdout (default: SUP_HOME/logs/<name>-out.log).
    #[arg(long, short = 'o', visible_alias = "out-file", value_name = "FILE")]
    pub output: Option<String>,
    /// File for stderr (default: SUP_HOME/logs/<name>-err.log).
    #[arg(long, short = 'e', visible_alias = "error-file", value_name = "FILE")]
    pub error: Option<String>,
    /// One file for both stdout and stderr.
    #[arg(long, short = 'l', visible_alias = "log-file", value_name = "FILE")]
    pub log: Option<String>,
    /// Log lines as written (`text`), or one JSON object each (`json`: app, instance, stream, time, message) for log shippers.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
    /// Gzip rotated log files (`<file>.1.gz`).
    #[arg(long)]
    pub log_compress: bool,
    /// Delete rotated log files older than this many days.
    #[arg(long, value_name = "DAYS")]
    pub log_keep_days: Option<u32>,
    /// Write each line's time in this format, PM2's tokens (`YYYY-MM-DD HH:mm:ss Z`) instead of ISO 8601.
    #[arg(long, value_name = "FORMAT")]
    pub log_date_format: Option<String>,
    /// Prefix each log line with its arrival time (on by default; `--time false` turns it off).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_value_t = DEFAULT_LOG_TIMESTAMPS, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub time: bool,
    /// Same as `--time false`.
    #[arg(long, conflicts_with = "time")]
    pub no_time: bool,
    /// Rotate a log file once it passes this size (e.g. 10M, 512K; 0: never).
    #[arg(long, allow_hyphen_values = true, default_value_t = Bytes(DEFAULT_LOG_MAX_SIZE))]
    pub log_max_size: Bytes,
    /// Rotated log files kept (`<file>.1` is the newest).
    #[arg(long, default_value_t = DEFAULT_LOG_KEEP)]
    pub log_keep: u32,
    /// One log file per instance (`<name>-out-<N>.log`, PM2's default);
    /// without it the instances share the app's files, each line tagged `[N]`.
    #[arg(long, conflicts_with = "merge_logs")]
    pub split_logs: bool,
    /// The instances share the app's log files (the default; PM2's flag).
    #[arg(long)]
    pub merge_logs: bool,
    /// Socket the daemon binds and holds for the app, passed as fd 3.. (host:port, [v6]:port, :port for every address, or a path; repeatable).
    #[arg(long, value_parser = parse_listen, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Liveness probe: HTTP GET of this URL (2xx/3xx passes).
    #[arg(long, value_parser = parse_http_url, value_name = "URL", group = "liveness")]
    pub health: Option<String>,
    /// Liveness probe: a TCP connection to host:port.
    #[arg(long, value_parser = parse_host_port, value_name = "ADDR", group = "liveness")]
    pub health_tcp: Option<String>,
    /// Liveness probe: a command that exits 0.
    #[arg(long, value_name = "CMD", group = "liveness")]
    pub health_cmd: Option<String>,
    /// Time between liveness probes.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_HEALTH_INTERVAL_MS))]
    pub health_interval: Millis,
    /// Time a probe may take.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_HEALTH_TIMEOUT_MS))]
    pub health_timeout: Millis,
    /// Consecutive failed probes that make the app unhealthy (and restart it).
    #[arg(long, default_value_t = DEFAULT_HEALTH_RETRIES, value_parser = clap::value_parser!(u32).range(1..))]
    pub health_retries: u32,
    /// Failures during this time after a start do not count.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_HEALTH_START_PERIOD_MS))]
    pub health_start_period: Millis,
    /// Readiness: the instance is online once GET of this URL passes.
    #[arg(long, value_parser = parse_http_url, value_name = "URL", group = "readiness")]
    pub ready_http: Option<String>,
    /// Readiness: once a TCP connection to host:port opens.
    #[arg(long, value_parser = parse_host_port, value_name = "ADDR", group = "readiness")]
    pub ready_tcp: Option<String>,
    /// Readiness: once this command exits 0.
    #[arg(long, value_name = "CMD", group = "readiness")]
    pub ready_cmd: Option<String>,
    /// Readiness: once the app sends READY=1 to its NOTIFY_SOCKET (sd_notify).
    #[arg(long, group = "readiness")]
    pub ready_notify: bool,
    /// Readiness: once the app calls process.send('ready') (PM2's wait_ready; Node's IPC channel).
    #[arg(long, group = "readiness")]
    pub wait_ready: bool,
    /// Time an instance has to become ready.
    #[arg(long, allow_hyphen_values = true, default_value_t = Millis(DEFAULT_READY_TIMEOUT_MS))]
    pub ready_timeout: Millis,
    /// Return once the app is online (ready), not just started.
    #[arg(long)]
    pub wait: bool,
    /// Command run for each event of the app (event as JSON on stdin and in $SUP_EVENT).
    #[arg(long, value_name = "CMD")]
    pub on_event: Option<String>,
    /// Webhook told when the app errors, fails its health checks, is restarted for memory, crash-loops or recovers (`[json+|ntfy+]http[s]://...`; repeat for more).
    #[arg(long, value_name = "URL")]
    pub notify: Vec<String>,
    /// The spec flags given on the command line (set by [`Cli::parse_noting_flags`]).
    #[arg(skip)]
    pub given: Vec<String>,
    /// Restart an instance whose memory (resident, with its children) passes this size (e.g. 300M).
    #[arg(long, value_parser = parse_limit, value_name = "SIZE")]
    pub max_memory: Option<u64>,
    /// Hard memory limit per instance, enforced by the kernel (cgroup memory.max; e.g. 512M).
    #[arg(long, value_parser = parse_limit, value_name = "SIZE")]
    pub memory_max: Option<u64>,
    /// CPU limit per instance, percent of one core (cgroup cpu.max; 150 = one and a half cores).
    #[arg(long, value_parser = parse_percent, value_name = "PERCENT")]
    pub cpu_quota: Option<u32>,
    /// Restart the app on this cron schedule ("0 3 * * *"; 6 fields: seconds first).
    #[arg(long, value_parser = parse_cron, value_name = "EXPR")]
    pub cron_restart: Option<String>,
    /// Restart the app when a file under PATH changes (repeatable; alone: the app's cwd).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "", action = clap::ArgAction::Append)]
    pub watch: Vec<String>,
    /// Changes under paths matching this glob don't restart (repeatable; node_modules, .git and the app's logs never do).
    #[arg(long, value_name = "GLOB")]
    pub ignore_watch: Vec<String>,
    /// A burst of changes restarts once, this long after the first; never more often.
    #[arg(long, default_value_t = Millis(DEFAULT_WATCH_DELAY_MS))]
    pub watch_delay: Millis,
    /// Exits with these codes are not restarted (e.g. 0,3).
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        value_name = "CODES",
        value_parser = clap::value_parser!(i32).range(0..=255)
    )]
    pub stop_exit_codes: Vec<i32>,
    /// Run the app as this user (a name or uid; the daemon must run as root).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Run the app with this group instead of the user's primary group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

impl StartArgs {
    /// The script. `--watch` takes an optional path, so in `sup start
    /// --watch app.js` clap reads app.js as the path: then the last path
    /// given is the script and that `--watch` stood alone, for the cwd.
    pub fn take_script(&mut self) -> Option<String> {
        if let Some(script) = self.script.take() {
            return Some(script);
        }
        let last = self.watch.last_mut()?;
        Some(std::mem::take(last)).filter(|s| !s.is_empty())
    }
}

/// `--max-memory`: a size above zero.
fn parse_limit(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!(
            "{text:?}: the limit must be above zero (e.g. 300M)"
        )),
        n => Ok(n),
    }
}

/// `--cpu-quota`: a whole percent above zero, `%` allowed.
fn parse_percent(text: &str) -> Result<u32, String> {
    match text.trim().trim_end_matches('%').parse::<u32>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: expected a percent of one core from 1 to 100000 (e.g. 50 or 150%)"
        )),
    }
}

/// `--cron-restart`: checked here, so a bad expression never reaches the daemon.
fn parse_cron(text: &str) -> Result<String, String> {
    sup_proto::schedule::Schedule::parse(text)
        .map(|_| text.trim().to_string())
        .map_err(|e| e.to_string())
}

/// `sup daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Bring back the saved apps at start (what the systemd unit does).
    #[arg(long)]
    pub resurrect: bool,
    /// Internal: take over from a daemon that `sup update` replaced.
    #[arg(long, hide = true, value_name = "FILE")]
    pub handover: Option<String>,
    /// Internal: print the handover format this binary reads, and exit.
    #[arg(long, hide = true)]
    pub handover_version: bool,
}

/// `sup save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Save even an empty app list over the current dump.
    #[arg(long)]
    pub force: bool,
}

/// `sup startup` and `sup unstartup`.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// Init system (only systemd is supported).
    pub init: Option<String>,
    /// A systemd user unit (~/.config/systemd/user) instead of a system unit.
    #[arg(long)]
    pub user: bool,
    /// Print the unit instead of installing it.
    #[arg(long)]
    pub print: bool,
    /// The user the system unit runs as (PM2's -u).
    #[arg(short = 'u', long = "username", value_name = "USER")]
    pub username: Option<String>,
    /// That user's home directory (PM2's --hp).
    #[arg(long = "hp", value_name = "HOME")]
    pub hp: Option<String>,
}

/// `sup events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// App name or id (default: all apps).
    pub target: Option<String>,
    /// Keep printing new events as they happen.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// One JSON object per event.
    #[arg(long)]
    pub json: bool,
}

/// Accepts `host:port` with an IP host, `[v6]:port`, `:port` (every
/// address) or a Unix socket path.
fn parse_listen(text: &str) -> Result<String, String> {
    sup_proto::spec::ListenAddr::parse(text).map(|_| text.to_string())
}

/// Accepts `host:port` (a name or an IP).
fn parse_host_port(text: &str) -> Result<String, String> {
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_string())
        }
        _ => Err(format!("{text:?} is not host:port")),
    }
}

/// Accepts `http://host[:port][/path]`.
fn parse_http_url(text: &str) -> Result<String, String> {
    if text.starts_with("https://") {
        return Err("https:// probes are not supported; probe the app's plain http:// port".into());
    }
    let rest = text
        .strip_prefix("http://")
        .ok_or_else(|| format!("{text:?} is not an http:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let port_ok = authority
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_ok());
    if authority.is_empty() || !port_ok {
        return Err(format!("{text:?} is not an http://host[:port]/path URL"));
    }
    Ok(text.to_string())
}

/// `sup logs`.
#[derive(Debug, Default, Args)]
pub struct LogsArgs {
    /// App name, numeric id, or `all` (default: all).
    pub target: Option<String>,
    /// Lines to show per app before following (default 15).
    #[arg(long, short = 'n')]
    pub lines: Option<usize>,
    /// Print and exit instead of following.
    #[arg(long)]
    pub nostream: bool,
    /// Only stderr.
    #[arg(long, conflicts_with = "out")]
    pub err: bool,
    /// Only stdout.
    #[arg(long)]
    pub out: bool,
    /// One JSON object per line.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Lines as stored, without the app prefix.
    #[arg(long)]
    pub raw: bool,
    /// Only lines newer than this (e.g. 10m, 2h).
    #[arg(long, value_parser = parse_duration, allow_hyphen_values = true)]
    pub since: Option<Duration>,
}

/// `sup env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The app, or one instance (`api:1`).
    pub target: String,
}

/// How log files hold lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// As the app wrote them, after the timestamp.
    Text,
    /// One JSON object per line.
    Json,
}

/// `sup init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write PM2's ecosystem.config.js instead.
    #[arg(long)]
    pub pm2: bool,
}

/// `sup web`.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Where to listen: `127.0.0.1:9615`, or `:9615` for every address.
    #[arg(long, value_name = "ADDR", required_unless_present = "off")]
    pub listen: Option<String>,
    /// Stop listening.
    #[arg(long, conflicts_with = "listen")]
    pub off: bool,
}

/// `sup completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh or fish.
    pub shell: clap_complete::Shell,
}

/// `sup flush`.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// App names, numeric ids, or `all` (default: all).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

/// What a number with a unit stands for, to name it in errors.
struct Quantity {
    /// `duration`, `size`.
    kind: &'static str,
    /// Valid values to show, `500ms, 5s or 1m`.
    examples: &'static str,
}

const DURATION: Quantity = Quantity {
    kind: "duration",
    examples: "500ms, 5s or 1m",
};

const SIZE: Quantity = Quantity {
    kind: "size",
    examples: "512K, 10M or 1G",
};

/// Splits `250ms` into 250 and `ms`. Negative and fractional values get an
/// error of their own: "not a duration" would puzzle whoever typed `-1s`.
fn number_and_unit<'a>(text: &'a str, q: &Quantity) -> Result<(u64, &'a str), String> {
    let text = text.trim();
    let (kind, examples) = (q.kind, q.examples);
    if text.starts_with('-') {
        return Err(format!(
            "invalid {kind} {text:?}: must not be negative; use one like {examples}"
        ));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if !digits.is_empty() && unit.starts_with(['.', ',']) {
        return Err(format!(
            "invalid {kind} {text:?}: use whole numbers and a smaller unit, like {examples}"
        ));
    }
    let value = digits
        .parse()
        .map_err(|_| format!("invalid {kind} {text:?}: use one like {examples}"))?;
    Ok((value, unit))
}

/// Parses `10M`, `512K`, `1G` or a number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (value, unit) = number_and_unit(text, &SIZE)?;
    let factor: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (use K, M or G)")),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A duration flag in milliseconds, as the spec holds it. It shows itself
/// in its largest exact unit, so `--help` prints the spec's defaults as
/// `5s`, and that text parses back to the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub u64);

impl std::str::FromStr for Millis {
    type Err = String;

    fn from_str(text: &str) -> Result<Millis, String> {
        let ms = parse_duration(text)?.as_millis();
        u64::try_from(ms)
            .map(Millis)
            .map_err(|_| format!("{text:?} is too long"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        exact(
            f,
            self.0,
            &[("h", 3_600_000), ("m", 60_000), ("s", 1_000)],
            "ms",
        )
    }
}

/// A size flag in bytes, shown (like [`Millis`]) in its largest exact unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = String;

    fn from_str(text: &str) -> Result<Bytes, String> {
        parse_size(text).map(Bytes)
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        exact(
            f,
            self.0,
            &[("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)],
            "",
        )
    }
}

/// Writes `value` in the first of `units` (largest first) that divides it,
/// else with the `base` unit.
fn exact(f: &mut fmt::Formatter<'_>, value: u64, units: &[(&str, u64)], base: &str) -> fmt::Result {
    match units
        .iter()
        .find(|&&(_, size)| value != 0 && value.is_multiple_of(size))
    {
        Some((unit, size)) => write!(f, "{}{unit}", value / size),
        None => write!(f, "{value}{base}"),
    }
}

/// Parses `100ms`, `5s`, `2m`, `1h`; a bare number is milliseconds (PM2's unit).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (value, unit) = number_and_unit(text, &DURATION)?;
    let ms = match unit {
        "" | "ms" => Some(value),
        "s" => value.checked_mul(1_000),
        "m" => value.checked_mul(60_000),
        "h" => value.checked_mul(3_600_000),
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long"))
}

fn parse_policy(text: &str) -> Result<RestartPolicy, String> {
    match text {
        "always" => Ok(RestartPolicy::Always),
        "on-failure" => Ok(RestartPolicy::OnFailure),
        "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
        "no" | "never" => Ok(RestartPolicy::No),
        _ => Err("expected always, on-failure, unless-stopped or no".into()),
    }
}

/// `--env`'s value: a variable, or a profile of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvArg {
    /// `KEY=VALUE`.
    Var(String, String),
    /// `NAME`: the profile `env_NAME`.
    Profile(String),
}

fn parse_env(text: &str) -> Result<EnvArg, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => {
            Ok(EnvArg::Var(key.to_string(), value.to_string()))
        }
        None if !text.is_empty()
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) =>
        {
            Ok(EnvArg::Profile(text.to_string()))
        }
        _ => Err(format!(
            "expected KEY=VALUE or a profile NAME, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_instances, parse_scale, Instances};
    use sup_proto::Scale;

    #[test]
    fn instance_counts_as_pm2_spells_them() {
        assert_eq!(parse_instances("4"), Ok(Instances::Count(4)));
        assert_eq!(parse_instances("max").map(|i| i.resolve(|| 8)), Ok(8));
        assert_eq!(parse_instances("0").map(|i| i.resolve(|| 8)), Ok(8));
        assert_eq!(parse_instances("-0").map(|i| i.resolve(|| 8)), Ok(8));
        assert_eq!(parse_instances("-1").map(|i| i.resolve(|| 8)), Ok(7));
        assert_eq!(parse_instances("-1").map(|i| i.resolve(|| 1)), Ok(1));
        assert!(parse_instances("1025").unwrap_err().contains("1024"));
        assert!(parse_instances("many").is_err());
    }

    #[test]
    fn scale_takes_a_count_or_a_change() {
        assert_eq!(parse_scale("8"), Ok(Scale::To(8)));
        assert_eq!(parse_scale("+2"), Ok(Scale::By(2)));
        assert_eq!(parse_scale("-1"), Ok(Scale::By(-1)));
        assert!(parse_scale("0").unwrap_err().contains("at least one"));
        assert!(parse_scale("x").is_err());
    }

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn negative_and_fractional_values_say_what_is_wrong() {
        let err = parse_duration("-1s").unwrap_err();
        assert!(
            err.contains("must not be negative") && err.contains("5s"),
            "{err}"
        );
        let err = parse_duration("1.5s").unwrap_err();
        assert!(err.contains("whole numbers"), "{err}");
        let err = parse_size("-10M").unwrap_err();
        assert!(
            err.contains("must not be negative") && err.contains("10M"),
            "{err}"
        );
    }

    #[test]
    fn a_negative_duration_reaches_the_parser() {
        use clap::Parser;
        let err = Cli::try_parse_from(["sup", "start", "x", "--health-interval", "-1s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must not be negative"), "{err}");
        assert!(!err.contains("unexpected argument"), "{err}");
    }

    #[test]
    fn flag_values_show_as_they_parse() {
        for text in ["0ms", "250ms", "1500ms", "5s", "90s", "2m", "1h"] {
            assert_eq!(text.parse::<Millis>().unwrap().to_string(), text);
        }
        assert_eq!(Millis(DEFAULT_KILL_TIMEOUT_MS).to_string(), "5s");
        for text in ["0", "100", "512K", "10M", "1G"] {
            assert_eq!(text.parse::<Bytes>().unwrap().to_string(), text);
        }
        assert_eq!(Bytes(DEFAULT_LOG_MAX_SIZE).to_string(), "10M");
    }

    #[test]
    fn start_flags_default_to_the_spec_defaults() {
        let cli = Cli::try_parse_from(["sup", "start", "app.js"]).unwrap();
        let TopCommand::Cli(Command::Start(args)) = cli.command else {
            panic!("parsed `start` as another command");
        };
        let spec = sup_proto::AppSpec::default();
        let health = &spec.health;
        assert_eq!(args.restart, spec.restart);
        assert_eq!(args.restart_delay.0, spec.restart_delay_ms);
        assert_eq!(args.backoff_max.0, spec.backoff_max_ms);
        assert_eq!(args.min_uptime.0, spec.min_uptime_ms);
        assert_eq!(args.max_restarts, spec.max_restarts);
        assert_eq!(args.stop_signal, spec.stop_signal);
        assert_eq!(args.kill_timeout.0, spec.kill_timeout_ms);
        assert_eq!(args.time, spec.logs.timestamps);
        assert_eq!(args.log_max_size.0, spec.logs.max_size);
        assert_eq!(args.log_keep, spec.logs.keep);
        assert_eq!(args.health_interval.0, health.interval_ms);
        assert_eq!(args.health_timeout.0, health.timeout_ms);
        assert_eq!(args.health_retries, health.retries);
        assert_eq!(args.health_start_period.0, health.start_period_ms);
        assert_eq!(args.ready_timeout.0, health.ready_timeout_ms);
        assert_eq!(args.watch_delay.0, spec.watch_delay_ms);
    }

    fn start_args(argv: &[&str]) -> Result<StartArgs, String> {
        use clap::Parser;
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        match cli.command {
            TopCommand::Cli(Command::Start(args)) => Ok(*args),
            _ => panic!("parsed `start` as another command"),
        }
    }

    #[test]
    fn watch_never_swallows_the_script() {
        let cases: [(&[&str], &str, &[&str]); 4] = [
            (&["sup", "start", "app.js", "--watch"], "app.js", &[""]),
            (&["sup", "start", "--watch", "app.js"], "app.js", &[""]),
            (
                &["sup", "start", "--watch", "src", "app.js"],
                "app.js",
                &["src"],
            ),
            (
                &["sup", "start", "--watch", "src", "--watch", "lib", "app.js"],
                "app.js",
                &["src", "lib"],
            ),
        ];
        for (argv, script, watch) in cases {
            let mut args = start_args(argv).unwrap();
            assert_eq!(args.take_script().as_deref(), Some(script), "{argv:?}");
            assert_eq!(args.watch, watch, "{argv:?}");
        }
        let mut alone = start_args(&["sup", "start", "--watch"]).unwrap();
        assert_eq!(alone.take_script(), None);
    }

    #[test]
    fn trigger_flags_are_checked_here() {
        let args = start_args(&[
            "sup",
            "start",
            "w.py",
            "--max-memory",
            "300M",
            "--cron-restart",
            "0 3 * * *",
            "--stop-exit-codes",
            "0,3",
            "--watch-delay",
            "2s",
        ])
        .unwrap();
        assert_eq!(args.max_memory, Some(300 << 20));
        assert_eq!(args.cron_restart.as_deref(), Some("0 3 * * *"));
        assert_eq!(args.stop_exit_codes, [0, 3]);
        assert_eq!(args.watch_delay.0, 2_000);
        let err =
            start_args(&["sup", "start", "w.py", "--cron-restart", "0 25 * * *"]).unwrap_err();
        assert!(
            err.contains("invalid cron expression \"0 25 * * *\""),
            "{err}"
        );
        let err = start_args(&["sup", "start", "w.py", "--max-memory", "300X"]).unwrap_err();
        assert!(err.contains("unknown unit"), "{err}");
        let err = start_args(&["sup", "start", "w.py", "--max-memory", "0"]).unwrap_err();
        assert!(err.contains("above zero"), "{err}");
        assert!(start_args(&["sup", "start", "w.py", "--stop-exit-codes", "a"]).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("10X").is_err());
        assert!(parse_size("big").is_err());
    }

    #[test]
    fn addresses_and_urls() {
        assert!(parse_listen("127.0.0.1:3000").is_ok());
        assert!(parse_listen("[::1]:3000").is_ok());
        assert!(parse_listen("/run/app.sock").is_ok());
        assert!(parse_listen("localhost:3000").is_err());
        assert!(parse_listen("3000").is_err());
        assert!(parse_listen(":3000").is_ok());
        assert!(parse_listen(":0").is_err());
        assert!(parse_listen(":http").is_err());
        assert!(parse_http_url("http://127.0.0.1:3000/health").is_ok());
        assert!(parse_http_url("http://localhost/health").is_ok());
        assert!(parse_http_url("https://x/").is_err());
        assert!(parse_http_url("ftp://x/").is_err());
        assert!(parse_http_url("http://x:port/").is_err());
        assert!(parse_host_port("db.local:5432").is_ok());
        assert!(parse_host_port("db.local").is_err());
    }

    #[test]
    fn env_pairs() {
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            EnvArg::Var("A".into(), "b=c".into())
        );
        assert_eq!(
            parse_env("production").unwrap(),
            EnvArg::Profile("production".into())
        );
        assert!(parse_env("=x").is_err());
        assert!(parse_env("two words").is_err());
    }

    #[test]
    fn stop_signal_flag_takes_names_and_numbers() {
        let signal = |flag: &str| {
            let cli = Cli::try_parse_from(["sup", "start", "app.js", "--stop-signal", flag])?;
            match cli.command {
                TopCommand::Cli(Command::Start(args)) => {
                    Ok::<_, clap::Error>(args.stop_signal.to_string())
                }
                _ => unreachable!("parsed `start` as another command"),
            }
        };
        assert_eq!(signal("int").unwrap(), "SIGINT");
        assert_eq!(signal("9").unwrap(), "SIGKILL");
        assert!(signal("SIGNOPE").is_err());
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
