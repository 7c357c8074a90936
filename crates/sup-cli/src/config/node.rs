//! PM2's JavaScript and JSON files, evaluated by the user's `node` as PM2
//! evaluates them: JS files are `require`d (or `import`ed when they are ES
//! modules), JSON files run as a JavaScript expression, so comments and
//! unquoted keys load.
//!
//! The result comes back as JSON over a pipe of its own (an fd named in
//! argv), so what the file prints while it loads (a leftover `console.log`)
//! passes through to stderr, as under PM2. Node gets a deadline (30 s, or
//! `--timeout`) and caps on what it sends; past them it is killed and the
//! file named.

use super::{error, ConfigError, Format};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Loads the file named by argv[1]; `json` in argv[2] evaluates it as an
/// expression (PM2's `vm.runInThisContext('(' + data + ')')`); writes the
/// result to the fd in argv[3] and exits, whatever timers the file left.
const LOADER: &str = r#"
const [file, kind, fd] = process.argv.slice(1);
const load = async () => {
  if (kind === 'json') {
    const text = require('fs').readFileSync(file, 'utf8');
    return require('vm').runInThisContext('(' + text + ')', { filename: file });
  }
  try {
    return require(file);
  } catch (e) {
    if (!String(e && e.code).startsWith('ERR_REQUIRE')) throw e;
    return import(require('url').pathToFileURL(file).href);
  }
};
load().then((conf) => {
  if (conf && conf.__esModule !== undefined || (conf && Object.prototype.toString.call(conf) === '[object Module]')) conf = conf.default;
  require('fs').writeFileSync(Number(fd), JSON.stringify(conf === undefined ? null : conf));
  process.exit(0);
}, (e) => {
  process.stderr.write(String(e && e.stack || e));
  process.exit(3);
});
"#;

/// How long node may take to load a file when `--timeout` is not given.
const DEADLINE: Duration = Duration::from_secs(30);

/// Most bytes of config JSON taken from node.
const MAX_CONFIG: u64 = 64 << 20;

/// Most bytes of node's stderr kept (for the error of a file that threw).
const MAX_STDERR: u64 = 1 << 20;

/// Runs the file through `node` in `cwd` and returns what it exports.
pub fn evaluate(
    file: &Path,
    format: Format,
    cwd: &Path,
    path_var: &str,
) -> Result<serde_json::Value, ConfigError> {
    let node = crate::resolve::find_command("node", cwd, path_var).ok_or_else(|| {
        error(file, "node is needed to read this file (PM2 files are JavaScript) but is not in PATH; install Node.js, or write the apps in a sup.toml")
    })?;
    let absolute = cwd.join(file);
    let kind = if format == Format::Json { "json" } else { "js" };
    let cannot = |e: std::io::Error| error(file, format!("cannot run node: {e}"));
    let (config_rx, config_tx) = channel().map_err(cannot)?;
    // The file's own prints go to our stderr.
    let passthrough = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(cannot)?;
    let mut child = Command::new(node)
        .args(["-e", LOADER])
        .arg(&absolute)
        .arg(kind)
        .arg(config_tx.as_raw_fd().to_string())
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(passthrough))
        .stderr(Stdio::piped())
        // Its own group: the deadline kills whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(cannot)?;
    drop(config_tx);
    let stderr = child.stderr.take().expect("piped");
    let (done, results) = mpsc::channel();
    let config = reader(std::fs::File::from(config_rx), MAX_CONFIG, done.clone());
    let errors = reader(stderr, MAX_STDERR, done);
    let deadline = Instant::now() + crate::client::timeout_override().unwrap_or(DEADLINE);
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if results.recv_timeout(left).is_err() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            let waited = crate::client::timeout_override().unwrap_or(DEADLINE);
            return Err(error(
                file,
                format!(
                    "did not finish loading in {}; node (pid {}) was killed (--timeout sets the limit)",
                    crate::render::duration(waited.as_millis() as u64),
                    child.id()
                ),
            ));
        }
    }
    // Under `sup run` (a SIGHUP reload) the daemon's reaper may collect
    // node first: then its status is unknown, and the config decides.
    let status = match child.wait() {
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => None,
        other => Some(other.map_err(cannot)?),
    };
    let (config, config_full) = config.join().expect("reader");
    let (stderr, _) = errors.join().expect("reader");
    let stderr = String::from_utf8_lossy(&stderr);
    if status.is_some_and(|s| !s.success()) {
        return Err(thrown(file, &absolute, &stderr));
    }
    // What the file printed to stderr while loading, passed on (not
    // eprint!: it panics when stderr is gone).
    let _ = std::io::Write::write_all(&mut std::io::stderr(), stderr.as_bytes());
    if config_full {
        return Err(error(
            file,
            format!("the config is larger than {} MiB", MAX_CONFIG >> 20),
        ));
    }
    serde_json::from_slice(&config).map_err(|e| error(file, format!("node sent no config: {e}")))
}

/// A pipe for the config: the read end is close-on-exec, the write end is
/// inherited by node.
fn channel() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    nix::fcntl::fcntl(
        write.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    Ok((read, write))
}

/// Reads `from` to its end on a thread, keeping at most `cap` bytes (the
/// rest is drained, so node never blocks on a full pipe); says when done.
/// Returns (kept, whether some was dropped).
fn reader(
    from: impl Read + Send + 'static,
    cap: u64,
    done: mpsc::Sender<()>,
) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut from = from;
        let _ = (&mut from).take(cap).read_to_end(&mut kept);
        let dropped = std::io::copy(&mut from, &mut std::io::sink()).unwrap_or(0) > 0;
        let _ = done.send(());
        (kept, dropped)
    })
}

/// The error of a file that threw: its message, and the line and column
/// node points at in this file.
fn thrown(file: &Path, absolute: &Path, stderr: &str) -> ConfigError {
    let prefix = format!("{}:", absolute.display());
    let at = stderr.lines().find_map(|line| {
        let rest = &line[line.find(&prefix)? + prefix.len()..];
        let mut parts = rest.split(|c: char| !c.is_ascii_digit());
        let line_no = parts.next()?.parse().ok()?;
        let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
        Some((line_no, col))
    });
    let message = stderr
        .lines()
        .find(|l| l.contains("Error") && !l.trim_start().starts_with("at "))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or("node failed"))
        .trim();
    ConfigError {
        file: file.to_path_buf(),
        at,
        message: format!("the file failed to load in node: {message}"),
    }
}
