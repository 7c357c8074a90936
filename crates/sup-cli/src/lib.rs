//! The sup command line: parses `sup ...` and talks to the daemon over its
//! socket. It knows the daemon only through the protocol (`sup-proto`) and
//! the layout of `SUP_HOME` (`sup-home`); the `sup` binary runs the daemon
//! itself when [`parse`] says `sup daemon`.

mod args;
mod client;
mod config;
mod files;
mod logs;
mod monit;
mod render;
mod resolve;
mod run;
mod startup;
mod targets;

pub use args::{DaemonArgs, RunArgs};
pub use run::{plan as plan_run, Reload, RunPlan};

use anyhow::{bail, Context, Result};
use args::{AppsArgs, Cli, Command, EnvArg, ImportFrom, StartArgs, TopCommand};
use client::{expect_ok, Client};
use files::{FileArgs, Mode};
use resolve::ResolveError;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;
use sup_home::Home;
use sup_proto::{
    validate_name, AppInfo, AppRow, AppSpec, ErrorKind, HealthSpec, LogSpec, Probe, Request,
    Response, Severity, Target,
};

/// How long `sup kill` waits for the daemon to exit after answering.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// What a `sup` command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// `sup daemon ...`: the caller runs the daemon.
    Daemon(DaemonArgs),
    /// `sup run ...`: the caller runs the daemon with [`RunPlan`]'s apps.
    Run(Box<RunArgs>),
    /// Any other command: for [`run`].
    Command(CommandLine),
}

/// A parsed command other than `sup daemon`.
#[derive(Debug)]
pub struct CommandLine {
    command: Command,
    timeout: Option<Duration>,
}

/// Parses the process's arguments; on a usage error (or `--help`), prints
/// it and exits, as clap does.
pub fn parse() -> Invocation {
    let cli = Cli::parse_noting_flags();
    match cli.command {
        TopCommand::Daemon(args) => Invocation::Daemon(args),
        TopCommand::Run(args) => Invocation::Run(args),
        TopCommand::Cli(command) => Invocation::Command(CommandLine {
            command,
            timeout: cli.timeout,
        }),
    }
}

