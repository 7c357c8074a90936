use super::*;
use sup_proto::RestartPolicy;

fn spec(restart: RestartPolicy) -> AppSpec {
    AppSpec {
        name: "t".into(),
        restart,
        ..AppSpec::default()
    }
}

/// Starts an app and reports its spawn as successful.
fn online(spec: &AppSpec) -> Lifecycle {
    let mut lc = Lifecycle::default();
    assert_eq!(lc.handle(spec, Event::Start), vec![Action::Spawn]);
    lc.handle(spec, Event::Spawned);
    assert_eq!(lc.status(), Status::Online);
    lc
}

fn scheduled(actions: &[Action], want: TimerKind) -> Option<(Duration, u64)> {
    actions.iter().find_map(|a| match a {
        Action::Schedule { kind, after, gen } if *kind == want => Some((*after, *gen)),
        _ => None,
    })
}

#[test]
fn first_crash_restarts_at_once() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    let actions = lc.handle(&s, Event::Exited(ExitKind::Signal(9)));
    assert_eq!(actions, vec![Action::KillGroup, Action::Spawn]);
    assert_eq!(lc.status(), Status::Launching);
    assert_eq!(lc.restarts(), 1);
}

#[test]
fn consecutive_crashes_back_off_and_stability_resets() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    lc.handle(&s, Event::Exited(ExitKind::Code(1)));
    lc.handle(&s, Event::Spawned);
    let mut delays = vec![];
    for _ in 0..4 {
        let actions = lc.handle(&s, Event::Exited(ExitKind::Code(1)));
        let (after, gen) = scheduled(&actions, TimerKind::Restart).expect("restart timer");
        assert_eq!(lc.status(), Status::WaitingRestart);
        delays.push(after.as_millis());
        let actions = lc.handle(
            &s,
            Event::Timer {
                kind: TimerKind::Restart,
                gen,
            },
        );
        assert_eq!(actions, vec![Action::Spawn]);
        lc.handle(&s, Event::Spawned);
    }
    assert_eq!(delays, [100, 200, 400, 800]);
    // The stable timer of the current run resets the backoff.
    let gen = lc.gen;
    lc.handle(
        &s,
        Event::Timer {
            kind: TimerKind::Stable,
            gen,
        },
    );
    assert_eq!(lc.unstable_restarts(), 0);
    let actions = lc.handle(&s, Event::Exited(ExitKind::Code(1)));
    assert!(actions.contains(&Action::Spawn), "{actions:?}");
}

#[test]
fn backoff_is_capped_and_respects_restart_delay() {
    let mut s = spec(RestartPolicy::Always);
    s.backoff_max_ms = 1_000;
    assert_eq!(backoff_delay(&s, 30), Duration::from_secs(1));
    s.restart_delay_ms = 250;
    assert_eq!(backoff_delay(&s, 0), Duration::from_millis(250));
    assert_eq!(backoff_delay(&s, 1), Duration::from_millis(250));
    assert_eq!(backoff_delay(&s, 3), Duration::from_millis(400));
}

#[test]
fn stale_timers_are_ignored() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    lc.handle(&s, Event::Exited(ExitKind::Code(1)));
    lc.handle(&s, Event::Spawned);
    let actions = lc.handle(&s, Event::Exited(ExitKind::Code(1)));
    let (_, gen) = scheduled(&actions, TimerKind::Restart).unwrap();
    lc.handle(&s, Event::Stop { by_user: true });
    assert_eq!(lc.status(), Status::Stopped);
    assert!(lc
        .handle(
            &s,
            Event::Timer {
                kind: TimerKind::Restart,
                gen
            }
        )
        .is_empty());
    assert_eq!(lc.status(), Status::Stopped);
}

#[test]
fn policies_decide_on_exit() {
    for (policy, exit, restarts) in [
        (RestartPolicy::OnFailure, ExitKind::Code(0), false),
        (RestartPolicy::OnFailure, ExitKind::Code(1), true),
        (RestartPolicy::OnFailure, ExitKind::Signal(9), true),
        (RestartPolicy::No, ExitKind::Code(1), false),
        (RestartPolicy::UnlessStopped, ExitKind::Code(0), true),
        (RestartPolicy::Always, ExitKind::Code(0), true),
    ] {
        let s = spec(policy);
        let mut lc = online(&s);
        let actions = lc.handle(&s, Event::Exited(exit));
        assert_eq!(
            actions.contains(&Action::Spawn),
            restarts,
            "{policy:?} {exit}"
        );
        if !restarts {
            assert_eq!(lc.status(), Status::Stopped);
            assert_eq!(lc.last_exit(), Some(exit));
        }
    }
}

