//! `sup logs`: reads apps' log files directly (so it works for stopped apps
//! and without a daemon), prints the last lines, then follows.

mod follow;
mod tail;

use crate::args::LogsArgs;
use crate::client::{expect_ok, Client};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use sup_home::{Home, LogStream};
use sup_proto::logfmt::format_ts;
use sup_proto::{AppInfo, Request, Response, Target};
pub(crate) use tail::Line;

/// Lines shown per app when `--lines` is not given (PM2's default).
const DEFAULT_LINES: usize = 15;

/// One file to read, and whose lines it holds.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    app: String,
    stream: &'static str,
    path: PathBuf,
    timestamps: bool,
    color: usize,
    /// `sup logs app:N` on files the instances share: only lines tagged `[N] `.
    instance: Option<u32>,
}

impl Source {
    /// Whether `line` is one this source shows.
    fn shows(&self, line: &Line) -> bool {
        self.instance
            .is_none_or(|i| line.text.starts_with(format!("[{i}] ").as_bytes()))
    }

    /// Whether this file holds the app's stderr only.
    pub(crate) fn is_err(&self) -> bool {
        self.stream == "err"
    }
}

/// Runs `sup logs`.
pub fn run(home: &Home, args: LogsArgs) -> Result<()> {
    let target = Target::parse(args.target.as_deref().unwrap_or("all"));
    let sources = sources(home, &target, &args)?;
    if sources.is_empty() {
        bail!("no logs to show for {target}");
    }
    let cutoff = args.since.map(|d| now_ms() - d.as_millis() as i64);
    if cutoff.is_some() {
        if let Some(s) = sources.iter().find(|s| !s.timestamps) {
            bail!(
                "{}'s logs have no timestamps (started with --time false), so --since cannot apply",
                s.app
            );
        }
    }
    let style = Style::new(&args);
    // Watch first, then print the tail up to where following starts: no
    // line falls in between, none is printed twice.
    let following = (!args.nostream)
        .then(|| Following::start(&sources))
        .transpose()?;
    let mut out = std::io::stdout().lock();
    let lines = match (args.lines, cutoff) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_LINES),
    };
    let mut apps: Vec<&str> = sources.iter().map(|s| s.app.as_str()).collect();
    apps.dedup();
    for app in apps {
        let mine: Vec<&Source> = sources.iter().filter(|s| s.app == app).collect();
        for (source, line) in recent(&mine, lines, cutoff, following.as_ref())? {
            style.print(&mut out, source, &line)?;
        }
    }
    out.flush()?;
    drop(out);
    match following {
        Some(following) => following.run(&sources, &style),
        None => Ok(()),
    }
}

/// The files of the apps `target` names: from the daemon when it runs,
/// else the default files in `SUP_HOME/logs`.
fn sources(home: &Home, target: &Target, args: &LogsArgs) -> Result<Vec<Source>> {
    let apps = match Client::connect(home)? {
        Some(mut client) => match expect_ok(client.request(Request::Describe(target.clone()))?) {
            Ok(Response::Apps(apps)) => apps,
            Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
            Err(err) => return default_sources(home, target).ok_or(err),
        },
        None => {
            return default_sources(home, target)
                .with_context(|| format!("no logs for {target} (the daemon is not running)"))
        }
    };
    let instance = target.split().1;
    let mut sources = Vec::new();
    for (color, app) in apps.iter().enumerate() {
        sources.extend(app_sources(app, color, args, instance));
    }
    Ok(sources)
}

/// The files of `app` (of its instance `instance` only, when given).
pub(crate) fn app_sources(
    app: &AppInfo,
    color: usize,
    args: &LogsArgs,
    instance: Option<u32>,
) -> Vec<Source> {
    // With one file per instance (`--split-logs`), each instance's files,
    // labelled `app:N`.
    if !app.logs.instances.is_empty() {
        return app
            .logs
            .instances
            .iter()
            .filter(|i| instance.is_none_or(|n| n == i.index))
            .flat_map(|i| {
                let label = format!("{}:{}", app.name, i.index);
                files_of(label, &i.out, &i.err, app.logs.timestamps, color, args)
            })
            .collect();
    }
    let (out, err) = (&app.logs.out, &app.logs.err);
    let several = app.instances.len() > 1;
    let label = match instance {
        Some(i) => format!("{}:{i}", app.name),
        None => app.name.clone(),
    };
    let mut sources = files_of(label, out, err, app.logs.timestamps, color, args);
    // A lone instance's lines carry no tag.
    for s in &mut sources {
        s.instance = instance.filter(|_| several);
    }
    sources
}

/// The sources of one out/err pair (one, when they are the same file).
fn files_of(
    app: String,
    out: &str,
    err: &str,
    timestamps: bool,
    color: usize,
    args: &LogsArgs,
) -> Vec<Source> {
    let source = |stream, path: &str| Source {
        app: app.clone(),
        stream,
        path: PathBuf::from(path),
        timestamps,
        color,
        instance: None,
    };
    if out == err {
        return vec![source("log", out)];
    }
    let mut v = Vec::new();
    if !args.err {
        v.push(source("out", out));
    }
    if !args.out {
        v.push(source("err", err));
    }
    v
}

/// Without a daemon: `<name>-out.log` / `<name>-err.log` in the logs dir.
fn default_sources(home: &Home, target: &Target) -> Option<Vec<Source>> {
    let mut names: Vec<String> = match target {
        Target::Name(name) => vec![name.clone()],
        Target::All => std::fs::read_dir(home.logs_dir())
            .ok()?
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                Home::app_of_out_log(&file).map(str::to_string)
            })
            .collect(),
        Target::Id(_) => return None,
        Target::Instance { app, .. } => return default_sources(home, app),
    };
    names.sort();
    let mut sources = Vec::new();
    for (color, name) in names.into_iter().enumerate() {
        for stream in [LogStream::Out, LogStream::Err] {
            let path = home.app_log(&name, stream);
            if path.exists() {
                let timestamps = true;
                sources.push(Source {
                    app: name.clone(),
                    stream: stream.as_str(),
                    path,
                    timestamps,
                    color,
                    // Without the daemon, how many instances ran is unknown.
                    instance: None,
                });
            }
        }
    }
    (!sources.is_empty()).then_some(sources)
}

