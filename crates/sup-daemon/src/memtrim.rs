//! Gives the kernel back the heap memory that a burst of work freed.
//! glibc returns only the top of the heap by itself; the holes left by
//! 1,000 state writes or an answer about 1,000 apps stay resident until
//! `malloc_trim`. Trimming in the middle of a burst would hand back pages
//! the burst needs again (and fault them in anew), so the trim comes once
//! the daemon has been quiet for [`QUIET_FOR`] after enough work; never
//! on a timer that runs while nothing happens.

use std::time::Duration;

/// Work (messages handled, apps answered about) after which a trim is due.
const TRIM_AFTER: usize = 200;

/// How long the daemon is quiet before a due trim.
pub const QUIET_FOR: Duration = Duration::from_millis(500);

/// Counts work since the last trim, and whether the quiet timer runs.
#[derive(Debug, Default)]
pub struct Trimmer {
    work: usize,
    since_armed: usize,
    armed: bool,
}

impl Trimmer {
    /// `work` more units were done.
    pub fn note(&mut self, work: usize) {
        self.work = self.work.saturating_add(work);
        self.since_armed = self.since_armed.saturating_add(work);
    }

    /// The loop has nothing queued: whether to start the quiet timer now
    /// (a trim is due and no timer runs).
    pub fn idle(&mut self) -> bool {
        if self.armed || self.work < TRIM_AFTER {
            return false;
        }
        self.armed = true;
        self.since_armed = 0;
        true
    }

    /// The quiet timer fired: trims if no work came since it started, and
    /// returns false; else returns true: start it again.
    pub fn fired(&mut self) -> bool {
        if self.since_armed > 0 {
            self.since_armed = 0;
            return true;
        }
        self.armed = false;
        self.work = 0;
        trim();
        false
    }
}

/// One malloc arena for every thread of the daemon. Its threads (the
/// spawn, log and state writers) allocate little, and an arena each kept
/// about 0.4 MB more resident at 1,000 apps (three A/B runs); contention
/// is nil with the event loop doing nearly all the allocating. Called
/// before any thread starts.
pub fn one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_quiet_after_enough_work() {
        let mut t = Trimmer::default();
        t.note(TRIM_AFTER - 1);
        assert!(!t.idle(), "not enough work yet");
        t.note(1);
        assert!(t.idle());
        assert!(!t.idle(), "one timer at a time");
        t.note(5);
        assert!(t.fired(), "work came meanwhile: wait again");
        assert!(!t.fired(), "quiet: trimmed, no timer");
        assert!(!t.idle(), "the count starts again");
    }
}