#[test]
fn max_restarts_turns_errored() {
    let mut s = spec(RestartPolicy::Always);
    s.max_restarts = Some(2);
    s.backoff_max_ms = 0;
    let mut lc = online(&s);
    for _ in 0..2 {
        let actions = lc.handle(&s, Event::Exited(ExitKind::Code(1)));
        assert!(actions.contains(&Action::Spawn), "{actions:?}");
        lc.handle(&s, Event::Spawned);
    }
    lc.handle(&s, Event::Exited(ExitKind::Code(1)));
    assert_eq!(lc.status(), Status::Errored);
    assert!(lc.error().unwrap().contains("max-restarts 2"));
    // A user start gives it a fresh chance.
    assert_eq!(lc.handle(&s, Event::Start), vec![Action::Spawn]);
    assert_eq!(lc.unstable_restarts(), 0);
}

#[test]
fn stop_signals_then_kills_after_timeout() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    let actions = lc.handle(&s, Event::Stop { by_user: true });
    assert_eq!(actions[0], Action::SignalStop);
    let (after, gen) = scheduled(&actions, TimerKind::Kill).unwrap();
    assert_eq!(after, Duration::from_millis(s.kill_timeout_ms));
    assert_eq!(lc.status(), Status::Stopping);
    let kill = lc.handle(
        &s,
        Event::Timer {
            kind: TimerKind::Kill,
            gen,
        },
    );
    assert_eq!(kill, vec![Action::KillGroup]);
    assert!(lc.handle(&s, Event::Exited(ExitKind::Signal(9))).is_empty());
    assert_eq!(lc.status(), Status::Stopped);
    assert!(lc.user_stopped());
}

#[test]
fn shutdown_stop_is_not_a_user_stop() {
    let s = spec(RestartPolicy::UnlessStopped);
    let mut lc = online(&s);
    lc.handle(&s, Event::Stop { by_user: false });
    lc.handle(&s, Event::Exited(ExitKind::Signal(15)));
    assert!(!lc.user_stopped());
}

#[test]
fn restart_stops_then_spawns_and_counts() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    let actions = lc.handle(&s, Event::Restart);
    assert!(actions.contains(&Action::SignalStop));
    assert_eq!(
        lc.handle(&s, Event::Exited(ExitKind::Code(0))),
        vec![Action::Spawn]
    );
    assert_eq!(lc.restarts(), 1);
}

#[test]
fn stop_while_stopping_cancels_a_pending_restart() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    lc.handle(&s, Event::Restart);
    lc.handle(&s, Event::Stop { by_user: true });
    assert!(lc.handle(&s, Event::Exited(ExitKind::Code(0))).is_empty());
    assert_eq!(lc.status(), Status::Stopped);
}

#[test]
fn spawn_failure_is_errored_not_a_loop() {
    let s = spec(RestartPolicy::Always);
    let mut lc = Lifecycle::default();
    lc.handle(&s, Event::Start);
    let failed = Event::SpawnFailed {
        reason: "no such file".into(),
        transient: false,
    };
    assert!(lc.handle(&s, failed).is_empty());
    assert_eq!(lc.status(), Status::Errored);
    assert!(lc.error().unwrap().contains("no such file"));
}

#[test]
fn a_transient_spawn_failure_is_retried_with_backoff() {
    let s = spec(RestartPolicy::Always);
    let mut lc = Lifecycle::default();
    lc.handle(&s, Event::Start);
    let mut delays = vec![];
    for _ in 0..3 {
        let failed = Event::SpawnFailed {
            reason: "Resource temporarily unavailable".into(),
            transient: true,
        };
        let actions = lc.handle(&s, failed);
        assert_eq!(lc.status(), Status::WaitingRestart);
        let (after, gen) = scheduled(&actions, TimerKind::Restart).expect("a retry");
        delays.push(after.as_millis());
        let restart = Event::Timer {
            kind: TimerKind::Restart,
            gen,
        };
        assert_eq!(lc.handle(&s, restart), vec![Action::Spawn]);
    }
    assert_eq!(delays, [100, 100, 200]);
    assert!(lc.error().unwrap().contains("retrying"));
    // Once the machine has pids again, the app runs.
    lc.handle(&s, Event::Spawned);
    assert_eq!(lc.status(), Status::Online);
}

