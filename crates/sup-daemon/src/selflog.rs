//! The daemon's own log: where tracing writes (stderr, which is the daemon
//! log file or the journal). A line that can't be written (a full disk, a
//! broken journal) is dropped and counted; it never stops supervision, and
//! the count is said once, in the first line that can be written again.
//!
//! tracing-subscriber reports a failed write with `eprintln!`, which panics
//! when stderr fails, and `panic = "abort"` would end the daemon: the
//! writer here never returns an error, and the subscriber's own reports are
//! off.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines dropped since the last one written.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Why the first of them was dropped.
static REASON: Mutex<Option<String>> = Mutex::new(None);

/// Makes the writer for each event.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelfLog;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SelfLog {
    type Writer = SelfLog;

    fn make_writer(&'a self) -> SelfLog {
        SelfLog
    }
}

/// The last write stopped inside a line: the next begins with a newline.
static CUT: AtomicBool = AtomicBool::new(false);

impl Write for SelfLog {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let why = REASON
                .lock()
                .ok()
                .and_then(|mut r| r.take())
                .unwrap_or_default();
            let note = format!("[sup: {dropped} lines of the daemon's log dropped: {why}]\n");
            if let Err(e) = write_line(note.as_bytes()) {
                drop_line(dropped + 1, &e);
                return Ok(line.len());
            }
        }
        if let Err(e) = write_line(line) {
            drop_line(1, &e);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes a whole line to stderr, after a newline if the last was cut.
fn write_line(line: &[u8]) -> io::Result<()> {
    let mut err = io::stderr();
    if CUT.load(Ordering::Relaxed) {
        err.write_all(b"\n")?;
        CUT.store(false, Ordering::Relaxed);
    }
    let mut left = line;
    while !left.is_empty() {
        match err.write(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => left = &left[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                CUT.store(left.len() < line.len(), Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn drop_line(n: u64, err: &io::Error) {
    if DROPPED.fetch_add(n, Ordering::Relaxed) == 0 {
        if let Ok(mut reason) = REASON.lock() {
            reason.get_or_insert_with(|| err.to_string());
        }
    }
}

/// A warning said at most once per period; the times it was held back are
/// counted and told with the next one.
#[derive(Debug)]
pub struct RateLimit {
    every: Duration,
    last: Option<Instant>,
    held: u64,
}

impl RateLimit {
    /// At most once per `every`.
    pub const fn new(every: Duration) -> RateLimit {
        RateLimit {
            every,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when the warning may be said now, `n` being how many were
    /// held back since the last; `None` to hold this one back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_says_the_first_then_counts_what_it_held() {
        let mut limit = RateLimit::new(Duration::from_secs(10));
        let t = Instant::now();
        assert_eq!(limit.allow(t), Some(0));
        assert_eq!(limit.allow(t + Duration::from_millis(50)), None);
        assert_eq!(limit.allow(t + Duration::from_millis(100)), None);
        assert_eq!(limit.allow(t + Duration::from_secs(11)), Some(2));
    }
}
