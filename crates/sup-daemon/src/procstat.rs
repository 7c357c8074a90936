//! CPU time and resident memory of an app's process tree, read from /proc
//! only when a client asks (`list`, `describe`): no timer scans anything.

use nix::unistd::{sysconf, SysconfVar};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::Instant;

/// Cumulative CPU ticks and current RSS of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// utime + stime of every live process in the tree, in clock ticks.
    pub ticks: u64,
    /// Sum of their resident set sizes, in bytes.
    pub rss_bytes: u64,
}

/// Fields of `/proc/PID/stat` that sup uses. This is the daemon's one
/// parser of that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// Parent pid.
    pub ppid: u32,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Resident pages.
    pub rss_pages: u64,
    /// Start time after boot, clock ticks (with the pid, identifies a process).
    pub start_time: u64,
    /// Process group id.
    pub pgrp: u32,
}

/// Parses the text of `/proc/PID/stat`. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let num = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some(Stat {
        state: *fields.first()?.as_bytes().first()?,
        ppid: u32::try_from(num(4)?).ok()?,
        ticks: num(14)? + num(15)?,
        start_time: num(22)?,
        pgrp: u32::try_from(num(5)?).ok()?,
        rss_pages: num(24)?,
    })
}

/// The live (non-zombie) processes of group `pgid`: one pass over /proc,
/// made on a blocking thread while a stop or a restart waits for a group.
pub fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let text = fs::read_to_string(entry.path().join("stat")).ok()?;
            let stat = parse_stat(&text)?;
            (stat.pgrp == pgid && stat.state != b'Z').then_some(pid)
        })
        .collect()
}

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: u32) -> Option<Stat> {
    let mut buf = Vec::new();
    read_into(Path::new(&format!("/proc/{pid}/stat")), &mut buf).ok()?;
    parse_stat(std::str::from_utf8(&buf).ok()?)
}

/// The resident memory of process `pid`, bytes, from `/proc/PID/statm`
/// (which the kernel makes with less work than `stat`). `buf` is scratch.
pub fn resident_bytes(pid: u32, buf: &mut Vec<u8>) -> Option<u64> {
    read_into(Path::new(&format!("/proc/{pid}/statm")), buf).ok()?;
    let pages = std::str::from_utf8(buf).ok()?.split(' ').nth(1)?;
    Some(pages.trim().parse::<u64>().ok()? * page_size())
}

/// Reads a small kernel file (procfs, cgroupfs) into `buf`, which keeps
/// its allocation from one file to the next. These files are made whole
/// at the first read, so a read that leaves room in the buffer is the
/// last one: one open, one read and one close a file, where
/// `read_to_string` reads in growing steps and once more for the end.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut file = fs::File::open(path)?;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(buf.capacity().max(1024));
        }
        let len = buf.len();
        let room = buf.capacity() - len;
        buf.resize(len + room, 0);
        let read = file.read(&mut buf[len..]);
        buf.truncate(len + *read.as_ref().unwrap_or(&0));
        let n = match read {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 || n < room {
            return Ok(());
        }
    }
}

/// Usage of `root` and all its descendants (found through
/// `/proc/PID/task/TID/children`).
pub fn tree_usage(root: u32) -> Usage {
    let page = page_size();
    let mut usage = Usage::default();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        let Some(stat) = read_stat(pid) else { continue };
        usage.ticks += stat.ticks;
        usage.rss_bytes += stat.rss_pages * page;
        push_children(pid, &mut stack);
    }
    usage
}

fn push_children(pid: u32, stack: &mut Vec<u32>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        stack.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
}

/// The size of a memory page, bytes.
pub fn page_size() -> u64 {
    sysconf_or(SysconfVar::PAGE_SIZE, 4096)
}

/// Clock ticks per second (`CLK_TCK`).
pub fn ticks_per_second() -> u64 {
    sysconf_or(SysconfVar::CLK_TCK, 100)
}

fn sysconf_or(var: SysconfVar, fallback: u64) -> u64 {
    match sysconf(var) {
        Ok(Some(value)) => u64::try_from(value).ok().filter(|v| *v > 0),
        _ => None,
    }
    .unwrap_or(fallback)
}

/// The shortest span a CPU rate is measured over.
const MIN_SPAN: std::time::Duration = std::time::Duration::from_millis(50);

/// Turns cumulative CPU time into a percentage between two queries.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    usec: u64,
    at: Instant,
}

impl CpuMeter {
    /// A meter whose first reading averages over the time since `started`.
    pub fn new(started: Instant) -> CpuMeter {
        CpuMeter {
            usec: 0,
            at: started,
        }
    }

    /// CPU percent of one core since the previous reading (`usec`: CPU
    /// time used so far, microseconds), then remembers this one.
    pub fn percent(&mut self, usec: u64, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at);
        if elapsed < MIN_SPAN {
            // Too short to mean anything (a process a millisecond old has
            // spent its whole life in exec): keep the baseline.
            return 0.0;
        }
        let used = usec.saturating_sub(self.usec) as f64 / 1e6;
        *self = CpuMeter { usec, at: now };
        (used / elapsed.as_secs_f64() * 1000.0).round() / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn read_into_reads_whole_files_of_any_size_and_statm_agrees_with_stat() {
        let dir = std::env::temp_dir().join(format!("sup-read-into-{}", std::process::id()));
        let text: String = (0..3000).map(|i| format!("{i}\n")).collect();
        fs::write(&dir, &text).unwrap();
        let mut buf = Vec::new();
        read_into(&dir, &mut buf).unwrap();
        assert_eq!(buf, text.as_bytes());
        read_into(Path::new("/proc/self/stat"), &mut buf).unwrap();
        assert_eq!(std::str::from_utf8(&buf).unwrap().lines().count(), 1);
        fs::remove_file(&dir).unwrap();
        assert!(read_into(&dir, &mut buf).is_err());
        let me = std::process::id();
        let statm = resident_bytes(me, &mut buf).unwrap();
        let stat = read_stat(me).unwrap().rss_pages * page_size();
        // Both count the same pages; a page fault between the reads may differ.
        assert!(statm.abs_diff(stat) < 4 << 20, "{statm} vs {stat}");
        assert!(statm > 0);
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5555 1000 250 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.ticks, 10);
        assert_eq!(stat.start_time, 5555);
        assert_eq!(stat.rss_pages, 250);
        assert_eq!((stat.state, stat.ppid, stat.pgrp), (b'S', 1, 42));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn reads_own_tree() {
        let usage = tree_usage(std::process::id());
        assert!(usage.rss_bytes > 0);
    }

    #[test]
    fn cpu_meter_is_a_rate() {
        let start = Instant::now();
        let mut meter = CpuMeter::new(start);
        // Half a core for two seconds.
        let pct = meter.percent(1_000_000, start + Duration::from_secs(2));
        assert_eq!(pct, 50.0);
        assert_eq!(
            meter.percent(1_000_000, start + Duration::from_secs(3)),
            0.0
        );
    }
}
