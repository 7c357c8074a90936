//! Spawns in flight. The loop hands a spawn to the spawn thread and goes
//! on (preparing the next app of a batch while this one execs); the
//! outcome comes back as [`Msg::Spawned`]. Until then the app's machine
//! hears nothing else: inputs for it wait here, in order, so it sees its
//! spawn's outcome first, exactly as when spawns were made in place.
//!
//! What can happen before the outcome is read is kept for it: an exit the
//! reaper collected for a pid nobody knew yet, and a READY=1 read from
//! the instance's notify socket.

use super::channel::Channel;
use super::instances::SpawnError;
use super::Supervisor;
use crate::lifecycle::ExitKind;
use crate::logs::{AppLogs, Target};
use crate::machine::{Input, Role};
use crate::notify::NotifySocket;
use crate::ownership::cgroup::NewLeaf;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A spawn handed to the spawn thread: what its instance needs once the
/// outcome is back.
pub(super) struct PendingSpawn {
    /// The app.
    pub id: u32,
    /// The slot it is for.
    pub slot: usize,
    /// The instance's role in the slot.
    pub role: Role,
    /// The cgroup it is born in.
    pub leaf: Option<NewLeaf>,
    /// The daemon's ends of its output pipes, with their targets.
    pub pipes: Vec<(OwnedFd, Arc<Target>)>,
    /// Its log files.
    pub files: AppLogs,
    /// Its own sd_notify socket.
    pub notify: Option<NotifySocket>,
    /// Where the spawn thread puts its pid.
    pub pid_cell: Arc<AtomicU32>,
    /// Its Node IPC channel.
    pub channel: Option<Channel>,
}

/// What is kept for apps with spawns in flight.
#[derive(Default)]
pub(super) struct InFlight {
    /// Spawns by sequence number.
    spawns: HashMap<u64, Box<PendingSpawn>>,
    /// Per app: spawns in flight, and the inputs waiting for them.
    held: HashMap<u32, (usize, VecDeque<Input>)>,
    /// Exits of pids unknown when reaped, while spawns were in flight.
    early_exits: HashMap<u32, ExitKind>,
    /// READY=1 heard before its instance's spawn was: app and pid cell.
    early_ready: Vec<(u32, Arc<AtomicU32>)>,
}

impl InFlight {
    /// Keeps spawn `seq` of `p`'s app until its outcome.
    pub fn insert(&mut self, seq: u64, p: Box<PendingSpawn>) {
        self.held.entry(p.id).or_default().0 += 1;
        self.spawns.insert(seq, p);
    }

    /// Holds `input` if app `id` waits for a spawn; gives it back if not.
    pub fn hold(&mut self, id: u32, input: Input) -> Option<Input> {
        match self.held.get_mut(&id) {
            Some((_, waiting)) => {
                waiting.push_back(input);
                None
            }
            None => Some(input),
        }
    }

    /// An exit the reaper could not route: kept if a spawn in flight
    /// may turn out to be its.
    pub fn unknown_exit(&mut self, pid: u32, exit: ExitKind) {
        if !self.spawns.is_empty() {
            self.early_exits.insert(pid, exit);
        }
    }
}

impl Supervisor {
    /// The spawn thread's outcome for spawn `seq`: the instance is set up
    /// and the machine told, then whatever waited for it.
    pub(super) fn spawned(&mut self, seq: u64, result: std::io::Result<u32>) {
        let Some(mut p) = self.in_flight.spawns.remove(&seq) else {
            return;
        };
        self.owner
            .placed(result.as_ref().ok().copied(), p.leaf.take());
        let (id, slot, role) = (p.id, p.slot, p.role);
        let outcome = result
            .map_err(SpawnError::from)
            .and_then(|pid| self.set_up_spawned(*p, pid));
        let pid = outcome.as_ref().ok().copied();
        let input = match outcome {
            Ok(pid) => Input::Spawned { slot, role, pid },
            Err(e) => self.spawn_failed(id, slot, role, e),
        };
        self.feed(id, input);
        if let Some(pid) = pid {
            self.caught_up(id, pid);
        }
        let Some((count, _)) = self.in_flight.held.get_mut(&id) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            let waiting = self.in_flight.held.remove(&id).map(|(_, w)| w);
            for input in waiting.into_iter().flatten() {
                self.apply(id, input);
            }
        }
        if self.in_flight.spawns.is_empty() {
            self.in_flight.early_exits.clear();
            self.in_flight.early_ready.clear();
        }
    }

    /// What instance `pid` of app `id` did before its spawn was heard of.
    fn caught_up(&mut self, id: u32, pid: u32) {
        if let Some(exit) = self.in_flight.early_exits.remove(&pid) {
            self.instance_exited(id, pid, exit);
        }
        let ready = &mut self.in_flight.early_ready;
        let Some(at) = ready
            .iter()
            .position(|(app, cell)| *app == id && cell.load(Ordering::SeqCst) == pid)
        else {
            return;
        };
        ready.swap_remove(at);
        self.apply(id, Input::Ready { pid });
    }

    /// An instance of app `id` said READY=1 on its notify socket.
    pub(super) fn notified(&mut self, id: u32, cell: Arc<AtomicU32>) {
        let in_flight = self
            .in_flight
            .spawns
            .values()
            .any(|p| Arc::ptr_eq(&p.pid_cell, &cell));
        match cell.load(Ordering::SeqCst) {
            // Told once its spawn's outcome is read.
            _ if in_flight => self.in_flight.early_ready.push((id, cell)),
            // Its spawn failed: nobody is ready.
            0 => {}
            pid => self.apply(id, Input::Ready { pid }),
        }
    }

    /// The input that tells app `id`'s machine its spawn failed, said in
    /// the daemon's log too: at the fd limit no client may connect to read
    /// it in `describe`.
    pub(super) fn spawn_failed(&self, id: u32, slot: usize, role: Role, e: SpawnError) -> Input {
        let name = self.table.get(id).map(|a| a.spec.name.clone());
        tracing::warn!(
            app = name.unwrap_or_default(),
            "cannot spawn: {}",
            e.message
        );
        Input::SpawnFailed {
            slot,
            role,
            error: e.message,
            transient: e.transient,
        }
    }
}