/// The last `n` lines (or those after `cutoff`) of one app, its streams
/// merged in time order.
pub(crate) fn recent<'a>(
    sources: &[&'a Source],
    n: Option<usize>,
    cutoff: Option<i64>,
    following: Option<&Following>,
) -> Result<Vec<(&'a Source, Line)>> {
    let mut merged = Vec::new();
    for source in sources {
        let read = |path: &PathBuf, end: Option<u64>| {
            tail::last_logical(path, n, end)
                .with_context(|| format!("cannot read {}", path.display()))
        };
        let end = following.and_then(|f| f.start_of(&source.path));
        // Only some lines count: read whole files, then keep the last n.
        let n = n.filter(|_| source.instance.is_none());
        let mut lines = read(&source.path, end)?;
        if n.is_some_and(|n| lines.len() < n) || cutoff.is_some() {
            // Just rotated? The rest is in <file>.1 (or, compressed, .1.gz).
            let previous = rotated(&source.path);
            let mut older = match previous.exists() {
                true => read(&previous, None)?,
                false => {
                    let mut gz = previous.into_os_string();
                    gz.push(".gz");
                    tail::last_logical_gz(std::path::Path::new(&gz), n)
                        .with_context(|| format!("cannot read {}", gz.to_string_lossy()))?
                }
            };
            older.append(&mut lines);
            lines = older;
        }
        merged.extend(
            lines
                .into_iter()
                .filter(|line| source.shows(line))
                .map(|line| (*source, line)),
        );
    }
    if let Some(cutoff) = cutoff {
        merged.retain(|(_, line)| line.ts.is_some_and(|ts| ts >= cutoff));
    }
    // Stable: lines of one stream keep their order; streams interleave by time.
    merged.sort_by_key(|(_, line)| line.ts.unwrap_or(i64::MIN));
    if let Some(n) = n {
        let skip = merged.len().saturating_sub(n);
        merged.drain(..skip);
    }
    Ok(merged)
}

fn rotated(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The files being followed (in the order of the sources) and the watcher
/// that says when they change.
pub(crate) struct Following {
    watcher: follow::Watcher,
    files: Vec<follow::Followed>,
}

impl Following {
    /// Starts following `sources` from their current ends.
    pub(crate) fn start(sources: &[Source]) -> Result<Following> {
        let watcher = follow::Watcher::new(sources.iter().map(|s| s.path.as_path()))?;
        let files = sources
            .iter()
            .map(|s| follow::Followed::at_end(s.path.clone()))
            .collect();
        Ok(Following { watcher, files })
    }

    /// Where following `path` starts: the tail is printed up to there.
    fn start_of(&self, path: &std::path::Path) -> Option<u64> {
        self.files
            .iter()
            .find(|f| f.path() == path)
            .map(follow::Followed::offset)
    }

    /// Readable when a followed file may have changed: for a caller that
    /// waits on other things too.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.watcher)
    }

    /// Waits until a file changes, then returns the new lines each source
    /// (of those given to [`Following::start`]) shows, in order.
    pub(crate) fn next_lines<'a>(
        &mut self,
        sources: &'a [Source],
    ) -> Result<Vec<(&'a Source, Line)>> {
        self.watcher.wait()?;
        let mut lines = Vec::new();
        for (source, f) in sources.iter().zip(self.files.iter_mut()) {
            for stored in f.poll() {
                let shown = tail::logical(vec![stored])
                    .into_iter()
                    .filter(|line| source.shows(line));
                lines.extend(shown.map(|line| (source, line)));
            }
        }
        Ok(lines)
    }

    fn run(mut self, sources: &[Source], style: &Style) -> Result<()> {
        loop {
            let lines = self.next_lines(sources)?;
            let mut out = std::io::stdout().lock();
            for (source, line) in lines {
                style.print(&mut out, source, &line)?;
            }
            out.flush()?;
        }
    }
}

/// How lines are printed.
struct Style {
    json: bool,
    raw: bool,
    color: bool,
}

const COLORS: [&str; 6] = [
    "\x1b[36m", "\x1b[32m", "\x1b[35m", "\x1b[33m", "\x1b[34m", "\x1b[96m",
];

impl Style {
    fn new(args: &LogsArgs) -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let tty = std::io::stdout().is_terminal();
        Style {
            json: args.json,
            raw: args.raw,
            color: tty && !no_color,
        }
    }

    fn print(&self, out: &mut impl Write, source: &Source, line: &Line) -> std::io::Result<()> {
        if self.json {
            let value = serde_json::json!({
                "app": source.app,
                "stream": source.stream,
                "time": line.ts.map(|ts| format_ts(ts, 0)),
                "ts_ms": line.ts,
                "text": String::from_utf8_lossy(&line.text),
            });
            return writeln!(out, "{value}");
        }
        if !self.raw {
            if self.color {
                let c = COLORS[source.color % COLORS.len()];
                let stream = if source.stream == "err" {
                    "\x1b[31merr"
                } else {
                    source.stream
                };
                write!(out, "{c}{}\x1b[0m {stream}\x1b[0m | ", source.app)?;
            } else {
                write!(out, "{} {} | ", source.app, source.stream)?;
            }
        }
        out.write_all(&line.stored)?;
        out.write_all(b"\n")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
