//! The app machine, driven through its inputs without a single process.

use super::*;
use crate::probe::Outcome;
use sup_proto::{EventKind, Probe, RestartPolicy};

/// A machine under test, its spec and a clock the test moves.
struct Harness {
    m: AppMachine,
    spec: AppSpec,
    now: Instant,
    next_pid: u32,
}

impl Harness {
    fn new(spec: AppSpec) -> Harness {
        Harness {
            m: AppMachine::new(1),
            spec,
            now: Instant::now(),
            next_pid: 100,
        }
    }

    fn with_sockets() -> Harness {
        Harness::new(AppSpec {
            name: "web".into(),
            listen: vec!["127.0.0.1:0".into()],
            ..AppSpec::default()
        })
    }

    fn send(&mut self, input: Input) -> Vec<Effect> {
        self.m.handle(&self.spec, input, self.now)
    }

    /// Answers every spawn in `effects` with a new pid (as the supervisor
    /// does at once); returns all effects, spawned pids in order.
    fn run(&mut self, input: Input) -> (Vec<Effect>, Vec<u32>) {
        let mut all = Vec::new();
        let mut pids = Vec::new();
        let mut queue = std::collections::VecDeque::from(self.send(input));
        while let Some(effect) = queue.pop_front() {
            if let Effect::Spawn { slot, role } = effect {
                self.next_pid += 1;
                pids.push(self.next_pid);
                let more = self.send(Input::Spawned {
                    slot,
                    role,
                    pid: self.next_pid,
                });
                queue.extend(more);
            }
            all.push(effect);
        }
        (all, pids)
    }

    /// Starts the app; returns the pid of its instance.
    fn start(&mut self) -> u32 {
        let (_, pids) = self.run(Input::Start);
        assert_eq!(self.m.status(), Status::Online);
        pids[0]
    }

    fn exit(&mut self, pid: u32, exit: ExitKind, group_alive: bool) -> (Vec<Effect>, Vec<u32>) {
        self.run(Input::Exited {
            pid,
            exit,
            group_alive,
            escaped: None,
        })
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }
}

fn signalled(effects: &[Effect], pid: u32) -> Vec<Signal> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Signal { pid: p, signal } if *p == pid => Some(*signal),
            _ => None,
        })
        .collect()
}

fn timer(effects: &[Effect], pred: impl Fn(&Timer) -> bool) -> Option<Timer> {
    effects.iter().find_map(|e| match e {
        Effect::Arm { timer, .. } if pred(timer) => Some(*timer),
        _ => None,
    })
}

fn kill_timer(effects: &[Effect]) -> Timer {
    timer(effects, |t| {
        matches!(
            t,
            Timer::Slot {
                kind: TimerKind::Kill,
                ..
            }
        )
    })
    .expect("a kill timer")
}

fn recorded(effects: &[Effect], kind: EventKind) -> Option<String> {
    effects.iter().find_map(|e| match e {
        Effect::Record { kind: k, detail } if *k == kind => Some(detail.clone()),
        _ => None,
    })
}

fn reload_result(effects: &[Effect]) -> Option<Result<String, String>> {
    effects.iter().find_map(|e| match e {
        Effect::ReloadDone { result, .. } => Some(result.clone()),
        _ => None,
    })
}

fn spawns(effects: &[Effect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, Effect::Spawn { .. }))
        .count()
}

#[test]
fn start_spawns_and_goes_online() {
    let mut h = Harness::new(AppSpec::default());
    let (effects, pids) = h.run(Input::Start);
    assert_eq!(pids.len(), 1);
    assert_eq!(
        recorded(&effects, EventKind::Started),
        Some(format!("pid {}", pids[0]))
    );
    assert!(recorded(&effects, EventKind::Online).is_some());
    assert_eq!(h.m.first().running().map(|p| p.pid), Some(pids[0]));
}

