//! `sup`: one binary for the CLI and the daemon. `sup daemon` runs the
//! daemon library in the foreground; every other command goes to the CLI
//! library, which reaches the daemon only through its socket.

use std::io::Write;
use std::process::ExitCode;
use sup_cli::{DaemonArgs, Invocation};
use sup_daemon::{DaemonError, Options};
use sup_home::{Home, EXIT_ALREADY_RUNNING};

fn main() -> ExitCode {
    match sup_cli::parse() {
        Invocation::Daemon(args) => daemon(args),
        Invocation::Command(line) => sup_cli::run(line),
    }
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
    };
    let result = Home::from_env()
        .map_err(DaemonError::from)
        .and_then(|home| sup_daemon::run(home, options));
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