/// Runs a command; errors are printed on stderr and give exit code 1.
pub fn run(line: CommandLine) -> ExitCode {
    // Like any Unix tool: `sup logs | head` ends quietly when head exits.
    // SAFETY: setting a default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    if let Some(timeout) = line.timeout {
        client::override_timeout(timeout);
    }
    match execute(line.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sup: {err:#}");
            // Bad usage, and a config file that cannot be used, are bad input.
            if err.is::<UsageError>() || err.is::<config::ConfigError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command line that cannot mean what it says: exit code 2, as for
/// clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn execute(command: Command) -> Result<()> {
    let home = Home::from_env()?;
    match command {
        Command::Save(args) => note(&home, Request::Save { force: args.force }, false),
        Command::Resurrect => {
            // No dump, no daemon to start just to say so.
            if !home.has_dump() {
                bail!(
                    "no saved apps: {} does not exist (run `sup save` first)",
                    home.dump().display()
                );
            }
            note(&home, Request::Resurrect, true)
        }
        Command::Startup(args) => startup::startup(&args, &home),
        Command::Unstartup(args) => startup::unstartup(&args, &home),
        Command::Update => update(&home),
        Command::Start(args) => start(&home, *args),
        Command::Stop(t) => match file_of(&t)? {
            Some((file, args)) => files::each_app(&home, file, &args, Request::Stop, "stopped"),
            None => act(&home, &t.targets, Request::Stop, |r, target| {
                report_for(r, "stopped", target)
            }),
        },
        Command::Restart(r) => restart(&home, &r.apps, r.update_env, Mode::Restart, false),
        Command::Delete(t) => match file_of(&t)? {
            Some((file, args)) => files::each_app(&home, file, &args, Request::Delete, "deleted"),
            None => act(&home, &t.targets, Request::Delete, |r, target| {
                expect_ok(r)?;
                println!("[sup] deleted {target}");
                Ok(())
            }),
        },
        Command::Export => export(&home),
        Command::List(args) => list(&home, &args),
        Command::Describe(d) => describe(&home, &d.targets, d.json),
        Command::Pid(t) => pid(&home, &t.targets),
        Command::Ping => ping(&home),
        Command::Logs(args) => logs::run(&home, args),
        Command::Monit => monit::run(&home),
        Command::Reload(r) => restart(&home, &r.apps, r.update_env, Mode::Reload, r.prune),
        Command::Events(args) => events(&home, args),
        Command::Scale(args) => {
            let scale = args.count;
            act(
                &home,
                &[args.target],
                |target| Request::Scale { target, scale },
                |r, _| report_scaled(r),
            )
        }
        Command::Signal(args) => {
            let signal = args.signal;
            act(
                &home,
                &args.targets,
                |target| Request::Signal { target, signal },
                |r, target| {
                    expect_ok(r)?;
                    println!("[sup] sent {signal} to {target}");
                    Ok(())
                },
            )
        }
        Command::Flush(args) => flush(&home, &args.targets),
        Command::Reset(t) => act(&home, &t.targets, Request::Reset, |r, _| report(r, "reset")),
        Command::Env(args) => env_of(&home, &args.target),
        Command::Init(args) => init(args.pm2),
        Command::Web(args) => {
            // Turning the listener off needs no daemon: none listens then.
            let client = match args.listen {
                Some(_) => Some(Client::connect_or_spawn(&home)?),
                None => Client::connect(&home)?,
            };
            let Some(mut client) = client else {
                println!("[sup] no daemon running: nothing listens");
                return Ok(());
            };
            match expect_ok(client.request(Request::Web {
                listen: args.listen,
            })?)? {
                Response::Note(note) => println!("[sup] {note}"),
                other => bail!("unexpected answer from the daemon: {other:?}"),
            }
            Ok(())
        }
        Command::Completions(args) => {
            use clap::CommandFactory;
            let mut stdout = std::io::stdout();
            clap_complete::generate(args.shell, &mut Cli::command(), "sup", &mut stdout);
            Ok(())
        }
        Command::Kill => kill(&home),
        Command::Import(args) => match args.from {
            ImportFrom::Pm2 => files::import_pm2(&home, args.dry_run),
        },
    }
}

/// The config file and its options when the targets are one config file;
/// `--only` and `--env` are for files only.
fn file_of(apps: &AppsArgs) -> Result<Option<(&str, FileArgs)>> {
    match apps.targets.as_slice() {
        [file] if config::is_config_file(file) => Ok(Some((
            file,
            FileArgs {
                only: apps.only.clone(),
                profile: apps.profile.clone(),
                ..FileArgs::default()
            },
        ))),
        _ if !apps.only.is_empty() => bail!("--only selects apps of a config file; name the file"),
        _ if apps.profile.is_some() => {
            bail!("--env NAME picks a profile of a config file; name the file")
        }
        _ => Ok(None),
    }
}

/// `sup restart` and `sup reload`, of apps or of a config file.
fn restart(home: &Home, apps: &AppsArgs, update_env: bool, mode: Mode, prune: bool) -> Result<()> {
    if let Some((file, mut args)) = file_of(apps)? {
        args.update_env = update_env;
        args.prune = prune;
        return files::apply(home, file, &args, mode);
    }
    if prune {
        bail!("--prune is for a config file: `sup reload FILE --prune`");
    }
    if update_env {
        return update_env_of(home, &apps.targets, mode == Mode::Reload);
    }
    match mode {
        Mode::Restart => act(home, &apps.targets, Request::Restart, |r, target| {
            report_for(r, "restarted", target)
        }),
        Mode::Reload => act(home, &apps.targets, Request::Reload, |r, _| {
            match expect_ok(r)? {
                Response::Note(note) => note.lines().for_each(|l| println!("[sup] {l}")),
                other => bail!("unexpected answer from the daemon: {other:?}"),
            }
            Ok(())
        }),
    }
}

/// `--update-env`: each app gets this shell's environment under its
/// declared one, and is restarted (or reloaded) with it.
fn update_env_of(home: &Home, names: &[String], reload: bool) -> Result<()> {
    let (found, result) = describe_each(home, names)?;
    let mut client = existing(home)?;
    let inherited = environment();
    for app in found {
        let Some(mut spec) = app.spec else { continue };
        spec.inherited_env = inherited.clone();
        let time = targets::apps_time([&spec]);
        let request = Request::Apply {
            spec: Box::new(spec),
            reload,
        };
        match expect_ok(client.request_waiting(request, time)?)? {
            Response::Note(note) => note.lines().for_each(|l| println!("[sup] {l}")),
            other => report(other, "restarted")?,
        }
    }
    result
}

/// `sup export`: the running apps as a sup.toml on stdout.
fn export(home: &Home) -> Result<()> {
    let specs: Vec<AppSpec> = match Client::connect_or_recover(home)? {
        Some(mut client) => apps(client.request(Request::Describe(Target::All))?)?
            .into_iter()
            .filter_map(|a| a.spec)
            .collect(),
        None => Vec::new(),
    };
    print!("{}", config::export(&specs)?);
    Ok(())
}

/// A connection to a daemon that must already run (no app can exist otherwise).
pub(crate) fn existing(home: &Home) -> Result<Client> {
    match Client::connect_or_recover(home)? {
        Some(client) => Ok(client),
        None => bail!("the sup daemon is not running (no apps); `sup start` starts it"),
    }
}

fn start(home: &Home, mut args: StartArgs) -> Result<()> {
    let Some(script) = args.take_script() else {
        bail!("sup start needs a script, command or app: `sup start app.js --watch`");
    };
    let profiles: Vec<&str> = args
        .env
        .iter()
        .filter_map(|e| match e {
            EnvArg::Profile(name) => Some(name.as_str()),
            EnvArg::Var(..) => None,
        })
        .collect();
    if config::is_config_file(&script) {
        let file_args = FileArgs {
            only: args.only.clone(),
            profile: profiles.last().map(|p| p.to_string()),
            update_env: args.update_env,
            prune: false,
        };
        return files::apply(home, &script, &file_args, Mode::Restart);
    }
    if config::Format::of(Path::new(&script)).is_some() && !Path::new(&script).exists() {
        bail!("no such config file: {script}");
    }
    if let Some(profile) = profiles.first() {
        bail!("--env {profile}: a profile (env_{profile}) belongs to a config file; to set a variable, use --env KEY=VALUE");
    }
    if !args.only.is_empty() {
        bail!("--only selects apps of a config file: `sup start ecosystem.config.js --only api`");
    }
    let spec = match flags_spec(&args, &script)? {
        Ok(spec) => spec,
        Err(what) => return start_known(home, &what, &args.given),
    };
    let mut client = Client::connect_or_spawn(home)?;
    let time = targets::apps_time([&spec]);
    let request = Request::Add {
        spec: Box::new(spec),
        wait: args.wait,
    };
    report(client.request_waiting(request, time)?, "started")
}

/// The spec `sup start SCRIPT FLAGS` (or `sup run`) asks for; `Err(what)`
/// when `script` is no file or command (a known app's name, for `start`).
pub(crate) fn flags_spec(args: &StartArgs, script: &str) -> Result<Result<AppSpec, String>> {
    if args.listen.len() > sup_proto::spec::MAX_LISTEN {
        bail!(sup_proto::spec::too_many_sockets(args.listen.len()));
    }
    let cwd = match &args.cwd {
        Some(dir) => std::fs::canonicalize(dir).with_context(|| format!("--cwd {dir}"))?,
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let path_var = std::env::var("PATH").unwrap_or_default();
    let resolved = match resolve::resolve(script, args.interpreter.as_deref(), &cwd, &path_var) {
        Ok(resolved) => resolved,
        Err(ResolveError::Invalid(msg)) => bail!(msg),
        Err(ResolveError::NotFound(what)) => return Ok(Err(what)),
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| resolve::default_name(script));
    validate_name(&name).map_err(|e| UsageError(format!("invalid --name {name:?}: {e}")))?;
    let mut env = match &args.env_file {
        Some(file) => config::read_env_file(&cwd.join(file))?,
        None => Default::default(),
    };
    env.extend(args.env.iter().filter_map(|e| match e {
        EnvArg::Var(k, v) => Some((k.clone(), v.clone())),
        EnvArg::Profile(_) => None,
    }));
    // `PORT=1 cmd`: the line's assignments win, as in a shell.
    env.extend(resolved.env);
    let health = health_spec(args);
    let spec = AppSpec {
        name,
        program: resolved.program,
        args: [resolved.args, args.args.clone()].concat(),
        cwd: cwd.display().to_string(),
        env,
        restart: args.restart,
        restart_delay_ms: args.restart_delay.0,
        backoff_max_ms: args.backoff_max.0,
        min_uptime_ms: args.min_uptime.0,
        max_restarts: args.max_restarts,
        stop_signal: args.stop_signal,
        kill_timeout_ms: args.kill_timeout.0,
        logs: LogSpec {
            out_file: log_file(&cwd, args.output.as_deref())?,
            err_file: log_file(&cwd, args.error.as_deref())?,
            combined_file: log_file(&cwd, args.log.as_deref())?,
            timestamps: (args.time && !args.no_time) || args.log_date_format.is_some(),
            date_format: args.log_date_format.clone(),
            max_size: args.log_max_size.0,
            keep: args.log_keep,
            json: args.log_format == args::LogFormat::Json,
            compress: args.log_compress,
            keep_days: args.log_keep_days,
            per_instance: args.split_logs,
        },
        health,
        listen: args.listen.iter().map(|a| listen_addr(&cwd, a)).collect(),
        on_event: args.on_event.clone(),
        notify: args.notify.clone(),
        instances: args.instances.resolve(cpus),
        instance_var: args.instance_var.clone(),
        max_memory: args.max_memory,
        memory_max: args.memory_max,
        cpu_quota: args.cpu_quota,
        cron_restart: args.cron_restart.clone(),
        watch: args
            .watch
            .iter()
            .map(|p| cwd.join(p).display().to_string())
            .collect(),
        ignore_watch: args.ignore_watch.clone(),
        watch_delay_ms: args.watch_delay.0,
        stop_exit_codes: args.stop_exit_codes.clone(),
        user: args.user.clone(),
        group: args.group.clone(),
        inherited_env: environment(),
        ..AppSpec::default()
    };
    spec.check().map_err(UsageError)?;
    Ok(Ok(spec))
}

/// CPUs this process may run on (`-i max`).
pub(crate) fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// `sup start api` where `api` is no file or command: an app the daemon
/// knows. Flags of a new app's spec (`given`) would be ignored: refused.
fn start_known(home: &Home, what: &str, given: &[String]) -> Result<()> {
    let target = Target::parse(what);
    let request = if given.is_empty() {
        Request::Start(target.clone())
    } else {
        Request::Describe(target.clone())
    };
    let known = match Client::connect(home)? {
        Some(mut client) => match targets::request_waiting(&mut client, &target, request)? {
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            } => None,
            other => Some(other),
        },
        None => None,
    };
    match known {
        None => bail!("no such file, command or app: {what}"),
        Some(response) if given.is_empty() => report(response, "started"),
        Some(response) => {
            let name = apps(response)?
                .first()
                .map_or(what.to_string(), |a| a.name.clone());
            Err(UsageError(spec_flags_refused(&name, given)).into())
        }
    }
}

/// Why `sup start NAME --env ...` is refused, and what to do instead.
fn spec_flags_refused(name: &str, given: &[String]) -> String {
    let flags: Vec<&str> = given
        .iter()
        .map(String::as_str)
        .filter(|f| f.starts_with("--"))
        .collect();
    let what = if flags.len() < given.len() {
        [flags.join(", "), "arguments after --".into()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" and ")
    } else {
        flags.join(", ")
    };
    let example: String = flags.iter().map(|f| format!(" {f} ...")).collect();
    format!(
        "{name} is an app already; {what} only apply when an app is created, so sup would \
         ignore them. Nothing was changed. To run {name} with them, delete it and start it \
         anew: `sup delete {name} && sup start <script> --name {name}{example}` \
         (`sup describe {name}` shows its command)."
    )
}

/// A command that waits for apps, once per target: `request` makes the
/// request, `print` shows its answer.
fn act(
    home: &Home,
    names: &[String],
    request: impl Fn(Target) -> Request,
    print: impl Fn(Response, &Target) -> Result<()>,
) -> Result<()> {
    let mut client = existing(home)?;
    targets::each(names, |target| {
        let response = targets::request_waiting(&mut client, &target, request(target.clone()))?;
        print(response, &target)
    })
}

/// As [`report`], but a target naming one instance (`api:1`) is reported
/// as that instance, with its pid, then the app's state.
fn report_for(response: Response, verb: &str, target: &Target) -> Result<()> {
    let Some(index) = target.split().1 else {
        return report(response, verb);
    };
    let Response::Apps(apps) = expect_ok(response)? else {
        return Ok(());
    };
    for app in &apps {
        let inst = app.instances.iter().find(|i| i.index == index);
        let pid = inst
            .and_then(|i| i.pid.or(i.last_pid))
            .map_or(String::new(), |p| format!(", pid {p}"));
        let status = inst.map_or("gone", |i| i.status.as_str());
        println!(
            "[sup] {verb} {}:{index} (id {}{pid}): {status}; {} is {} ({}/{})",
            app.name,
            app.id,
            app.name,
            app.status.as_str(),
            app.instances.iter().filter(|i| i.pid.is_some()).count(),
            app.instances.len()
        );
        if let Some(err) = &app.error {
            eprintln!("[sup] {}: {err}", app.name);
        }
    }
    Ok(())
}

/// Prints one line per app a command touched.
pub(crate) fn report(response: Response, verb: &str) -> Result<()> {
    let Response::Apps(apps) = expect_ok(response)? else {
        return Ok(());
    };
    if apps.is_empty() {
        println!("[sup] no apps");
    }
    for app in &apps {
        let pid = app.pid.map_or(String::new(), |p| format!(", pid {p}"));
        println!(
            "[sup] {verb} {} (id {}{pid}): {}",
            app.name,
            app.id,
            app.status.as_str()
        );
        if let Some(err) = &app.error {
            eprintln!("[sup] {}: {err}", app.name);
        }
        if let Some(err) = &app.logs.error {
            eprintln!("[sup] {}: log: {err}", app.name);
        }
    }
    Ok(())
}

/// `sup env api[:N]`: the environment instance N (0 by default) runs
/// with, as `KEY=VALUE` lines in three parts: what was declared, what was
/// inherited from the shell that started it, and what sup adds.
fn env_of(home: &Home, what: &str) -> Result<()> {
    let target = Target::parse(what);
    let (app_target, index) = target.split();
    let mut client = existing(home)?;
    let apps = apps(client.request(Request::Describe(app_target.clone()))?)?;
    let [app] = apps.as_slice() else {
        bail!("{what}: name one app (or one instance, `api:1`)");
    };
    let spec = app.spec.as_ref().context("the daemon sent no spec")?;
    let index = index.unwrap_or(0);
    if index as usize >= app.instances.len().max(1) {
        bail!("{} has no instance {index}", app.name);
    }
    let line = |k: &str, v: &str| println!("{k}={v}");
    println!("# {}: declared (--env, env, env_file, a profile)", app.name);
    spec.env.iter().for_each(|(k, v)| line(k, v));
    println!(
        "# inherited from the shell that started it (`sup restart {} --update-env` renews them)",
        app.name
    );
    spec.inherited_env
        .iter()
        .filter(|(k, _)| !spec.env.contains_key(*k))
        .for_each(|(k, v)| line(k, v));
    println!("# set by sup for instance {index}");
    line("SUP_APP_NAME", &app.name);
    line(sup_proto::spec::APP_ID_VAR, &app.id.to_string());
    for (k, v) in spec.instance_env(index as usize) {
        line(&k, &v);
    }
    Ok(())
}

/// `sup init`: a file to start from, never over an existing one.
fn init(pm2: bool) -> Result<()> {
    let (name, text) = match pm2 {
        true => ("ecosystem.config.js", INIT_PM2),
        false => ("sup.toml", INIT_TOML),
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(name);
    match file {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, text.as_bytes())
                .with_context(|| format!("cannot write {name}"))?;
            println!("[sup] wrote {name}: edit it, then `sup start {name}`");
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{name} exists already: nothing written")
        }
        Err(e) => Err(e).with_context(|| format!("cannot write {name}")),
    }
}