#[test]
fn stop_during_launch_signals_then_settles_stopped() {
    let mut h = Harness::new(AppSpec {
        health: sup_proto::HealthSpec {
            readiness: Some(Probe::Notify),
            ..Default::default()
        },
        ..AppSpec::default()
    });
    let (_, pids) = h.run(Input::Start);
    assert_eq!(h.m.status(), Status::Launching);
    let effects = h.send(Input::Stop { by_user: true });
    assert_eq!(signalled(&effects, pids[0]), vec![Signal::SIGTERM]);
    assert_eq!(h.m.status(), Status::Stopping);
    let (effects, _) = h.exit(pids[0], ExitKind::Signal(15), false);
    assert_eq!(h.m.status(), Status::Stopped);
    assert!(effects.contains(&Effect::StopLeftovers { slot: 0, pid: None }));
    assert!(h.m.is_quiet());
}

#[test]
fn kill_timeout_sends_sigkill_to_the_group() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let effects = h.send(Input::Stop { by_user: false });
    let kill = kill_timer(&effects);
    let effects = h.send(Input::Timer(kill));
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGKILL]);
    // A kill timer of an earlier stop is stale once the app is back.
    h.exit(pid, ExitKind::Signal(9), false);
    h.run(Input::Start);
    assert!(signalled(&h.send(Input::Timer(kill)), pid).is_empty());
}

#[test]
fn a_stop_waits_for_the_whole_group_to_drain() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Stop { by_user: true });
    let (effects, _) = h.exit(pid, ExitKind::Code(0), true);
    assert!(effects.contains(&Effect::WatchGroup { pid }));
    assert_eq!(h.m.status(), Status::Stopping, "still draining");
    assert!(!effects.iter().any(|e| matches!(e, Effect::Release { .. })));
    let effects = h.send(Input::GroupGone { pid });
    assert!(effects.contains(&Effect::Release { pid, slot: Some(0) }));
    assert_eq!(h.m.status(), Status::Stopped);
}

#[test]
fn a_crash_while_draining_a_restart_still_restarts_once_drained() {
    // `sup restart` signals the instance; it exits but its group lingers.
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Restart);
    let (effects, pids) = h.exit(pid, ExitKind::Signal(15), true);
    assert!(pids.is_empty(), "no spawn while the group drains");
    assert_eq!(spawns(&effects), 0);
    let (effects, pids) = h.run(Input::GroupGone { pid });
    assert_eq!(pids.len(), 1, "{effects:?}");
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn a_restart_after_a_crash_waits_for_the_leftover_group() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let (effects, pids) = h.exit(pid, ExitKind::Signal(9), true);
    assert!(pids.is_empty(), "the leftover group may hold the port");
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGKILL]);
    assert_eq!(
        recorded(&effects, EventKind::Restarting).as_deref(),
        Some("once the last process group is gone")
    );
    assert!(effects.contains(&Effect::Release { pid, slot: Some(0) }));
    assert_eq!(h.m.status(), Status::Launching);
    let (_, pids) = h.run(Input::GroupGone { pid });
    assert_eq!(pids.len(), 1);
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn a_user_stop_while_the_spawn_waits_is_done_at_once() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.exit(pid, ExitKind::Signal(9), true);
    h.send(Input::Stop { by_user: true });
    assert_eq!(h.m.status(), Status::Stopped);
    let (_, pids) = h.run(Input::GroupGone { pid });
    assert!(
        pids.is_empty(),
        "a stopped app does not start when the group goes"
    );
}

#[test]
fn waiting_restart_records_the_real_delay() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let (_, pids) = h.exit(pid, ExitKind::Code(1), false);
    let (effects, _) = h.exit(pids[0], ExitKind::Code(1), false);
    assert_eq!(h.m.status(), Status::WaitingRestart);
    assert_eq!(
        recorded(&effects, EventKind::Restarting).as_deref(),
        Some("restart in 100 ms")
    );
    assert_eq!(
        h.m.first().restart_in(h.now),
        Some(Duration::from_millis(100))
    );
}

#[test]
fn a_daemonizing_app_turns_errored() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let check = |h: &Harness| {
        h.m.wants_escape_check(&h.spec, pid, ExitKind::Code(0), h.now)
    };
    assert_eq!(check(&h), Some(0));
    h.advance(5_000);
    assert_eq!(check(&h), None);
    let (effects, pids) = h.run(Input::Exited {
        pid,
        exit: ExitKind::Code(0),
        group_alive: false,
        escaped: Some(4242),
    });
    assert!(pids.is_empty());
    assert_eq!(h.m.status(), Status::Errored);
    assert!(recorded(&effects, EventKind::Errored)
        .unwrap()
        .contains("4242"));
}

