//! The commands given a config file instead of app names: `sup start FILE`
//! (start the apps not running, restart the others with the file's spec),
//! `sup reload FILE` (PM2's startOrReload), `sup stop|restart|delete FILE`.
//! The whole file loads before anything is asked of the daemon.

use crate::client::{expect_ok, Client};
use crate::config::{self, Loaded, Options};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use sup_home::Home;
use sup_proto::{AppSpec, ErrorKind, Request, Response, Target};

/// What to do with the apps of a file that already exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Restart them with the file's spec (`start`, `restart`).
    Restart,
    /// Reload those whose spec changed, leave the others (`reload`).
    Reload,
}

/// How a file command was asked.
#[derive(Debug, Default)]
pub struct FileArgs {
    /// `--only`.
    pub only: Vec<String>,
    /// `--env NAME`.
    pub profile: Option<String>,
    /// `--update-env`.
    pub update_env: bool,
    /// `--prune`.
    pub prune: bool,
}

/// The options to read a file with from this shell.
pub fn options(profile: Option<String>) -> Result<Options> {
    Ok(Options {
        cwd: std::env::current_dir().context("cannot read the current directory")?,
        path_var: std::env::var("PATH").unwrap_or_default(),
        inherited: crate::environment(),
        profile,
        cpus: crate::cpus(),
    })
}

/// Loads `file` whole (or fails with its [`config::ConfigError`]), and
/// prints its warnings.
pub fn load(file: &str, args: &FileArgs) -> Result<Loaded> {
    let options = options(args.profile.clone())?;
    let mut loaded = config::load(Path::new(file), &options, &args.only)?;
    let source = std::fs::canonicalize(file)
        .map(|p| p.display().to_string())
        .ok();
    for app in &mut loaded.apps {
        app.source = source.clone();
    }
    for warning in &loaded.warnings {
        eprintln!("[sup] warning: {file}: {warning}");
    }
    Ok(loaded)
}

/// The daemon's apps with their specs, by name.
fn known(client: &mut Client) -> Result<BTreeMap<String, AppSpec>> {
    let apps = match expect_ok(client.request(Request::Describe(Target::All))?)? {
        Response::Apps(apps) => apps,
        other => bail!("unexpected answer from the daemon: {other:?}"),
    };
    Ok(apps
        .into_iter()
        .filter_map(|a| a.spec.map(|s| (a.name, s)))
        .collect())
}

/// `sup import pm2`: PM2's saved apps, started as `sup start FILE` starts
/// a file's (or, with `dry_run`, printed as a sup.toml). PM2's files are
/// only read.
pub fn import_pm2(home: &Home, dry_run: bool) -> Result<()> {
    let options = options(None)?;
    let pm2_home = config::pm2_home(&options.inherited)
        .context("neither PM2_HOME nor HOME is set: cannot find PM2's files")?;
    let dump = pm2_home.join("dump.pm2");
    if !dump.is_file() {
        bail!(
            "{} does not exist: `pm2 save` writes it (set PM2_HOME if PM2 keeps its files elsewhere)",
            dump.display()
        );
    }
    let loaded = config::load_pm2_dump(&dump, &pm2_home, &options)?;
    let label = dump.display().to_string();
    for warning in &loaded.warnings {
        eprintln!("[sup] not carried over: {warning}");
    }
    if dry_run {
        print!("{}", config::export(&loaded.apps)?);
        return Ok(());
    }
    apply_loaded(home, &loaded, &label, &FileArgs::default(), Mode::Restart)
}

/// `sup start FILE`, `sup restart FILE`, `sup reload FILE`.
pub fn apply(home: &Home, file: &str, args: &FileArgs, mode: Mode) -> Result<()> {
    let loaded = load(file, args)?;
    apply_loaded(home, &loaded, file, args, mode)
}

/// Starts the apps of `loaded` (read from `file`) that don't run, and
/// restarts or reloads (`mode`) those that do with their new spec.
pub fn apply_loaded(
    home: &Home,
    loaded: &Loaded,
    file: &str,
    args: &FileArgs,
    mode: Mode,
) -> Result<()> {
    let mut client = Client::connect_or_spawn(home)?;
    if let Some(daemon) = &loaded.daemon {
        apply_daemon_table(&mut client, daemon)?;
    }
    let running = known(&mut client)?;
    let mut failed = 0;
    // New apps go to the daemon in batches (one request for many); an app
    // that runs already is applied on its own, in the file's order.
    let mut batch = Batch::default();
    for mut spec in loaded.apps.iter().cloned() {
        let old = running.get(&spec.name);
        if let (Some(old), false) = (old, args.update_env) {
            spec.inherited_env = old.inherited_env.clone();
        }
        // A file without `listen` keeps the addresses the daemon holds,
        // such as those it bound for a cluster-mode app's first listen().
        if let Some(old) = old.filter(|_| spec.listen.is_empty()) {
            spec.listen = old.listen.clone();
        }
        let Some(old) = old else {
            if batch.full_with(&spec) {
                failed += batch.send(&mut client)?;
            }
            batch.specs.push(spec);
            continue;
        };
        failed += batch.send(&mut client)?;
        let name = spec.name.clone();
        let reload = mode == Mode::Reload;
        let result = if reload && *old == spec {
            println!("[sup] {name}: unchanged");
            Ok(())
        } else {
            let verb = if reload { "reloaded" } else { "restarted" };
            let spec = Box::new(spec);
            one(&mut client, Request::Apply { spec, reload }, verb)
        };
        if let Err(err) = result {
            eprintln!("sup: {name}: {err:#}");
            failed += 1;
        }
    }
    failed += batch.send(&mut client)?;
    if args.prune {
        failed += prune(&mut client, loaded, &running)?;
    }
    if failed > 0 {
        bail!("{failed} of the apps of {file} failed");
    }
    Ok(())
}