/// What `sup init` writes.
const INIT_TOML: &str = r#"# Apps for `sup start sup.toml` (or `sup run sup.toml` in a container).
# One [[app]] table per app; relative paths are relative to this file.
# Unknown keys are errors that name them; `sup export` writes this shape.

[[app]]
name = "api"
script = "app.js"              # run with node (.py: python3, .sh: bash; or any executable)
# args = ["--port", "3000"]
instances = 1                  # several share a held socket
# listen = [":3000"]           # sup holds the port: restarts refuse no connection
restart = "always"             # always, on-failure, unless-stopped, no
# max_memory = 314572800       # restart past 300 MiB
# cron_restart = "0 3 * * *"

[app.env]                      # declared variables, laid over the shell's
NODE_ENV = "production"
# PORT = "3000"

# [app.health.liveness]        # restarted when it stops answering
# kind = "http"
# url = "http://127.0.0.1:3000/health"
"#;

/// What `sup init --pm2` writes.
const INIT_PM2: &str = r#"// Apps for `sup start ecosystem.config.js` (PM2 reads it too, unchanged).
module.exports = {
  apps: [
    {
      name: 'api',
      script: 'app.js',
      instances: 1,            // or 'max': one per CPU
      // exec_mode: 'cluster', // with instances > 1: one port for all
      env: { NODE_ENV: 'development' },
      env_production: { NODE_ENV: 'production' },   // --env production
      // max_memory_restart: '300M',
      // cron_restart: '0 3 * * *',
    },
  ],
};
"#;