#[test]
fn spawn_failure_is_errored() {
    let mut h = Harness::new(AppSpec::default());
    let effects = h.send(Input::Start);
    assert_eq!(spawns(&effects), 1);
    h.send(Input::SpawnFailed {
        slot: 0,
        role: Role::Main,
        error: "No such file".into(),
        transient: false,
    });
    assert_eq!(h.m.status(), Status::Errored);
}

#[test]
fn a_transient_spawn_failure_waits_and_retries() {
    let mut h = Harness::new(AppSpec::default());
    h.send(Input::Start);
    let effects = h.send(Input::SpawnFailed {
        slot: 0,
        role: Role::Main,
        error: "Resource temporarily unavailable".into(),
        transient: true,
    });
    assert_eq!(h.m.status(), Status::WaitingRestart);
    let retry = timer(&effects, |t| {
        matches!(
            t,
            Timer::Slot {
                kind: TimerKind::Restart,
                ..
            }
        )
    })
    .expect("a retry is scheduled");
    let (_, pids) = h.run(Input::Timer(retry));
    assert_eq!(pids.len(), 1);
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn held_sockets_close_when_the_app_goes_down() {
    let mut h = Harness::with_sockets();
    let pid = h.start();
    let effects = h.send(Input::Stop { by_user: true });
    assert!(!effects.contains(&Effect::CloseSockets));
    let (effects, _) = h.exit(pid, ExitKind::Signal(15), false);
    assert!(effects.contains(&Effect::CloseSockets));
}

/// Starts a reload of a started app; returns the new instance's pid.
fn begin_reload(h: &mut Harness) -> (Vec<Effect>, u32) {
    let (effects, pids) = h.run(Input::Reload { token: 7 });
    assert_eq!(pids.len(), 1, "{effects:?}");
    assert_eq!(h.m.incoming().map(|p| p.pid), Some(pids[0]));
    (effects, pids[0])
}

#[test]
fn reload_promotes_the_new_instance_once_ready() {
    let mut h = Harness::with_sockets();
    let old = h.start();
    let (effects, new) = begin_reload(&mut h);
    let up = timer(&effects, |t| matches!(t, Timer::UpLongEnough { .. })).unwrap();
    assert!(
        signalled(&effects, old).is_empty(),
        "old serves until new is ready"
    );
    let effects = h.send(Input::Timer(up));
    assert_eq!(signalled(&effects, old), vec![Signal::SIGTERM]);
    assert_eq!(h.m.first().running().map(|p| p.pid), Some(new));
    assert_eq!(
        reload_result(&effects),
        Some(Ok(format!("reloaded, pid {old} -> {new}")))
    );
    assert_eq!(h.m.retired_pids().collect::<Vec<_>>(), vec![old]);
    // The retired one is SIGKILLed after its kill timeout, then forgotten.
    let deadline = timer(&effects, |t| matches!(t, Timer::RetiredDeadline { .. })).unwrap();
    assert_eq!(
        signalled(&h.send(Input::Timer(deadline)), old),
        vec![Signal::SIGKILL]
    );
    let effects = h.send(Input::Exited {
        pid: old,
        exit: ExitKind::Signal(9),
        group_alive: false,
        escaped: None,
    });
    assert!(effects.contains(&Effect::Release {
        pid: old,
        slot: None
    }));
    assert!(h.m.retired_pids().next().is_none());
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn reload_timeout_keeps_the_old_instance() {
    let mut h = Harness::with_sockets();
    let old = h.start();
    let (effects, new) = begin_reload(&mut h);
    let timeout = timer(&effects, |t| matches!(t, Timer::ReloadTimeout { .. })).unwrap();
    let effects = h.send(Input::Timer(timeout));
    assert_eq!(signalled(&effects, new), vec![Signal::SIGKILL]);
    assert!(signalled(&effects, old).is_empty());
    assert!(matches!(reload_result(&effects), Some(Err(why)) if why.contains("not ready")));
    assert_eq!(h.m.first().running().map(|p| p.pid), Some(old));
    assert!(!h.m.is_quiet() || h.m.retired_pids().count() == 1);
}

#[test]
fn reload_whose_new_instance_crashes_keeps_the_old_one() {
    let mut h = Harness::with_sockets();
    let old = h.start();
    let (_, new) = begin_reload(&mut h);
    let (effects, pids) = h.exit(new, ExitKind::Code(1), false);
    assert!(pids.is_empty());
    assert!(
        matches!(reload_result(&effects), Some(Err(why)) if why.contains("exited before it was ready"))
    );
    assert_eq!(h.m.first().running().map(|p| p.pid), Some(old));
    assert_eq!(h.m.status(), Status::Online);
    assert!(h.m.incoming().is_none());
}

#[test]
fn reload_with_a_readiness_probe_waits_for_it() {
    let mut h = Harness::with_sockets();
    h.spec.health.readiness = Some(Probe::Tcp {
        addr: "127.0.0.1:1".into(),
    });
    let (_, pids) = h.run(Input::Start);
    let old = pids[0];
    let probe = |ok| Outcome {
        ok,
        detail: String::new(),
        latency: Duration::ZERO,
    };
    h.send(Input::Probed {
        pid: old,
        kind: ProbeKind::Readiness,
        outcome: probe(true),
    });
    assert_eq!(h.m.status(), Status::Online);
    let (_, new) = begin_reload(&mut h);
    assert!(h.m.wants_probe(new, ProbeKind::Readiness));
    let effects = h.send(Input::Probed {
        pid: new,
        kind: ProbeKind::Readiness,
        outcome: probe(false),
    });
    assert!(effects.contains(&Effect::Probe {
        pid: new,
        kind: ProbeKind::Readiness,
        after: READY_EVERY
    }));
    let effects = h.send(Input::Probed {
        pid: new,
        kind: ProbeKind::Readiness,
        outcome: probe(true),
    });
    assert!(matches!(reload_result(&effects), Some(Ok(_))));
}

#[test]
fn a_stop_during_a_reload_cancels_it() {
    let mut h = Harness::with_sockets();
    let old = h.start();
    let (_, new) = begin_reload(&mut h);
    let effects = h.send(Input::Stop { by_user: true });
    assert_eq!(signalled(&effects, new), vec![Signal::SIGKILL]);
    assert_eq!(signalled(&effects, old), vec![Signal::SIGTERM]);
    assert!(matches!(reload_result(&effects), Some(Err(_))));
    h.exit(old, ExitKind::Signal(15), false);
    assert!(!h.m.is_quiet(), "the new instance is still stopping");
    h.exit(new, ExitKind::Signal(9), false);
    assert!(h.m.is_quiet());
}

#[test]
fn the_old_instance_dying_during_a_reload_cancels_it() {
    let mut h = Harness::with_sockets();
    let old = h.start();
    let (_, new) = begin_reload(&mut h);
    let (effects, _) = h.exit(old, ExitKind::Code(1), false);
    assert_eq!(signalled(&effects, new), vec![Signal::SIGKILL]);
    assert!(recorded(&effects, EventKind::ReloadFailed).is_some());
}

#[test]
fn a_second_reload_is_refused_while_one_runs() {
    let mut h = Harness::with_sockets();
    h.start();
    begin_reload(&mut h);
    let effects = h.send(Input::Reload { token: 8 });
    assert_eq!(
        effects,
        vec![Effect::ReloadDone {
            token: 8,
            result: Err("a reload is already in progress".into())
        }]
    );
}

#[test]
fn reload_without_sockets_restarts() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let effects = h.send(Input::Reload { token: 1 });
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGTERM]);
    assert!(
        matches!(reload_result(&effects), Some(Ok(note)) if note.contains("restarted instead"))
    );
}

