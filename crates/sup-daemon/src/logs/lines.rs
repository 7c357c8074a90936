//! Cutting a stream's bytes into whole lines and stamping them.
//!
//! Each source (one stream of one instance) keeps its unfinished last line,
//! so a line written in pieces is still written whole, and lines of two
//! sources sharing a file never interleave mid-line.

use sup_proto::datefmt::DateFormat;
use sup_proto::logfmt::{format_ts, MAX_LINE, SEP_CONTINUED, SEP_WHOLE};

/// An unfinished line and the arrival time of its first byte.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    at_ms: i64,
    buf: Vec<u8>,
}

impl Partial {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Formats line prefixes, remembering the last one (most lines of a chunk
/// share their arrival millisecond).
#[derive(Debug, Default)]
pub struct Stamper {
    /// The last prefix made: (time, offset, format, prefix).
    last: Option<(i64, i32, Option<DateFormat>, Vec<u8>)>,
}

impl Stamper {
    fn prefix(&mut self, at_ms: i64, offset_s: i32, format: Option<&DateFormat>) -> &[u8] {
        let fresh = matches!(&self.last, Some((ms, off, f, _))
            if *ms == at_ms && *off == offset_s && f.as_ref() == format);
        if !fresh {
            let text = match format {
                Some(f) => f.format(at_ms, offset_s),
                None => format_ts(at_ms, offset_s),
            };
            self.last = Some((at_ms, offset_s, format.cloned(), text.into_bytes()));
        }
        self.last
            .as_ref()
            .map(|(_, _, _, p)| p.as_slice())
            .unwrap_or_default()
    }
}

/// How to write lines: with a timestamp prefix or raw.
#[derive(Debug, Clone, Copy)]
pub struct Style<'a> {
    /// Prefix each line with its arrival time.
    pub timestamps: bool,
    /// Offset of local time from UTC, seconds.
    pub offset_s: i32,
    /// The instance the source belongs to, written as `[N] ` at the start
    /// of each line, for apps of several instances.
    pub tag: Option<u16>,
    /// PM2's `log_date_format`, when the app gives one: the prefix in its
    /// tokens instead of ISO 8601.
    pub format: Option<&'a DateFormat>,
    /// `sup run`'s console: lines labelled with their app, or as JSON.
    pub console: Option<&'a Console>,
}

/// How `sup run` writes an app's lines to its own stdout or stderr.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Console {
    /// The app's name.
    pub app: String,
    /// `out` or `err`.
    pub stream: &'static str,
    /// One JSON object per line instead of `app | text`.
    pub json: bool,
}

/// Appends to `out` every whole line of `data` (completing `partial`), and
/// keeps the unfinished rest in `partial`. Lines longer than [`MAX_LINE`]
/// are written in marked pieces.
pub fn cut(
    partial: &mut Partial,
    data: &[u8],
    at_ms: i64,
    style: Style<'_>,
    stamper: &mut Stamper,
    out: &mut Vec<u8>,
) {
    let mut rest = data;
    while let Some(nl) = memchr::memchr(b'\n', rest) {
        let (line, tail) = (&rest[..nl], &rest[nl + 1..]);
        if partial.buf.is_empty() {
            emit(line, at_ms, SEP_WHOLE, style, stamper, out);
        } else {
            partial.buf.extend_from_slice(line);
            let whole = std::mem::take(&mut partial.buf);
            emit_long(&whole, partial.at_ms, style, stamper, out);
        }
        rest = tail;
    }
    if !rest.is_empty() {
        if partial.buf.is_empty() {
            partial.at_ms = at_ms;
        }
        partial.buf.extend_from_slice(rest);
        while partial.buf.len() > MAX_LINE {
            let piece: Vec<u8> = partial.buf.drain(..MAX_LINE).collect();
            emit(&piece, partial.at_ms, SEP_CONTINUED, style, stamper, out);
        }
    }
    if partial.buf.is_empty() && partial.buf.capacity() > 64 * 1024 {
        // Give back what a long line took.
        partial.buf = Vec::new();
    }
}

/// Writes out an unfinished line as a whole one (its source has ended).
pub fn finish(partial: &mut Partial, style: Style<'_>, stamper: &mut Stamper, out: &mut Vec<u8>) {
    if !partial.buf.is_empty() {
        let line = std::mem::take(&mut partial.buf);
        emit_long(&line, partial.at_ms, style, stamper, out);
    }
}

fn emit_long(line: &[u8], at_ms: i64, style: Style<'_>, stamper: &mut Stamper, out: &mut Vec<u8>) {
    let mut pieces = line.chunks(MAX_LINE).peekable();
    if pieces.peek().is_none() {
        emit(line, at_ms, SEP_WHOLE, style, stamper, out);
    }
    while let Some(piece) = pieces.next() {
        let sep = if pieces.peek().is_some() {
            SEP_CONTINUED
        } else {
            SEP_WHOLE
        };
        emit(piece, at_ms, sep, style, stamper, out);
    }
}