/// `sup scale`: each app's new count, and how many of them run.
fn report_scaled(response: Response) -> Result<()> {
    let Response::Apps(apps) = expect_ok(response)? else {
        return Ok(());
    };
    for app in &apps {
        let n = app.instances.len();
        let online = app
            .instances
            .iter()
            .filter(|i| i.status == sup_proto::Status::Online)
            .count();
        println!(
            "[sup] scaled {} (id {}) to {}: {} ({online}/{n} online)",
            app.name,
            app.id,
            if n == 1 {
                "1 instance".to_string()
            } else {
                format!("{n} instances")
            },
            app.status.as_str()
        );
    }
    Ok(())
}

fn list(home: &Home, args: &args::ListArgs) -> Result<()> {
    let client = Client::connect_or_recover(home)?;
    if args.json {
        let json = match client.map(|mut c| c.list_json()).transpose()? {
            Some(Ok(json)) => json,
            Some(Err(answer)) => serde_json::to_string(&apps(answer)?)?,
            None => "[]".to_string(),
        };
        println!("{json}");
        return Ok(());
    }
    let rows = match client {
        Some(mut client) => rows(&mut client)?,
        None => Vec::new(),
    };
    let width = (!args.wide).then(render::output_width).flatten();
    print!("{}", render::table(&rows, width, render::use_color()));
    Ok(())
}

