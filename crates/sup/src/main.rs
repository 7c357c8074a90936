//! `sup`: one binary for the CLI and the daemon. `sup daemon` runs the
//! daemon library in the foreground; `sup run` too, with the apps the CLI
//! library read from a file or flags; every other command goes to the CLI
//! library, which reaches the daemon only through its socket.

use std::io::Write;
use std::process::ExitCode;
use sup_cli::{DaemonArgs, Invocation, RunArgs};
use sup_daemon::{DaemonError, Options, RunMode};
use sup_home::{Home, EXIT_ALREADY_RUNNING};

fn main() -> ExitCode {
    match sup_cli::parse() {
        Invocation::Daemon(args) => daemon(args),
        Invocation::Run(args) => run(*args),
        Invocation::Command(line) => sup_cli::run(line),
    }
}

/// `sup run`: the CLI reads the apps, the daemon runs them in the
/// foreground; exits with the daemon's code (the worst app exit).
fn run(args: RunArgs) -> ExitCode {
    let plan = match sup_cli::plan_run(args) {
        Ok(plan) => plan,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "sup: {err:#}");
            return ExitCode::from(2);
        }
    };
    let options = Options {
        run: Some(RunMode {
            apps: plan.apps,
            json: plan.json,
            log_files: plan.log_files,
            exit_on_error: plan.exit_on_error,
            health_listen: plan.health_listen,
            reload: plan.reload,
        }),
        ..Options::default()
    };
    finish(
        Home::from_env()
            .map_err(DaemonError::from)
            .and_then(|home| sup_daemon::run(home, options)),
    )
}

/// `sup daemon`; a busy lock exits with [`EXIT_ALREADY_RUNNING`], which the
/// systemd unit does not restart on.
fn daemon(args: DaemonArgs) -> ExitCode {
    if args.handover_version {
        // Asked by a running daemon before `sup update` execs this binary.
        println!("{}", sup_daemon::HANDOVER_VERSION);
        return ExitCode::SUCCESS;
    }
    let options = Options {
        resurrect: args.resurrect,
        handover: args.handover.map(Into::into),
        run: None,
    };
    finish(
        Home::from_env()
            .map_err(DaemonError::from)
            .and_then(|home| sup_daemon::run(home, options)),
    )
}

/// The daemon's result as an exit code; a busy lock is
/// [`EXIT_ALREADY_RUNNING`].
fn finish(result: Result<i32, DaemonError>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(err) => {
            let code = match err {
                DaemonError::Lock(_) => EXIT_ALREADY_RUNNING as u8,
                _ => 1,
            };
            // Not eprintln!: it panics when stderr fails (a full disk).
            let _ = writeln!(std::io::stderr(), "sup: {:#}", anyhow::Error::from(err));
            ExitCode::from(code)
        }
    }
}