#[test]
fn rolling_reload_replaces_slots_one_at_a_time() {
    let mut h = Harness::with_sockets();
    h.m = AppMachine::new(3);
    let (_, olds) = h.run(Input::Start);
    assert_eq!(olds.len(), 3);
    assert_eq!(h.m.status(), Status::Online);
    let (mut effects, mut new) = begin_reload(&mut h);
    let mut news = Vec::new();
    for (i, old) in olds.iter().enumerate() {
        let up = timer(
            &effects,
            |t| matches!(t, Timer::UpLongEnough { pid } if *pid == new),
        )
        .unwrap();
        // Until this new one is ready, every old one still serves.
        assert_eq!(h.m.slots()[i].running().map(|p| p.pid), Some(*old));
        let (more, pids) = h.run(Input::Timer(up));
        assert_eq!(signalled(&more, *old), vec![Signal::SIGTERM]);
        news.push(new);
        effects = more;
        if i < 2 {
            assert_eq!(pids.len(), 1, "the next slot's new instance");
            new = pids[0];
        } else {
            assert!(matches!(reload_result(&effects), Some(Ok(_))));
        }
    }
    let running: Vec<u32> =
        h.m.slots()
            .iter()
            .filter_map(|(_, s)| s.running().map(|p| p.pid))
            .collect();
    assert_eq!(running, news);
}

