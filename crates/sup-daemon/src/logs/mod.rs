//! App logs: capture of stdout and stderr through pipes, and a writer
//! thread that turns them into timestamped, rotated files.

mod capture;
mod file;
mod lines;
mod taps;
mod writer;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use sup_home::LogStream;
use sup_proto::{AppSpec, InstanceLogs, LogInfo};
use tokio::sync::oneshot;
use writer::{HealthMap, Writer, WriterMsg};

pub use capture::{pipe, Capture, Output, Stop};
pub use lines::Console;
pub use taps::{Tapped, Taps};

/// `sup run`'s logging: to the console, as JSON or not, and to the files too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsoleMode {
    /// One JSON object per line (`--json`).
    pub json: bool,
    /// Also the usual files under `SUP_HOME` (`--log-files`).
    pub files: bool,
}
pub use lines::Partial;
pub use writer::Target;

/// The files of one app: stdout's and stderr's targets (the same file when combined).
#[derive(Debug, Clone)]
pub struct AppLogs {
    /// stdout.
    pub out: Arc<Target>,
    /// stderr.
    pub err: Arc<Target>,
}

impl AppLogs {
    /// The targets `spec` asks for; default files live in `logs_dir`,
    /// named `<stem>-out.log` and `<stem>-err.log`. Under `sup run`
    /// (`console`), lines go to the daemon's stdout and stderr, and to the
    /// files only with `--log-files`.
    pub fn for_spec(
        spec: &AppSpec,
        logs_dir: &Path,
        stem: &str,
        console: Option<ConsoleMode>,
    ) -> AppLogs {
        let files = AppLogs::files_for(spec, logs_dir, stem);
        let Some(mode) = console else {
            return files;
        };
        let on = |target: &Arc<Target>, stream: &'static str| {
            let console = Target {
                console: Some(Console {
                    app: spec.name.clone(),
                    stream,
                    json: mode.json,
                }),
                tee: None,
                twin: None,
                json: None,
                path: PathBuf::from(format!(
                    "<{}>",
                    if stream == "out" { "stdout" } else { "stderr" }
                )),
                ..(**target).clone()
            };
            Arc::new(match mode.files {
                true => Target {
                    twin: Some(Arc::new(console)),
                    ..(**target).clone()
                },
                false => console,
            })
        };
        AppLogs {
            out: on(&files.out, "out"),
            err: on(&files.err, "err"),
        }
    }

    fn files_for(spec: &AppSpec, logs_dir: &Path, stem: &str) -> AppLogs {
        let l = &spec.logs;
        // `stream` labels JSON lines: `out`, `err`, or `log` for a file of both.
        let target = |path: PathBuf, tee: Option<Arc<Target>>, stream: &'static str| {
            Arc::new(Target {
                path,
                timestamps: l.timestamps,
                max_size: l.max_size,
                keep: l.keep,
                retention: file::Retention {
                    compress: l.compress,
                    keep_days: l.keep_days,
                },
                owner: crate::creds::log_owner(spec),
                tee,
                date_format: l
                    .date_format
                    .as_deref()
                    .map(sup_proto::datefmt::DateFormat::parse),
                console: None,
                twin: None,
                json: l.json.then(|| Console {
                    app: spec.name.clone(),
                    stream,
                    json: true,
                }),
            })
        };
        let separate = l.out_file.is_some() || l.err_file.is_some();
        let both = l.combined_file.as_ref().map(PathBuf::from);
        if let (Some(both), false) = (&both, separate) {
            let t = target(both.clone(), None, "log");
            return AppLogs {
                out: t.clone(),
                err: t,
            };
        }
        // With out or err files too, the combined file gets every line
        // besides them, as PM2 writes all three.
        let tee = both.map(|path| target(path, None, "log"));
        let or_default = |file: &Option<String>, stream| {
            file.as_ref()
                .map(PathBuf::from)
                .unwrap_or_else(|| sup_home::app_log_in(logs_dir, stem, stream))
        };
        AppLogs {
            out: target(or_default(&l.out_file, LogStream::Out), tee.clone(), "out"),
            err: target(or_default(&l.err_file, LogStream::Err), tee, "err"),
        }
    }

    /// The files of instance `slot` when each instance has its own
    /// (`<file>-<N>.log`, as PM2 names them).
    pub fn of_instance(&self, slot: usize) -> AppLogs {
        let suffix = |t: &Target| Target {
            path: instance_path(&t.path, slot),
            ..t.clone()
        };
        let tee = self.out.tee.as_deref().map(|t| Arc::new(suffix(t)));
        let suffixed = |t: &Arc<Target>| {
            Arc::new(Target {
                tee: tee.clone(),
                ..suffix(t)
            })
        };
        let out = suffixed(&self.out);
        let err = if self.err.path == self.out.path {
            out.clone()
        } else {
            suffixed(&self.err)
        };
        AppLogs { out, err }
    }

    /// The read ends of an instance's pipes, as a handover gives them,
    /// each with its target: stdout's and stderr's when there are two
    /// (as every daemon before `/dev/null` streams handed them), else
    /// those of the streams that are not discarded, in that order.
    pub fn pair(&self, pipes: Vec<OwnedFd>) -> Vec<(OwnedFd, Arc<Target>)> {
        let mut targets = vec![self.out.clone(), self.err.clone()];
        if pipes.len() < 2 {
            targets.retain(|t| !t.discards());
        }
        pipes.into_iter().zip(targets).collect()
    }

    /// The files (not the console) of the app.
    fn targets(&self) -> Vec<Arc<Target>> {
        let mut all = vec![self.out.clone()];
        if self.err.path != self.out.path {
            all.push(self.err.clone());
        }
        all.extend(self.out.tee.clone());
        all.retain(|t| t.console.is_none());
        all
    }
}