fn emit(
    line: &[u8],
    at_ms: i64,
    sep: u8,
    style: Style<'_>,
    stamper: &mut Stamper,
    out: &mut Vec<u8>,
) {
    if let Some(console) = style.console {
        return console_line(console, line, at_ms, style.tag, out);
    }
    if style.timestamps {
        out.extend_from_slice(stamper.prefix(at_ms, style.offset_s, style.format));
        out.push(sep);
    }
    if let Some(tag) = style.tag {
        use std::io::Write;
        let _ = write!(out, "[{tag}] ");
    }
    out.extend_from_slice(line);
    out.push(b'\n');
}

/// One line for `sup run`'s console: `api | text`, `api:1 | text`, or
/// `{"app":"api","instance":1,"stream":"out","time":"…","message":"text"}`.
fn console_line(c: &Console, line: &[u8], at_ms: i64, tag: Option<u16>, out: &mut Vec<u8>) {
    use std::io::Write;
    if c.json {
        let json = serde_json::json!({
            "app": c.app,
            "instance": tag,
            "stream": c.stream,
            "time": format_ts(at_ms, 0),
            "message": String::from_utf8_lossy(line),
        });
        let _ = writeln!(out, "{json}");
        return;
    }
    out.extend_from_slice(c.app.as_bytes());
    if let Some(tag) = tag {
        let _ = write!(out, ":{tag}");
    }
    out.extend_from_slice(b" | ");
    out.extend_from_slice(line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_proto::logfmt::split_line;

    const RAW: Style<'static> = Style {
        timestamps: false,
        offset_s: 0,
        tag: None,
        format: None,
        console: None,
    };
    const TS: Style<'static> = Style {
        timestamps: true,
        offset_s: 0,
        tag: None,
        format: None,
        console: None,
    };

    #[test]
    fn lines_of_an_instance_carry_its_tag_after_the_stamp() {
        let tagged = Style { tag: Some(2), ..TS };
        let (out, _) = run(&[b"hello\n"], tagged);
        let (ts, continued, rest) = split_line(out.strip_suffix(b"\n").unwrap());
        assert!(ts.is_some() && !continued);
        assert_eq!(rest, b"[2] hello");
        let (out, _) = run(
            &[b"x\n"],
            Style {
                tag: Some(0),
                ..RAW
            },
        );
        assert_eq!(out, b"[0] x\n");
    }

    fn run(chunks: &[&[u8]], style: Style<'_>) -> (Vec<u8>, Partial) {
        let (mut p, mut s, mut out) = (Partial::default(), Stamper::default(), Vec::new());
        for (i, c) in chunks.iter().enumerate() {
            cut(&mut p, c, i as i64 * 1000, style, &mut s, &mut out);
        }
        (out, p)
    }

    #[test]
    fn lines_split_across_chunks_stay_whole() {
        let (out, p) = run(&[b"a\nhel", b"lo wo", b"rld\nlast"], RAW);
        assert_eq!(out, b"a\nhello world\n");
        assert_eq!(p.buf, b"last");
        let (mut p, mut s, mut out) = (p, Stamper::default(), Vec::new());
        finish(&mut p, RAW, &mut s, &mut out);
        assert_eq!(out, b"last\n");
    }

    #[test]
    fn a_line_is_stamped_with_its_first_bytes_arrival() {
        let (out, _) = run(&[b"x", b"y\nz\n"], TS);
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(split_line(lines[0]), (Some(0), false, &b"xy"[..]));
        assert_eq!(split_line(lines[1]), (Some(1000), false, &b"z"[..]));
    }

    #[test]
    fn long_lines_are_cut_into_marked_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let (out, p) = run(&[&long, b"\n"], TS);
        assert!(p.buf.is_empty());
        let lines: Vec<&[u8]> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 3);
        assert!(split_line(lines[0]).1 && split_line(lines[1]).1 && !split_line(lines[2]).1);
        let total: usize = lines.iter().map(|l| split_line(l).2.len()).sum();
        assert_eq!(total, long.len());
    }

    #[test]
    fn a_line_of_exactly_max_is_whole() {
        let mut line = vec![b'y'; MAX_LINE];
        line.push(b'\n');
        let (out, _) = run(&[&line], TS);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    }

    #[test]
    fn empty_lines_and_binary_bytes_pass_through() {
        let (out, _) = run(&[b"\n\x00\xff\x1b[31m\n"], RAW);
        assert_eq!(out, b"\n\x00\xff\x1b[31m\n");
    }
}
