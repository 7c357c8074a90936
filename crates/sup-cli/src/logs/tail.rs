//! Reading the end of a log file without reading all of it, and turning
//! stored lines back into logical lines.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use sup_proto::logfmt::split_line;

/// A logical line of a log: continued pieces joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Arrival time, ms since the epoch, when the file has timestamps.
    pub ts: Option<i64>,
    /// The line as stored (timestamp prefix included, if any).
    pub stored: Vec<u8>,
    /// The app's own text.
    pub text: Vec<u8>,
}

/// Up to the last `n` stored lines of `path` (all when `n` is None) that
/// end before byte `end` (the end of the file when None); a missing file
/// has none.
pub fn last_lines(path: &Path, n: Option<usize>, end: Option<u64>) -> io::Result<Vec<Vec<u8>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let len = end.map_or(size, |end| end.min(size));
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    const BLOCK: u64 = 64 * 1024;
    // Read backwards until the buffer holds n + 1 newlines (or the whole file).
    while start > 0 {
        if let Some(n) = n {
            if memchr_count(&buf) > n {
                break;
            }
        }
        let from = start.saturating_sub(BLOCK);
        let mut block = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if buf.last() == Some(&b'\n') || buf.is_empty() {
        lines.pop(); // the empty piece after the final newline
    }
    if start > 0 && !lines.is_empty() {
        lines.remove(0); // cut in the middle
    }
    if let Some(n) = n {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok(lines)
}

fn memchr_count(buf: &[u8]) -> usize {
    buf.iter().filter(|b| **b == b'\n').count()
}

/// Up to the last `n` logical lines of `path` (all when `n` is None),
/// reading further back when a long line's pieces straddle the cut.
pub fn last_logical(path: &Path, n: Option<usize>, end: Option<u64>) -> io::Result<Vec<Line>> {
    let Some(n) = n else {
        return Ok(logical(last_lines(path, None, end)?));
    };
    let mut want = n + 1;
    loop {
        let stored = last_lines(path, Some(want), end)?;
        let whole_file = stored.len() < want;
        let cut_mid_line = stored.first().is_some_and(|l| split_line(l).1);
        if whole_file || !cut_mid_line {
            let mut lines = logical(stored);
            if !whole_file {
                // The first stored line only ends a logical line that began earlier.
                lines.remove(0);
            }
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
            return Ok(lines);
        }
        want *= 2;
    }
}

/// The last `n` logical lines (all with None) of a gzipped rotation
/// (`--log-compress`), read whole: a rotation is at most `--log-max-size`.
pub fn last_logical_gz(path: &Path, n: Option<usize>) -> io::Result<Vec<Line>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut text)?;
    let mut stored: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    if text.last() == Some(&b'\n') || text.is_empty() {
        stored.pop();
    }
    let mut lines = logical(stored);
    if let Some(n) = n {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    Ok(lines)
}

/// Joins continued pieces into logical lines.
pub fn logical(stored: Vec<Vec<u8>>) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    let mut open = false;
    for raw in stored {
        let (ts, continued, text) = split_line(&raw);
        let text = text.to_vec();
        match out.last_mut().filter(|_| open) {
            Some(last) => {
                last.text.extend_from_slice(&text);
                last.stored.extend_from_slice(&text);
            }
            None => out.push(Line {
                ts,
                stored: raw.clone(),
                text,
            }),
        }
        open = continued;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sup_proto::logfmt::format_ts;

    #[test]
    fn reads_the_last_lines_across_blocks() {
        let path = std::env::temp_dir().join(format!("sup-tail-{}", std::process::id()));
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let last = last_lines(&path, Some(3), None).unwrap();
        assert_eq!(
            last,
            vec![
                b"line 19997".to_vec(),
                b"line 19998".to_vec(),
                b"line 19999".to_vec()
            ]
        );
        assert_eq!(last_lines(&path, None, None).unwrap().len(), 20_000);
        std::fs::write(&path, "no newline at end").unwrap();
        assert_eq!(
            last_lines(&path, Some(5), None).unwrap(),
            vec![b"no newline at end".to_vec()]
        );
        std::fs::remove_file(&path).unwrap();
        assert!(last_lines(&path, Some(5), None).unwrap().is_empty());
    }

    #[test]
    fn joins_continued_pieces() {
        let ts = format_ts(5, 0);
        let stored = vec![
            format!("{ts}~ab").into_bytes(),
            format!("{ts} cd").into_bytes(),
            format!("{ts} e").into_bytes(),
        ];
        let lines = logical(stored);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text, b"abcd");
        assert_eq!(lines[0].ts, Some(5));
        assert_eq!(lines[1].text, b"e");
    }
}