/// What `list` shows of every app; from a daemon that predates `Rows`
/// (the same protocol, so it refuses the request as unknown), made from
/// the full list.
fn rows(client: &mut Client) -> Result<Vec<AppRow>> {
    match client.request(Request::Rows)? {
        Response::Rows(rows) => Ok(rows),
        Response::Error {
            kind: ErrorKind::BadRequest,
            ..
        } => Ok(apps(client.request(Request::List)?)?
            .iter()
            .map(AppRow::from)
            .collect()),
        other => {
            let other = expect_ok(other)?;
            bail!("unexpected answer from the daemon: {other:?}")
        }
    }
}

/// The apps of every target, in order, and whether every target was found.
fn describe_each(home: &Home, names: &[String]) -> Result<(Vec<AppInfo>, Result<()>)> {
    let mut client = existing(home)?;
    let mut found = Vec::new();
    let result = targets::each(names, |target| {
        found.extend(apps(client.request(Request::Describe(target))?)?);
        Ok(())
    });
    Ok((found, result))
}

fn describe(home: &Home, names: &[String], json: bool) -> Result<()> {
    let (apps, result) = describe_each(home, names)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&apps)?);
    } else {
        let pages: Vec<String> = apps.iter().map(render::describe).collect();
        print!("{}", pages.join("\n"));
    }
    result
}