#[test]
fn one_crashed_instance_leaves_the_others_running() {
    let mut h = Harness::new(AppSpec {
        restart: RestartPolicy::Always,
        ..AppSpec::default()
    });
    h.m = AppMachine::new(2);
    let (_, pids) = h.run(Input::Start);
    let (effects, new) = h.exit(pids[0], ExitKind::Signal(9), false);
    assert_eq!(new.len(), 1);
    assert!(signalled(&effects, pids[1]).is_empty());
    assert_eq!(h.m.slots()[1].running().map(|p| p.pid), Some(pids[1]));
    assert_eq!(h.m.status(), Status::Online);
    assert_eq!(h.m.restarts(), 1);
}

#[test]
fn liveness_failures_restart_the_instance() {
    let mut h = Harness::new(AppSpec::default());
    h.spec.health.liveness = Some(Probe::Tcp {
        addr: "127.0.0.1:1".into(),
    });
    h.spec.health.retries = 2;
    let (effects, pids) = h.run(Input::Start);
    let pid = pids[0];
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Probe {
            kind: ProbeKind::Liveness,
            ..
        }
    )));
    let bad = || Outcome {
        ok: false,
        detail: "refused".into(),
        latency: Duration::ZERO,
    };
    let effects = h.send(Input::Probed {
        pid,
        kind: ProbeKind::Liveness,
        outcome: bad(),
    });
    assert!(recorded(&effects, EventKind::Unhealthy)
        .unwrap()
        .contains("1 of 2"));
    let effects = h.send(Input::Probed {
        pid,
        kind: ProbeKind::Liveness,
        outcome: bad(),
    });
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGTERM]);
    assert_eq!(h.m.status(), Status::Stopping);
    // A stale result of the old instance changes nothing.
    assert!(!h.m.wants_probe(pid, ProbeKind::Liveness));
}

#[test]
fn delete_is_gone_once_quiet() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Delete);
    assert!(!h.m.is_gone());
    h.exit(pid, ExitKind::Signal(15), true);
    assert!(!h.m.is_gone(), "its group still drains");
    h.send(Input::GroupGone { pid });
    assert!(h.m.is_gone());
}

fn running(m: &AppMachine) -> Vec<(usize, u32)> {
    m.slots()
        .iter()
        .filter_map(|(i, s)| s.running().map(|p| (i, p.pid)))
        .collect()
}