#[test]
fn readiness_holds_launching_until_ready() {
    let mut s = spec(RestartPolicy::Always);
    s.health.readiness = Some(sup_proto::Probe::Notify);
    let mut lc = Lifecycle::default();
    lc.handle(&s, Event::Start);
    let actions = lc.handle(&s, Event::Spawned);
    assert_eq!(lc.status(), Status::Launching);
    let (after, _) = scheduled(&actions, TimerKind::ReadyTimeout).unwrap();
    assert_eq!(after, Duration::from_millis(s.health.ready_timeout_ms));
    lc.handle(&s, Event::Ready);
    assert_eq!(lc.status(), Status::Online);
}

#[test]
fn never_ready_and_unhealthy_restart_like_a_crash() {
    let mut s = spec(RestartPolicy::OnFailure);
    s.health.readiness = Some(sup_proto::Probe::Notify);
    let mut lc = Lifecycle::default();
    lc.handle(&s, Event::Start);
    let actions = lc.handle(&s, Event::Spawned);
    let (_, gen) = scheduled(&actions, TimerKind::ReadyTimeout).unwrap();
    let actions = lc.handle(
        &s,
        Event::Timer {
            kind: TimerKind::ReadyTimeout,
            gen,
        },
    );
    assert!(actions.contains(&Action::SignalStop));
    assert!(lc.error().unwrap().contains("not ready"));
    // Even a clean exit on SIGTERM counts as a failure: on-failure restarts.
    let actions = lc.handle(&s, Event::Exited(ExitKind::Code(0)));
    assert!(actions.contains(&Action::Spawn), "{actions:?}");
    assert_eq!(lc.restarts(), 1);
    lc.handle(&s, Event::Ready);
    assert_eq!(lc.status(), Status::Online);
    lc.handle(&s, Event::Unhealthy("probe failed 3 times".into()));
    assert_eq!(lc.status(), Status::Stopping);
    lc.handle(&s, Event::Exited(ExitKind::Signal(15)));
    assert_eq!(lc.restarts(), 2);
    // Two unstable runs in a row: the backoff applies as after a crash.
    assert_eq!(lc.status(), Status::WaitingRestart);
}

#[test]
fn a_daemonized_app_is_errored_without_a_restart() {
    let s = spec(RestartPolicy::Always);
    let mut lc = online(&s);
    let actions = lc.handle(&s, Event::Daemonized("left pid 7 running".into()));
    assert!(actions.is_empty(), "no restart and no kill: {actions:?}");
    assert_eq!(lc.status(), Status::Errored);
    assert_eq!(lc.restarts(), 0);
    assert!(lc.error().unwrap().contains("pid 7"));
}

#[test]
fn exit_display() {
    assert_eq!(ExitKind::Code(3).to_string(), "exit code 3");
    assert_eq!(ExitKind::Signal(9).to_string(), "signal SIGKILL");
}

#[test]
fn stop_exit_codes_are_not_restarted() {
    let s = AppSpec {
        stop_exit_codes: vec![0, 3],
        ..spec(RestartPolicy::Always)
    };
    for code in [0, 3] {
        let mut lc = online(&s);
        let actions = lc.handle(&s, Event::Exited(ExitKind::Code(code)));
        assert_eq!(actions, vec![Action::KillGroup], "exit {code}");
        assert_eq!(lc.status(), Status::Stopped);
        assert_eq!(lc.restarts(), 0);
    }
    // Other codes and signals restart as before.
    for exit in [ExitKind::Code(1), ExitKind::Signal(3)] {
        let mut lc = online(&s);
        lc.handle(&s, Event::Exited(exit));
        assert_eq!(lc.status(), Status::Launching, "{exit}");
    }
}
