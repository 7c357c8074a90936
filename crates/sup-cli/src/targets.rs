//! Commands on apps named by target (`sup stop web web2`): one request per
//! target, each given as long as the apps it waits for may take.

use crate::client::{Client, NoAnswer};
use anyhow::{bail, Result};
use std::time::Duration;
use sup_proto::{AppSpec, Request, Response, Target};

/// Runs `one` for each target in turn. With several targets, a failed one
/// is reported and the others still run, and the command fails at the end
/// if any did (as `kill` does with several pids). A daemon that does not
/// answer ends it at once: the next targets would only wait again.
pub fn each(targets: &[String], mut one: impl FnMut(Target) -> Result<()>) -> Result<()> {
    if let [only] = targets {
        return one(Target::parse(only));
    }
    let mut failed = 0;
    for text in targets {
        match one(Target::parse(text)) {
            Ok(()) => {}
            Err(err) if err.is::<NoAnswer>() => return Err(err),
            Err(err) => {
                eprintln!("sup: {err:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} targets failed", targets.len());
    }
    Ok(())
}

/// Sends `request`, which waits for `target`'s apps to stop or get ready:
/// their specs (asked first, within the plain deadline) say how long that
/// may take.
pub fn request_waiting(client: &mut Client, target: &Target, request: Request) -> Result<Response> {
    let time = match client.request(Request::Describe(target.clone()))? {
        Response::Apps(apps) => apps_time(apps.iter().filter_map(|a| a.spec.as_ref())),
        // An unknown target: the request itself will say so, at once.
        _ => Duration::ZERO,
    };
    client.request_waiting(request, time)
}

/// The longest time one of these apps may take to stop and start again:
/// its kill timeout, plus its ready timeout when it waits for readiness.
pub fn apps_time<'a>(specs: impl IntoIterator<Item = &'a AppSpec>) -> Duration {
    specs
        .into_iter()
        .map(|spec| {
            let ready = match spec.health.readiness {
                Some(_) => spec.health.ready_timeout_ms,
                None => 0,
            };
            Duration::from_millis(spec.kill_timeout_ms.saturating_add(ready))
        })
        .max()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_proto::Probe;

    fn spec(kill_ms: u64, ready: Option<u64>) -> AppSpec {
        let mut spec = AppSpec {
            kill_timeout_ms: kill_ms,
            ..AppSpec::default()
        };
        if let Some(ms) = ready {
            spec.health.readiness = Some(Probe::Notify);
            spec.health.ready_timeout_ms = ms;
        }
        spec
    }

    #[test]
    fn the_slowest_app_sets_the_time() {
        let specs = [
            spec(5_000, None),
            spec(1_000, Some(30_000)),
            spec(9_000, None),
        ];
        assert_eq!(apps_time(&specs), Duration::from_millis(31_000));
        assert_eq!(apps_time(&specs[..1]), Duration::from_secs(5));
        assert_eq!(apps_time(&[]), Duration::ZERO);
    }

    #[test]
    fn every_target_runs_and_failures_are_counted() {
        let targets: Vec<String> = ["a", "bad", "c"].map(String::from).into();
        let mut seen = Vec::new();
        let result = each(&targets, |t| {
            seen.push(t.clone());
            match t {
                Target::Name(n) if n == "bad" => bail!("no app named bad"),
                _ => Ok(()),
            }
        });
        assert_eq!(
            seen,
            targets.iter().map(|t| Target::parse(t)).collect::<Vec<_>>()
        );
        assert_eq!(result.unwrap_err().to_string(), "1 of 3 targets failed");
        // One target: its own error, as before.
        let one = each(&targets[1..2], |_| bail!("no app named bad"));
        assert_eq!(one.unwrap_err().to_string(), "no app named bad");
    }
}