#[test]
fn scale_up_starts_new_instances_and_leaves_the_others() {
    let mut h = Harness::new(AppSpec::default());
    let first = h.start();
    let (effects, pids) = h.run(Input::Scale { to: 3 });
    assert_eq!(pids.len(), 2);
    assert!(signalled(&effects, first).is_empty());
    assert_eq!(running(&h.m), vec![(0, first), (1, pids[0]), (2, pids[1])]);
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn scale_down_stops_the_highest_then_forgets_them() {
    let mut h = Harness::new(AppSpec::default());
    h.m = AppMachine::new(3);
    let (_, pids) = h.run(Input::Start);
    let effects = h.send(Input::Scale { to: 1 });
    assert_eq!(signalled(&effects, pids[1]), vec![Signal::SIGTERM]);
    assert_eq!(signalled(&effects, pids[2]), vec![Signal::SIGTERM]);
    assert!(signalled(&effects, pids[0]).is_empty());
    h.exit(pids[1], ExitKind::Signal(15), false);
    h.exit(pids[2], ExitKind::Signal(15), false);
    assert_eq!(h.m.slots().indices(), vec![0]);
    assert_eq!(h.m.status(), Status::Online);
    // Scaling to zero keeps one instance: deleting the app does that.
    h.send(Input::Scale { to: 0 });
    assert_eq!(h.m.slots().indices(), vec![0]);
}

#[test]
fn a_new_instance_of_a_stopped_app_stays_stopped() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Stop { by_user: true });
    h.exit(pid, ExitKind::Signal(15), false);
    let (_, pids) = h.run(Input::Scale { to: 2 });
    assert!(pids.is_empty());
    assert_eq!(h.m.status(), Status::Stopped);
}

#[test]
fn one_instance_restarts_alone_and_removal_keeps_the_other_indices() {
    let mut h = Harness::new(AppSpec::default());
    h.m = AppMachine::new(3);
    let (_, pids) = h.run(Input::Start);
    let effects = h.send(Input::OneSlot {
        slot: 1,
        input: Box::new(Input::Restart),
    });
    assert_eq!(signalled(&effects, pids[1]), vec![Signal::SIGTERM]);
    let (_, new) = h.exit(pids[1], ExitKind::Signal(15), false);
    assert_eq!(new.len(), 1);
    assert_eq!(running(&h.m), vec![(0, pids[0]), (1, new[0]), (2, pids[2])]);
    h.send(Input::Remove { slot: 0 });
    h.exit(pids[0], ExitKind::Signal(15), false);
    assert_eq!(h.m.slots().indices(), vec![1, 2]);
    assert_eq!(h.m.health(&h.spec).failures, 0, "the first slot is now 1");
    // A new instance takes the lowest free index.
    let (_, more) = h.run(Input::Scale { to: 3 });
    assert_eq!(running(&h.m)[0], (0, more[0]));
    // The last instance is never removed.
    let mut single = Harness::new(AppSpec::default());
    single.start();
    assert!(single.send(Input::Remove { slot: 0 }).is_empty());
}

#[test]
fn signal_goes_to_each_main_process_or_one() {
    let mut h = Harness::new(AppSpec::default());
    h.m = AppMachine::new(2);
    let (_, pids) = h.run(Input::Start);
    let all = h.send(Input::Signal {
        slot: None,
        signal: Signal::SIGUSR2,
    });
    assert_eq!(
        all,
        vec![
            Effect::Kill {
                pid: pids[0],
                signal: Signal::SIGUSR2
            },
            Effect::Kill {
                pid: pids[1],
                signal: Signal::SIGUSR2
            }
        ]
    );
    let one = h.send(Input::Signal {
        slot: Some(1),
        signal: Signal::SIGHUP,
    });
    assert_eq!(
        one,
        vec![Effect::Kill {
            pid: pids[1],
            signal: Signal::SIGHUP
        }]
    );
}

fn renew(slot: Option<usize>) -> Input {
    Input::Renew {
        slot,
        why: "max memory".into(),
    }
}

#[test]
fn a_trigger_restarts_an_app_without_sockets() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let effects = h.send(renew(None));
    assert_eq!(
        recorded(&effects, EventKind::Triggered).as_deref(),
        Some("max memory; restarting")
    );
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGTERM]);
    let (_, pids) = h.exit(pid, ExitKind::Signal(15), false);
    assert_eq!(pids.len(), 1, "restarted once");
    assert_eq!(h.m.status(), Status::Online);
    // Its reason is the trigger's, never "restarted by the user".
    let slot = h.m.slots().iter().next().unwrap().1;
    assert_eq!(slot.lc().restart_reason(), Some("max memory"));
}

