//! PM2's `log_date_format`: the format tokens of dayjs (which PM2 uses),
//! so a PM2 file's log lines keep the look their readers expect.
//!
//! Tokens: `YYYY YY M MM MMM MMMM D DD d ddd dddd H HH h hh m mm s ss SSS
//! Z ZZ A a X x`; `[text]` is written as is, and so is any other character.

/// A parsed `log_date_format`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Piece {
    Text(String),
    Token(&'static str),
}

/// Longest first, so `MMMM` wins over `MM`.
const TOKENS: [&str; 26] = [
    "YYYY", "MMMM", "dddd", "MMM", "ddd", "SSS", "YY", "MM", "DD", "HH", "hh", "mm", "ss", "ZZ",
    "M", "D", "d", "H", "h", "m", "s", "Z", "A", "a", "X", "x",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl DateFormat {
    /// Reads a format; every string is one (what is no token is text).
    pub fn parse(format: &str) -> DateFormat {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(c) = rest.chars().next() {
            if c == '[' {
                if let Some(end) = rest.find(']') {
                    text.push_str(&rest[1..end]);
                    rest = &rest[end + 1..];
                    continue;
                }
            }
            if let Some(token) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Token(token));
                rest = &rest[token.len()..];
                continue;
            }
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        DateFormat(pieces)
    }

    /// `epoch_ms` at `offset_s` east of UTC, in this format.
    pub fn format(&self, epoch_ms: i64, offset_s: i32) -> String {
        let t = Parts::of(epoch_ms, offset_s);
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Token(token) => t.write(token, &mut out),
            }
        }
        out
    }
}

/// The fields of a local time.
struct Parts {
    epoch_ms: i64,
    year: i64,
    month: i64,
    day: i64,
    weekday: usize,
    hour: i64,
    minute: i64,
    second: i64,
    ms: i64,
    offset_s: i32,
}

impl Parts {
    fn of(epoch_ms: i64, offset_s: i32) -> Parts {
        let local = epoch_ms + i64::from(offset_s) * 1000;
        let days = local.div_euclid(86_400_000);
        let of_day = local.rem_euclid(86_400_000);
        let (year, month, day) = crate::logfmt::civil_from_days(days);
        Parts {
            epoch_ms,
            year,
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
            hour: of_day / 3_600_000,
            minute: of_day / 60_000 % 60,
            second: of_day / 1000 % 60,
            ms: of_day % 1000,
            offset_s,
        }
    }

    fn write(&self, token: &str, out: &mut String) {
        use std::fmt::Write;
        let h12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };
        let sign = if self.offset_s < 0 { '-' } else { '+' };
        let off = self.offset_s.unsigned_abs();
        let (oh, om) = (off / 3600, off / 60 % 60);
        let _ = match token {
            "YYYY" => write!(out, "{:04}", self.year),
            "YY" => write!(out, "{:02}", self.year.rem_euclid(100)),
            "MMMM" => write!(out, "{}", MONTHS[(self.month - 1) as usize]),
            "MMM" => write!(out, "{}", &MONTHS[(self.month - 1) as usize][..3]),
            "MM" => write!(out, "{:02}", self.month),
            "M" => write!(out, "{}", self.month),
            "DD" => write!(out, "{:02}", self.day),
            "D" => write!(out, "{}", self.day),
            "dddd" => write!(out, "{}", DAYS[self.weekday]),
            "ddd" => write!(out, "{}", &DAYS[self.weekday][..3]),
            "d" => write!(out, "{}", self.weekday),
            "HH" => write!(out, "{:02}", self.hour),
            "H" => write!(out, "{}", self.hour),
            "hh" => write!(out, "{h12:02}"),
            "h" => write!(out, "{h12}"),
            "mm" => write!(out, "{:02}", self.minute),
            "m" => write!(out, "{}", self.minute),
            "ss" => write!(out, "{:02}", self.second),
            "s" => write!(out, "{}", self.second),
            "SSS" => write!(out, "{:03}", self.ms),
            "Z" => write!(out, "{sign}{oh:02}:{om:02}"),
            "ZZ" => write!(out, "{sign}{oh:02}{om:02}"),
            "A" => write!(out, "{}", if self.hour < 12 { "AM" } else { "PM" }),
            "a" => write!(out, "{}", if self.hour < 12 { "am" } else { "pm" }),
            "X" => write!(out, "{}", self.epoch_ms.div_euclid(1000)),
            _ => write!(out, "{}", self.epoch_ms),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T19:05:09.042Z, a Friday.
    const AT: i64 = 1_796_411_109_042;

    #[test]
    fn pm2s_usual_formats() {
        let f = |s: &str, off: i32| DateFormat::parse(s).format(AT, off);
        assert_eq!(f("YYYY-MM-DD HH:mm:ss", 0), "2026-12-04 19:05:09");
        assert_eq!(f("YYYY-MM-DD HH:mm Z", 3600), "2026-12-04 20:05 +01:00");
        assert_eq!(
            f("YYYY-MM-DD HH:mm:ss.SSS ZZ", -18_000),
            "2026-12-04 14:05:09.042 -0500"
        );
        assert_eq!(f("ddd, D MMM YY h:mm A", 0), "Fri, 4 Dec 26 7:05 PM");
        assert_eq!(f("dddd MMMM [at] HH[h]", 0), "Friday December at 19h");
        assert_eq!(f("X x", 0), "1796411109 1796411109042");
    }

    #[test]
    fn anything_else_is_text() {
        assert_eq!(
            DateFormat::parse("[YYYY] YYYY!").format(AT, 0),
            "YYYY 2026!"
        );
        assert_eq!(DateFormat::parse("T é [").format(AT, 0), "T é [");
    }
}