/// The daemon's side of logging: starts captures and talks to the writer.
pub struct Logs {
    tx: Sender<WriterMsg>,
    health: HealthMap,
    taps: Taps,
    next_source: u64,
    writer: Option<JoinHandle<Partials>>,
}

/// Unfinished lines by source, handed from one daemon to the next.
pub type Partials = std::collections::HashMap<u64, Partial>;

impl Logs {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Logs> {
        let (tx, rx) = mpsc::channel();
        let health = HealthMap::default();
        let taps = Taps::default();
        let writer = Writer::new(health.clone(), taps.clone());
        let handle = std::thread::Builder::new()
            .name("sup-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Logs {
            tx,
            health,
            taps,
            next_source: 0,
            writer: Some(handle),
        })
    }

    /// The live watchers of the log files.
    pub fn taps(&self) -> Taps {
        self.taps.clone()
    }

    /// Tags the lines of capture `source` with an instance index, or stops.
    pub fn tag(&self, source: u64, tag: Option<usize>) {
        let tag = tag.map(|t| u16::try_from(t).unwrap_or(u16::MAX));
        let _ = self.tx.send(WriterMsg::Tag { source, tag });
    }

    /// Captures one pipe into `target`, after `after` fires (see
    /// [`capture::start`]); `seed` is an unfinished line to continue.
    pub fn capture(
        &mut self,
        pipe: OwnedFd,
        target: &Arc<Target>,
        after: Option<oneshot::Receiver<()>>,
        seed: Option<Partial>,
    ) -> std::io::Result<Capture> {
        self.next_source += 1;
        if let Some(partial) = seed {
            let _ = self.tx.send(WriterMsg::Seed {
                source: self.next_source,
                partial,
            });
        }
        capture::start(
            pipe,
            target.clone(),
            self.next_source,
            self.tx.clone(),
            after,
        )
    }

    /// Creates an app's log files if they don't exist yet.
    pub fn open(&self, logs: &AppLogs) {
        let _ = self.tx.send(WriterMsg::Open {
            targets: logs.targets(),
        });
    }

    /// Empties an app's log files; `done` fires when it is done.
    pub fn truncate(&self, logs: &AppLogs) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let _ = self.tx.send(WriterMsg::Truncate {
            targets: logs.targets(),
            done,
        });
        rx
    }

    /// Closes an app's log files (it was deleted) once its last captures,
    /// whose `gates` fire when done, have handed over their final bytes.
    pub fn close_after(&self, logs: &AppLogs, gates: Vec<Option<oneshot::Receiver<()>>>) {
        let paths = logs.targets().iter().map(|t| t.path.clone()).collect();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            for gate in gates.into_iter().flatten() {
                let _ = gate.await;
            }
            let _ = tx.send(WriterMsg::Close { paths });
        });
    }

    /// [`Logs::info`] over an app's files and, with one file per instance,
    /// each instance's.
    pub fn info_of(&self, logs: &AppLogs, instances: &[(usize, AppLogs)]) -> LogInfo {
        let mut info = self.info(logs);
        for (index, files) in instances {
            let own = self.info(files);
            info.dropped_bytes += own.dropped_bytes;
            info.written_bytes += own.written_bytes;
            info.error = info.error.or(own.error);
            info.instances.push(InstanceLogs {
                index: *index as u32,
                out: own.out,
                err: own.err,
            });
        }
        info
    }

    /// Paths and health of an app's logs.
    pub fn info(&self, logs: &AppLogs) -> LogInfo {
        let health = self.health.lock().expect("health lock");
        // `to_str` first: its check is much faster than the lossy one.
        let text = |p: &Path| match p.to_str() {
            Some(s) => s.to_owned(),
            None => p.to_string_lossy().into_owned(),
        };
        let mut info = LogInfo {
            out: text(&logs.out.path),
            err: text(&logs.err.path),
            combined: logs.out.tee.as_ref().map(|t| text(&t.path)),
            // `sup logs` reads back only sup's own stamps.
            timestamps: logs.out.timestamps
                && logs.out.date_format.is_none()
                && logs.out.json.is_none(),
            ..LogInfo::default()
        };
        // A list at 1,000 apps asks this 1,000 times: no Vec, no clone.
        let err = (logs.err.path.as_os_str() != logs.out.path.as_os_str()).then_some(&logs.err);
        let files = std::iter::once(&logs.out)
            .chain(err)
            .chain(logs.out.tee.as_ref());
        for target in files.filter(|t| t.console.is_none()) {
            if let Some(h) = health.get(target.path.as_os_str()) {
                info.dropped_bytes += h.dropped;
                info.error = info.error.or_else(|| h.error.clone());
                // The combined file repeats the others' lines.
                if logs.out.tee.as_ref().is_none_or(|t| t.path != target.path) {
                    info.written_bytes += h.written.load(std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        info
    }

    /// Waits (up to `timeout`) until every capture has ended and the writer
    /// has written everything, so shutdown loses no line.
    /// Returns the unfinished lines of detached sources, or None when the
    /// writer did not finish in time.
    pub async fn finish(mut self, timeout: Duration) -> Option<Partials> {
        let writer = self.writer.take()?;
        drop(self);
        // A plain thread, not spawn_blocking: a writer stuck on a dead disk
        // must not keep the runtime (and the daemon) from exiting.
        let (done_tx, done_rx) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = done_tx.send(writer.join().unwrap_or_default());
        });
        tokio::time::timeout(timeout, done_rx).await.ok()?.ok()
    }
}

/// `app-out.log` → `app-out-2.log`: instance `slot`'s own file.
fn instance_path(path: &Path, slot: usize) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{slot}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{slot}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn logs(out: Option<&str>, err: Option<&str>, both: Option<&str>) -> AppLogs {
        let mut spec = AppSpec {
            name: "a".into(),
            ..AppSpec::default()
        };
        spec.logs.out_file = out.map(Into::into);
        spec.logs.err_file = err.map(Into::into);
        spec.logs.combined_file = both.map(Into::into);
        AppLogs::for_spec(&spec, Path::new("/tmp/logs"), "a", None)
    }

    #[test]
    fn a_stream_is_discarded_only_when_no_file_gets_its_lines() {
        let null = Some("/dev/null");
        let l = logs(null, None, None);
        assert!(l.out.discards());
        assert!(!l.err.discards(), "stderr still goes to its default file");
        // PM2's third file gets every line: nothing is discarded then.
        let l = logs(null, null, Some("/tmp/all.log"));
        assert!(!l.out.discards() && !l.err.discards());
        assert!(logs(None, None, null).out.discards());
        // `sup run` prints the lines: the console is not /dev/null.
        let mut spec = AppSpec::default();
        spec.logs.out_file = null.map(Into::into);
        let mode = ConsoleMode {
            json: false,
            files: false,
        };
        let console = AppLogs::for_spec(&spec, Path::new("/tmp"), "a", Some(mode));
        assert!(!console.out.discards());
    }

    #[test]
    fn handed_pipes_pair_with_the_streams_that_have_them() {
        let fds = |n: usize| -> Vec<OwnedFd> {
            (0..n)
                .map(|_| OwnedFd::from(std::fs::File::open("/dev/null").unwrap()))
                .collect()
        };
        let l = logs(None, Some("/dev/null"), None);
        let one = fds(1);
        let raw = one[0].as_raw_fd();
        let paired = l.pair(one);
        assert_eq!(paired.len(), 1);
        assert_eq!(paired[0].0.as_raw_fd(), raw);
        assert_eq!(paired[0].1.path, l.out.path, "the one pipe is stdout's");
        let l = logs(Some("/dev/null"), None, None);
        assert_eq!(
            l.pair(fds(1))[0].1.path,
            l.err.path,
            "the one pipe is stderr's"
        );
        // Two pipes are stdout's and stderr's, whatever the spec says now
        // (a daemon from before `/dev/null` streams piped both).
        let paired = l.pair(fds(2));
        assert_eq!(paired[0].1.path, l.out.path);
        assert_eq!(paired[1].1.path, l.err.path);
    }
}
