//! `sup run`: the apps it runs, read as `sup start` reads them (a config
//! file, or one app from flags), for the caller to hand to the daemon it
//! runs in the foreground. Nothing here talks to a daemon.

use crate::args::{EnvArg, RunArgs};
use crate::config;
use crate::files::{self, FileArgs};
use anyhow::{bail, Result};
use sup_proto::AppSpec;

/// Reads a `sup run` file again (SIGHUP); errors as text for the daemon's log.
pub type Reload = Box<dyn Fn() -> Result<Vec<AppSpec>, String> + Send + Sync>;

/// What `sup run` runs, and how.
pub struct RunPlan {
    /// The apps.
    pub apps: Vec<AppSpec>,
    /// Reads the file again; none for an app from flags.
    pub reload: Option<Reload>,
    /// `--json`, `--log-files`, `--exit-on-error`, `--health-listen`.
    pub json: bool,
    /// Also the log files under SUP_HOME.
    pub log_files: bool,
    /// End when an app turns errored.
    pub exit_on_error: bool,
    /// Where to serve `/livez` and `/readyz`.
    pub health_listen: Option<String>,
}

/// Reads the apps `args` name. A bad file or flag is an error before any
/// app starts (exit 2, as for `sup start`).
pub fn plan(args: RunArgs) -> Result<RunPlan> {
    let RunArgs {
        mut start,
        json,
        log_files,
        exit_on_error,
        health_listen,
    } = args;
    let Some(script) = start.take_script() else {
        bail!("sup run needs a config file, script or command: `sup run sup.toml`");
    };
    let profile = start.env.iter().rev().find_map(|e| match e {
        EnvArg::Profile(name) => Some(name.clone()),
        EnvArg::Var(..) => None,
    });
    let (apps, reload) = if config::is_config_file(&script) {
        let file_args = FileArgs {
            only: start.only.clone(),
            profile,
            update_env: false,
            prune: false,
        };
        let apps = files::load(&script, &file_args)?.apps;
        let reload: Reload = Box::new(move || {
            files::load(&script, &file_args)
                .map(|loaded| loaded.apps)
                .map_err(|e| format!("{e:#}"))
        });
        (apps, Some(reload))
    } else {
        if let Some(profile) = profile {
            bail!("--env {profile}: a profile belongs to a config file");
        }
        match crate::flags_spec(&start, &script)? {
            Ok(spec) => (vec![spec], None),
            Err(what) => bail!("{what}: no such file, script or command"),
        }
    };
    Ok(RunPlan {
        apps,
        reload,
        json,
        log_files,
        exit_on_error,
        health_listen,
    })
}