fn pid(home: &Home, names: &[String]) -> Result<()> {
    let (apps, result) = describe_each(home, names)?;
    for pid in apps.iter().filter_map(|a| a.pid) {
        println!("{pid}");
    }
    result
}

fn flush(home: &Home, names: &[String]) -> Result<()> {
    let all = ["all".to_string()];
    let names = if names.is_empty() { &all[..] } else { names };
    let mut client = existing(home)?;
    targets::each(names, |target| {
        expect_ok(client.request(Request::Flush(target.clone()))?)?;
        println!("[sup] flushed the logs of {target}");
        Ok(())
    })
}

fn apps(response: Response) -> Result<Vec<AppInfo>> {
    match expect_ok(response)? {
        Response::Apps(apps) => Ok(apps),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

fn events(home: &Home, args: args::EventsArgs) -> Result<()> {
    let target = args.target.as_deref().map(Target::parse);
    let mut client = existing(home)?;
    let request = Request::Events {
        target,
        follow: args.follow,
    };
    let mut response = client.request(request)?;
    loop {
        let Response::Events(events) = expect_ok(response)? else {
            bail!("unexpected answer from the daemon");
        };
        for event in &events {
            if args.json {
                println!("{}", serde_json::to_string(event)?);
            } else {
                println!("{}", render::event(event));
            }
        }
        if !args.follow {
            return Ok(());
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        response = match client.next_response() {
            Ok(r) => r,
            Err(_) => bail!("the daemon went away"),
        };
    }
}

/// Sends a request answered by a note, and prints it.
fn note(home: &Home, request: Request, spawn: bool) -> Result<()> {
    let mut client = if spawn {
        Client::connect_or_spawn(home)?
    } else {
        existing(home)?
    };
    match expect_ok(client.request(request)?)? {
        Response::Note(note) => {
            for line in note.lines() {
                match Severity::of(line) {
                    (Severity::Warning, w) => eprintln!("[sup] warning: {w}"),
                    (Severity::Info, text) => println!("[sup] {text}"),
                }
            }
            Ok(())
        }
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// `sup update`: the daemon re-executes this binary and keeps its apps.
fn update(home: &Home) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the sup executable")?;
    let (version, started_at_ms) = daemon_identity(home)?;
    ask_update(home, &exe.display().to_string())?;
    // It re-executed: wait until the new daemon answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match daemon_identity(home) {
            Ok((new_version, started)) if started != started_at_ms => {
                println!(
                    "[sup] daemon updated: sup {version} -> sup {new_version}; apps kept running"
                );
                return Ok(());
            }
            _ if std::time::Instant::now() > deadline => bail!(
                "the daemon did not come back after the update; see {}",
                home.daemon_log().display()
            ),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The running daemon's version and start time. Never starts a daemon:
/// during an update the socket is briefly gone.
fn daemon_identity(home: &Home) -> Result<(String, u64)> {
    let Some(mut client) = Client::connect(home)? else {
        bail!("the sup daemon is not running");
    };
    match client.request(Request::Ping)? {
        Response::Pong {
            version,
            started_at_ms,
            ..
        } => Ok((version, started_at_ms)),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

/// Asks the daemon to re-execute `binary`. An answer means it refused or
/// failed; an EOF means it is re-executing. A busy daemon (an app launching
/// or stopping) is asked again for a while.
fn ask_update(home: &Home, binary: &str) -> Result<()> {
    let busy_until = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let request = Request::Update {
            binary: binary.to_string(),
        };
        let Some(mut client) = Client::connect(home)? else {
            bail!("the sup daemon is not running");
        };
        // Longer than the daemon takes (`UPDATE_DEADLINE`), so its answer is heard.
        let deadline = sup_proto::UPDATE_DEADLINE;
        match client.request_waiting(request, deadline) {
            Ok(Response::Error {
                kind: ErrorKind::Busy,
                ..
            }) if std::time::Instant::now() < busy_until => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(response) => return expect_ok(response).map(drop),
            Err(err) if err.is::<client::NoAnswer>() => return Err(err),
            Err(_) => return Ok(()),
        }
    }
}

fn ping(home: &Home) -> Result<()> {
    // `ping` only asks: it never starts a daemon.
    let Some(mut client) = Client::connect(home)? else {
        bail!("the sup daemon is not running");
    };
    match expect_ok(client.request(Request::Ping)?)? {
        Response::Pong {
            version,
            pid,
            home,
            started_at_ms,
        } => {
            let started = sup_proto::logfmt::format_ts(started_at_ms as i64, 0);
            println!(
                "[sup] daemon sup {version} is up (pid {pid}, started {started}, home {home})"
            );
            Ok(())
        }
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
}

fn kill(home: &Home) -> Result<()> {
    let Some(mut client) = Client::connect(home)? else {
        println!("[sup] no daemon running");
        return Ok(());
    };
    let daemon = home.daemon_pid();
    // The daemon answers once every app is down, then exits; an EOF instead
    // of an answer also means it is going away.
    match targets::request_waiting(&mut client, &Target::All, Request::Kill) {
        Ok(response) => drop(expect_ok(response)?),
        Err(err) if err.is::<client::NoAnswer>() => return Err(err),
        Err(_) => {}
    }
    client::wait_daemon_gone(home, daemon, KILL_WAIT)?;
    println!("[sup] daemon stopped");
    Ok(())
}

/// The CLI's environment, for the app. A variable that is not UTF-8 cannot
/// travel in the protocol: it is left out, with a warning.
pub(crate) fn environment() -> std::sync::Arc<std::collections::BTreeMap<String, String>> {
    let mut env = std::collections::BTreeMap::new();
    for (key, value) in std::env::vars_os() {
        match (key.to_str(), value.to_str()) {
            (Some(k), Some(v)) => {
                env.insert(k.to_string(), v.to_string());
            }
            _ => eprintln!(
                "[sup] warning: ${} is not UTF-8; the app won't get it",
                key.to_string_lossy()
            ),
        }
    }
    std::sync::Arc::new(env)
}

/// The probe one of the flag triples (HTTP URL, TCP address, command) asks for.
fn probe(http: &Option<String>, tcp: &Option<String>, cmd: &Option<String>) -> Option<Probe> {
    match (http, tcp, cmd) {
        (Some(url), _, _) => Some(Probe::Http { url: url.clone() }),
        (_, Some(addr), _) => Some(Probe::Tcp { addr: addr.clone() }),
        (_, _, Some(line)) => Some(Probe::Cmd { line: line.clone() }),
        _ => None,
    }
}

/// The probes and their timings from `start`'s flags.
fn health_spec(args: &StartArgs) -> HealthSpec {
    let liveness = probe(&args.health, &args.health_tcp, &args.health_cmd);
    let readiness = probe(&args.ready_http, &args.ready_tcp, &args.ready_cmd)
        .or(args.ready_notify.then_some(Probe::Notify))
        .or(args.wait_ready.then_some(Probe::Message));
    HealthSpec {
        liveness,
        readiness,
        interval_ms: args.health_interval.0,
        timeout_ms: args.health_timeout.0,
        retries: args.health_retries,
        start_period_ms: args.health_start_period.0,
        ready_timeout_ms: args.ready_timeout.0,
    }
}

/// A Unix socket path made absolute; `host:port` as it is.
fn listen_addr(cwd: &std::path::Path, addr: &str) -> String {
    if addr.contains('/') {
        absolute(cwd, addr)
    } else {
        addr.to_string()
    }
}

/// A log file given by flag, absolute; its directory is created when
/// missing (as PM2 does), private to the user.
fn log_file(cwd: &std::path::Path, file: Option<&str>) -> Result<Option<String>> {
    let Some(file) = file else { return Ok(None) };
    let path = absolute(cwd, file);
    let dir = std::path::Path::new(&path)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    if !dir.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot log to {path}: cannot create {}", dir.display()))?;
        println!("[sup] created {} for the logs", dir.display());
    }
    // The daemon checks again when it opens the file; this says it at once.
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if let Some(why) = sup_proto::logfmt::unfit_log_file(&meta, nix::unistd::geteuid().as_raw())
        {
            bail!("refusing to log to {path}: {why}");
        }
    }
    Ok(Some(path))
}

/// `file` made absolute against `cwd`: the daemon's cwd is not the user's.
fn absolute(cwd: &std::path::Path, file: &str) -> String {
    cwd.join(file).display().to_string()
}