#[test]
fn a_trigger_reloads_one_instance_when_sockets_are_held() {
    let mut h = Harness::with_sockets();
    h.m = AppMachine::new(2);
    h.start();
    let before = running(&h.m);
    let (effects, pids) = h.run(renew(Some(1)));
    assert_eq!(
        recorded(&effects, EventKind::Triggered).as_deref(),
        Some("max memory; reloading")
    );
    assert_eq!(pids.len(), 1, "one new instance");
    assert_eq!(h.m.reloading_slot(), Some(1));
    assert!(effects.iter().all(|e| !matches!(e, Effect::Signal { .. })));
    // Once the new one is up long enough, it replaces slot 1 only.
    h.advance(h.spec.min_uptime_ms);
    let up = timer(&effects, |t| matches!(t, Timer::UpLongEnough { .. })).unwrap();
    h.send(Input::Timer(up));
    let after = running(&h.m);
    assert_eq!(after[0], before[0], "slot 0 untouched");
    assert_eq!(after[1], (1, pids[0]));
}

#[test]
fn a_trigger_leaves_a_stopped_app_stopped() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Stop { by_user: true });
    h.exit(pid, ExitKind::Signal(15), false);
    let (effects, pids) = h.run(renew(None));
    assert!(pids.is_empty());
    assert!(effects.is_empty());
    assert_eq!(h.m.status(), Status::Stopped);
}

#[test]
fn with_held_sockets_a_crashed_instances_leftovers_stop_gracefully_while_the_next_starts() {
    let mut h = Harness::with_sockets();
    let pid = h.start();
    // The master died; its workers (same group) still serve on the socket.
    let (effects, pids) = h.exit(pid, ExitKind::Signal(9), true);
    assert_eq!(pids.len(), 1, "the next instance starts at once");
    assert_eq!(
        signalled(&effects, pid),
        vec![Signal::SIGTERM],
        "{effects:?}"
    );
    assert_eq!(h.m.retired_pids().collect::<Vec<_>>(), vec![pid]);
    let deadline = timer(&effects, |t| matches!(t, Timer::RetiredDeadline { .. })).unwrap();
    assert_eq!(
        signalled(&h.send(Input::Timer(deadline)), pid),
        vec![Signal::SIGKILL]
    );
    h.send(Input::GroupGone { pid });
    assert!(h.m.retired_pids().next().is_none());
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn instances_on_their_way_out_are_never_started_again() {
    for input in [Input::Start, Input::Restart, Input::Reload { token: 3 }] {
        let mut h = Harness::with_sockets();
        h.m = AppMachine::new(3);
        let (_, pids) = h.run(Input::Start);
        h.send(Input::Scale { to: 1 });
        // While 1 and 2 are still stopping, something asks to (re)start.
        h.run(input.clone());
        h.run(Input::OneSlot {
            slot: 2,
            input: Box::new(Input::Restart),
        });
        for pid in &pids[1..] {
            h.exit(*pid, ExitKind::Signal(15), false);
        }
        assert_eq!(h.m.slots().indices(), vec![0], "{input:?}");
        assert_eq!(h.m.instance_count(), 1);
    }
}

#[test]
fn an_app_being_deleted_never_starts_again() {
    for input in [
        Input::Start,
        Input::Restart,
        Input::Scale { to: 3 },
        Input::OneSlot {
            slot: 0,
            input: Box::new(Input::Start),
        },
    ] {
        let mut h = Harness::new(AppSpec::default());
        let pid = h.start();
        h.send(Input::Delete);
        let (effects, spawned) = h.run(input.clone());
        assert!(
            spawned.is_empty() && effects.is_empty(),
            "{input:?}: {effects:?}"
        );
        h.exit(pid, ExitKind::Signal(15), false);
        assert!(h.m.is_gone(), "{input:?}");
    }
    let mut h = Harness::with_sockets();
    h.start();
    h.send(Input::Delete);
    let effects = h.send(Input::Reload { token: 9 });
    assert!(matches!(reload_result(&effects), Some(Err(why)) if why.contains("deleted")));
}

#[test]
fn a_stopping_instance_is_never_checked_for_escapes() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Restart);
    assert_eq!(h.m.status(), Status::Stopping);
    let check =
        h.m.wants_escape_check(&h.spec, pid, ExitKind::Code(0), h.now);
    assert_eq!(check, None, "an exit asked for is no daemonization");
}

