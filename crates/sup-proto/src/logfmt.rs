//! The format of a line in an app's log file, shared by the daemon that
//! writes it and the CLI that reads it.
//!
//! With timestamps on (the default), every line is
//! `2026-11-26T07:42:10.123+00:00 text`: ISO 8601 with milliseconds and the
//! local offset, taken when the line reached the daemon, then one separator
//! byte: a space, or `~` when the line was longer than [`MAX_LINE`] and
//! continues on the next one.

/// Length of the timestamp prefix, without its separator.
pub const TS_LEN: usize = 29;

/// Longest piece of a line written as one line; longer lines are cut into
/// pieces of this size, each but the last marked as continued.
pub const MAX_LINE: usize = 1024 * 1024;

/// Separator after the timestamp of a complete line.
pub const SEP_WHOLE: u8 = b' ';

/// Separator after the timestamp of a piece continued on the next line.
pub const SEP_CONTINUED: u8 = b'~';

/// Why an existing file may not take an app's log lines, or None when it
/// may. `meta` describes the file itself, never a link's target
/// (`symlink_metadata`, or `fstat` of a file opened with `O_NOFOLLOW`);
/// `uid` is the user sup writes as. A link or a second hard link planted in
/// a directory others can write would make sup append to, and `sup flush`
/// empty, a file of the planter's choosing; a file of another user could be
/// read by that user. Character devices (`/dev/null`) are fine: only root
/// can make them.
pub fn unfit_log_file(meta: &std::fs::Metadata, uid: u32) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Some("it is a symbolic link, and sup never writes logs through one".into());
    }
    if kind.is_char_device() {
        return None;
    }
    if !kind.is_file() && !kind.is_fifo() {
        return Some("it is neither a regular file nor a FIFO".into());
    }
    if meta.uid() != uid {
        return Some(format!(
            "it belongs to uid {}, and sup writes logs only to files of uid {uid}",
            meta.uid()
        ));
    }
    if kind.is_file() && meta.nlink() > 1 {
        return Some(format!(
            "it has {} hard links, and sup writes logs only to a file with one",
            meta.nlink()
        ));
    }
    None
}

/// Formats `epoch_ms` (milliseconds since the Unix epoch) at `offset_s`
/// seconds east of UTC, as `YYYY-MM-DDTHH:MM:SS.mmm+HH:MM`.
pub fn format_ts(epoch_ms: i64, offset_s: i32) -> String {
    let local_ms = epoch_ms + i64::from(offset_s) * 1000;
    let days = local_ms.div_euclid(86_400_000);
    let ms_of_day = local_ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
    let sign = if offset_s < 0 { '-' } else { '+' };
    let off = offset_s.unsigned_abs();
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}{sign}{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        off / 3600,
        off / 60 % 60
    )
}

/// Reads the timestamp at the start of `line`: milliseconds since the epoch.
pub fn parse_ts(line: &[u8]) -> Option<i64> {
    let ts = std::str::from_utf8(line.get(..TS_LEN)?).ok()?;
    let num = |range: std::ops::Range<usize>| ts.get(range)?.parse::<i64>().ok();
    let b = ts.as_bytes();
    if b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[19] != b'.' {
        return None;
    }
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    let offset = num(24..26)? * 3600 + num(27..29)? * 60;
    let offset = match b[23] {
        b'+' => offset,
        b'-' => -offset,
        _ => return None,
    };
    Some((days * 86_400 + secs - offset) * 1000 + num(20..23)?)
}

/// Splits a stored line into its timestamp (if it has one), whether it
/// continues on the next line, and its text.
pub fn split_line(line: &[u8]) -> (Option<i64>, bool, &[u8]) {
    match (parse_ts(line), line.get(TS_LEN)) {
        (Some(ts), Some(&SEP_WHOLE)) => (Some(ts), false, &line[TS_LEN + 1..]),
        (Some(ts), Some(&SEP_CONTINUED)) => (Some(ts), true, &line[TS_LEN + 1..]),
        _ => (None, false, line),
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_files_of_ours_take_logs() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("sup-unfit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.log");
        std::fs::write(&file, "").unwrap();
        let meta = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap();
        let me = meta(&file).uid();
        assert_eq!(unfit_log_file(&meta(&file), me), None);
        let why = unfit_log_file(&meta(&file), me + 1).unwrap();
        assert!(why.contains(&format!("uid {me}")), "{why}");
        std::os::unix::fs::symlink(&file, dir.join("link")).unwrap();
        let why = unfit_log_file(&meta(&dir.join("link")), me).unwrap();
        assert!(why.contains("symbolic link"), "{why}");
        std::fs::hard_link(&file, dir.join("hard")).unwrap();
        let why = unfit_log_file(&meta(&file), me).unwrap();
        assert!(why.contains("2 hard links"), "{why}");
        let null = meta(std::path::Path::new("/dev/null"));
        assert_eq!(unfit_log_file(&null, me + 1), None);
        assert!(unfit_log_file(&meta(&dir), me).is_some());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_ts(0, 0), "1970-01-01T00:00:00.000+00:00");
        // 2026-11-26T07:42:10.123Z
        let t = 1_795_678_930_123;
        assert_eq!(format_ts(t, 0), "2026-11-26T07:42:10.123+00:00");
        assert_eq!(format_ts(t, 3600 + 1800), "2026-11-26T09:12:10.123+01:30");
        assert_eq!(format_ts(t, -5 * 3600), "2026-11-26T02:42:10.123-05:00");
        assert_eq!(format_ts(t, 0).len(), TS_LEN);
    }

    #[test]
    fn parse_inverts_format() {
        for t in [0, 951_782_400_000, 1_795_678_930_123, 4_102_444_799_999] {
            for off in [0, 19_800, -28_800] {
                assert_eq!(parse_ts(format_ts(t, off).as_bytes()), Some(t), "{t} {off}");
            }
        }
        assert_eq!(parse_ts(b"not a timestamp at all, really"), None);
        assert_eq!(parse_ts(b"short"), None);
    }

    #[test]
    fn splits_lines() {
        let line = format!("{} hello", format_ts(1000, 0));
        assert_eq!(
            split_line(line.as_bytes()),
            (Some(1000), false, &b"hello"[..])
        );
        let piece = format!("{}~abc", format_ts(1000, 0));
        assert_eq!(
            split_line(piece.as_bytes()),
            (Some(1000), true, &b"abc"[..])
        );
        assert_eq!(split_line(b"raw line"), (None, false, &b"raw line"[..]));
    }
}