/// New apps waiting to be sent as one [`Request::AddMany`].
#[derive(Default)]
struct Batch {
    specs: Vec<AppSpec>,
    bytes: usize,
}

/// Most bytes of specs in one batch: well under the daemon's 1 MiB
/// request limit (an app's inherited environment can be a few KiB).
const BATCH_BYTES: usize = 512 * 1024;

/// Most apps in one batch, so that each answer comes within seconds.
const BATCH_APPS: usize = 100;

impl Batch {
    /// Whether adding `spec` would make the batch too big to send as one.
    fn full_with(&mut self, spec: &AppSpec) -> bool {
        let size = serde_json::to_vec(spec).map_or(BATCH_BYTES, |v| v.len());
        self.bytes += size;
        let full = self.bytes > BATCH_BYTES || self.specs.len() >= BATCH_APPS;
        if full && !self.specs.is_empty() {
            self.bytes = size;
            return true;
        }
        false
    }

    /// Sends the batch (if any) and prints each app's outcome; returns how
    /// many failed.
    fn send(&mut self, client: &mut Client) -> Result<usize> {
        if self.specs.is_empty() {
            return Ok(0);
        }
        let specs = std::mem::take(&mut self.specs);
        self.bytes = 0;
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        // Each app takes the daemon a few milliseconds (more with
        // thousands running): the deadline grows with the batch.
        let time = crate::targets::apps_time(specs.iter())
            + std::time::Duration::from_millis(50) * specs.len() as u32;
        let answers = match expect_ok(client.request_waiting(Request::AddMany { specs }, time)?)? {
            Response::Batch(answers) => answers,
            other => bail!("unexpected answer from the daemon: {other:?}"),
        };
        let mut failed = 0;
        for (name, answer) in names.iter().zip(answers) {
            if let Err(err) = print_outcome(answer, "started") {
                eprintln!("sup: {name}: {err:#}");
                failed += 1;
            }
        }
        Ok(failed)
    }
}

/// A sup.toml's `[daemon]` table: its webhooks for every app (kept by
/// the daemon) and its web listener.
fn apply_daemon_table(client: &mut Client, daemon: &crate::config::DaemonTable) -> Result<()> {
    let mut requests = vec![Request::Notify {
        targets: daemon.notify.clone(),
    }];
    if let Some(listen) = &daemon.web {
        requests.push(Request::Web {
            listen: Some(listen.clone()),
        });
    }
    for request in requests {
        if let Response::Note(note) = expect_ok(client.request(request)?)? {
            note.lines().for_each(|l| println!("[sup] {l}"));
        }
    }
    Ok(())
}

/// Sends one request about one app and prints what was done.
fn one(client: &mut Client, request: Request, verb: &str) -> Result<()> {
    let time = match &request {
        Request::Add { spec, .. } | Request::Apply { spec, .. } => {
            crate::targets::apps_time([&**spec])
        }
        _ => Default::default(),
    };
    print_outcome(client.request_waiting(request, time)?, verb)
}

/// Prints what was done with one app, or returns its error.
fn print_outcome(answer: Response, verb: &str) -> Result<()> {
    match expect_ok(answer)? {
        Response::Note(note) => {
            note.lines().for_each(|l| println!("[sup] {verb} {l}"));
            Ok(())
        }
        other => crate::report(other, verb),
    }
}

/// Deletes the apps started from this file that are no longer in it.
fn prune(
    client: &mut Client,
    loaded: &Loaded,
    running: &BTreeMap<String, AppSpec>,
) -> Result<usize> {
    let source = loaded.apps.first().and_then(|a| a.source.clone());
    let mut failed = 0;
    for (name, spec) in running {
        let gone = spec.source.is_some()
            && spec.source == source
            && !loaded.apps.iter().any(|a| &a.name == name);
        if !gone {
            continue;
        }
        let target = Target::Name(name.clone());
        match crate::targets::request_waiting(client, &target, Request::Delete(target.clone()))
            .and_then(expect_ok)
        {
            Ok(_) => println!("[sup] deleted {name} (no longer in the file)"),
            Err(err) => {
                eprintln!("sup: {name}: {err:#}");
                failed += 1;
            }
        }
    }
    Ok(failed)
}

/// `sup stop FILE`, `sup delete FILE`: the request for each app of the file
/// that the daemon knows.
pub fn each_app(
    home: &Home,
    file: &str,
    args: &FileArgs,
    request: impl Fn(Target) -> Request,
    verb: &str,
) -> Result<()> {
    let loaded = load(file, args)?;
    let mut client = crate::existing(home)?;
    for spec in &loaded.apps {
        let target = Target::Name(spec.name.clone());
        match crate::targets::request_waiting(&mut client, &target, request(target.clone()))? {
            Response::Error {
                kind: ErrorKind::NotFound,
                ..
            } => println!("[sup] {}: not known to sup", spec.name),
            response => {
                expect_ok(response)?;
                println!("[sup] {verb} {}", spec.name);
            }
        }
    }
    Ok(())
}