#[test]
fn a_leftover_report_while_stopping_still_ends_the_stop() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Restart);
    // The quick-exit scan found a process (another instance's child, say).
    let (_, pids) = h.run(Input::Exited {
        pid,
        exit: ExitKind::Code(0),
        group_alive: false,
        escaped: Some(4242),
    });
    assert_eq!(pids.len(), 1, "the restart goes on: {pids:?}");
    assert_eq!(h.m.status(), Status::Online);
    assert_eq!(h.m.first().lc().error(), None);
}

#[test]
fn a_late_daemonized_report_in_stopping_is_an_exit() {
    let mut lc = crate::lifecycle::Lifecycle::default();
    let spec = AppSpec::default();
    lc.handle(&spec, Event::Start);
    lc.handle(&spec, Event::Spawned);
    lc.handle(&spec, Event::Stop { by_user: true });
    lc.handle(&spec, Event::Daemonized("left pid 7".into()));
    assert_eq!(lc.status(), Status::Stopped);
}

#[test]
fn a_stop_whose_main_exited_0_waits_for_the_rest_then_kills_it() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    let effects = h.send(Input::Stop { by_user: true });
    let kill = kill_timer(&effects);
    let (effects, _) = h.exit(pid, ExitKind::Code(0), true);
    assert!(effects.contains(&Effect::WatchGroup { pid }));
    assert_eq!(h.m.status(), Status::Stopping, "its children still run");
    let effects = h.send(Input::Timer(kill));
    assert_eq!(signalled(&effects, pid), vec![Signal::SIGKILL]);
    let effects = h.send(Input::GroupGone { pid });
    assert_eq!(h.m.status(), Status::Stopped);
    assert!(effects.contains(&Effect::StopLeftovers { slot: 0, pid: None }));
    assert!(h.m.is_quiet());
}

#[test]
fn stopping_one_instance_of_two_touches_only_it() {
    let mut h = Harness::new(AppSpec::default());
    h.m = AppMachine::new(2);
    let (_, pids) = h.run(Input::Start);
    assert_eq!(h.m.status(), Status::Online);
    let one = Input::OneSlot {
        slot: 1,
        input: Box::new(Input::Stop { by_user: true }),
    };
    let effects = h.send(one);
    assert_eq!(signalled(&effects, pids[1]), vec![Signal::SIGTERM]);
    assert!(signalled(&effects, pids[0]).is_empty());
    let (effects, _) = h.exit(pids[1], ExitKind::Signal(15), false);
    assert!(effects.contains(&Effect::StopLeftovers { slot: 1, pid: None }));
    assert!(signalled(&effects, pids[0]).is_empty());
    assert_eq!(h.m.status(), Status::Online, "the wanted instance runs");
    assert_eq!(h.m.slots()[1].last_pid(), Some(pids[1]));
    h.send(Input::OneSlot {
        slot: 0,
        input: Box::new(Input::Stop { by_user: true }),
    });
    h.exit(pids[0], ExitKind::Signal(15), false);
    assert_eq!(h.m.status(), Status::Stopped);
}

#[test]
fn a_start_during_a_stop_sweep_gets_a_fresh_instance() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.send(Input::Stop { by_user: true });
    let (effects, _) = h.exit(pid, ExitKind::Signal(15), false);
    // The sweep names the slot and no pid: it can only reach what the
    // supervisor proves was the old instance's.
    assert!(effects.contains(&Effect::StopLeftovers { slot: 0, pid: None }));
    let (_, pids) = h.run(Input::Start);
    assert_eq!(pids.len(), 1);
    assert_ne!(pids[0], pid);
    assert_eq!(h.m.status(), Status::Online);
}

#[test]
fn stopping_an_errored_daemonized_slot_names_what_it_kept() {
    let mut h = Harness::new(AppSpec::default());
    let pid = h.start();
    h.run(Input::Exited {
        pid,
        exit: ExitKind::Code(0),
        group_alive: true,
        escaped: Some(4242),
    });
    assert_eq!(h.m.status(), Status::Errored);
    let effects = h.send(Input::Stop { by_user: true });
    assert_eq!(h.m.status(), Status::Stopped);
    assert!(effects.contains(&Effect::StopLeftovers {
        slot: 0,
        pid: Some(pid)
    }));
}
