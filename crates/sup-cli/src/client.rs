//! Talking to the daemon: framed requests over the Unix socket, and starting
//! a daemon on demand when none answers.

use anyhow::{anyhow, bail, Context, Result};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use sup_home::{Home, ManagingUnit};
use sup_proto::{
    decode_len, encode_frame, Request, RequestEnvelope, Response, ResponseEnvelope, HEADER_LEN,
    PROTOCOL_VERSION, SUP_VERSION,
};

/// Set once the version warning was printed.
static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set once the daemon's standing warnings were printed: once per command.
static WARNINGS_SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How long a CLI waits for a daemon it started to answer.
const SPAWN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a plain request (list, describe, save, ...) may wait for its
/// answer before the daemon counts as stopped or hung.
const PLAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Added to the apps' own timeouts for a request that waits for apps.
const WAIT_MARGIN: Duration = Duration::from_secs(5);

/// `--timeout`: replaces every request's deadline. Set once at start; a
/// process-wide setting because every connection of the run honours it.
static TIMEOUT_OVERRIDE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// `--timeout`, when given.
pub fn timeout_override() -> Option<Duration> {
    TIMEOUT_OVERRIDE.get().copied()
}

/// Makes every request of this run wait at most `timeout` (`--timeout`).
pub fn override_timeout(timeout: Duration) {
    let _ = TIMEOUT_OVERRIDE.set(timeout);
}

/// Keeps later answers from printing the version warning or the daemon's
/// standing warnings: for a full-screen view, which owns the terminal once
/// its first answer printed them.
pub fn silence_warnings() {
    WARNED.store(true, std::sync::atomic::Ordering::Relaxed);
    WARNINGS_SHOWN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The daemon did not answer in time. Kept as a type so that callers that
/// read a closed connection as "the daemon is going away" (`kill`, `update`)
/// still report it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the sup daemon ({daemon}) did not answer within {waited:?}: it is stopped or hung{hint}; \
     `--timeout` waits longer"
)]
pub struct NoAnswer {
    daemon: String,
    waited: Duration,
    hint: String,
}

impl NoAnswer {
    fn new(home: &Home, waited: Duration) -> NoAnswer {
        let pid = home.daemon_pid();
        NoAnswer {
            daemon: pid.map_or("pid unknown".into(), |p| format!("pid {p}")),
            waited,
            hint: pid.map_or(String::new(), |p| {
                format!(" (`kill -CONT {p}` resumes a stopped one)")
            }),
        }
    }
}

/// A connection to the daemon.
pub struct Client {
    stream: UnixStream,
    home: Home,
}

impl Client {
    /// Connects to a running daemon; `None` when none answers.
    pub fn connect(home: &Home) -> Result<Option<Client>> {
        home.check_socket_path()?;
        match UnixStream::connect(home.socket()) {
            Ok(stream) => Ok(Some(Client {
                stream,
                home: home.clone(),
            })),
            // No socket, a stale one, or no home at all: no daemon runs.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused | ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot connect to {}", home.socket().display()))
            }
        }
    }

    /// Connects to a running daemon; when none runs but the last one died
    /// without a clean shutdown, starts one, which restores that daemon's apps.
    pub fn connect_or_recover(home: &Home) -> Result<Option<Client>> {
        match Client::connect(home)? {
            Some(client) => Ok(Some(client)),
            None if home.last_daemon_died_uncleanly() => Client::connect_or_spawn(home).map(Some),
            None => Ok(None),
        }
    }

    /// Connects to the daemon, starting one first if none runs.
    pub fn connect_or_spawn(home: &Home) -> Result<Client> {
        if let Some(client) = Client::connect(home)? {
            return Ok(client);
        }
        home.prepare()?;
        // Racing CLIs queue here; the first starts the daemon, the others find it.
        let _lock = home
            .lock_spawn()
            .with_context(|| format!("cannot lock {}", home.spawn_lock().display()))?;
        if let Some(client) = Client::connect(home)? {
            return Ok(client);
        }
        match home.managing_unit() {
            // Its unit brings it back: a daemon started here would run
            // outside the unit, and the unit's would find the home taken.
            Some(unit) => wait_for_unit(home, &unit),
            None => spawn_daemon(home),
        }
    }

    /// Sends a plain request and reads the answer, within a few seconds.
    pub fn request(&mut self, request: Request) -> Result<Response> {
        decode_response(&self.exchange(request, PLAIN_DEADLINE)?)
    }

    /// `list` for `list --json`: the JSON array of the apps as the daemon
    /// wrote it when the daemon is this very version (so 1,000 apps are not
    /// decoded and encoded again to print the same text), else the decoded
    /// answer.
    pub fn list_json(&mut self) -> Result<std::result::Result<String, Response>> {
        let body = self.exchange(Request::List, PLAIN_DEADLINE)?;
        match same_version_apps(&body) {
            Some(json) => Ok(Ok(json)),
            None => Ok(Err(decode_response(&body)?)),
        }
    }

    /// Sends a request that waits for apps to stop or get ready, and reads
    /// the answer, within `apps_time` (their longest relevant timeout) and a
    /// margin.
    pub fn request_waiting(&mut self, request: Request, apps_time: Duration) -> Result<Response> {
        decode_response(&self.exchange(request, apps_time + WAIT_MARGIN)?)
    }

    /// Sends `request` and reads the body of its answer within `deadline`.
    fn exchange(&mut self, request: Request, deadline: Duration) -> Result<Vec<u8>> {
        let deadline = TIMEOUT_OVERRIDE.get().copied().unwrap_or(deadline);
        // A zero timeout means "none" to the socket: wait a millisecond instead.
        let timeout = Some(deadline.max(Duration::from_millis(1)));
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        let frame = encode_frame(&RequestEnvelope::new(request))?;
        let sent = self.stream.write_all(&frame);
        // A daemon that refuses us answers and hangs up before reading: its
        // answer may still be waiting even though our write failed.
        let answer = self.read_body();
        let sent_timed_out = sent.as_ref().is_err_and(is_timeout);
        if sent_timed_out || answer.as_ref().is_err_and(timed_out) {
            return Err(NoAnswer::new(&self.home, deadline).into());
        }
        match (answer, sent) {
            (Ok(response), _) => Ok(response),
            (Err(_), Err(e)) => Err(e).context("cannot send to the daemon"),
            (Err(e), Ok(())) => Err(e),
        }
    }

    /// Reads the next answer of a streaming request (`events --follow`),
    /// which comes whenever something happens: no deadline.
    pub fn next_response(&mut self) -> Result<Response> {
        self.stream.set_read_timeout(None)?;
        decode_response(&self.read_body()?)
    }

    fn read_body(&mut self) -> Result<Vec<u8>> {
        let mut header = [0u8; HEADER_LEN];
        self.stream
            .read_exact(&mut header)
            .context("the daemon closed the connection without answering")?;
        let mut body = vec![0u8; decode_len(header)?];
        self.stream
            .read_exact(&mut body)
            .context("the daemon's answer was cut short")?;
        Ok(body)
    }
}

/// Whether a socket operation ran out of its timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Whether reading an answer failed for lack of time.
fn timed_out(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(is_timeout))
}

/// What an answer says of itself, read before the answer: a skim that
/// allocates nothing for the answer's body.
#[derive(serde::Deserialize)]
struct Head {
    proto: Option<u64>,
    daemon: Option<String>,
    response: Option<Kind>,
}

#[derive(serde::Deserialize)]
struct Kind {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// An answer's apps as the daemon wrote them, when the daemon is this very
/// version (so they are what this CLI would write) and answered with apps.
fn same_version_apps(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        proto: u32,
        daemon: &'a str,
        #[serde(borrow)]
        response: RawResponse<'a>,
        #[serde(default)]
        warnings: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct RawResponse<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let raw: Raw = serde_json::from_slice(body).ok()?;
    if raw.proto != PROTOCOL_VERSION || raw.daemon != SUP_VERSION || raw.response.kind != "apps" {
        return None;
    }
    show_warnings(&raw.warnings);
    Some(raw.response.data.get().to_string())
}

/// Prints the envelope's warnings to stderr, once per CLI process.
fn show_warnings(warnings: &[String]) {
    if !warnings.is_empty() && !WARNINGS_SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        for warning in warnings {
            eprintln!("warning: {warning}");
        }
    }
}

/// Decodes an answer, checking the daemon speaks our protocol version.
fn decode_response(body: &[u8]) -> Result<Response> {
    let head: Head = serde_json::from_slice(body).context("the daemon's answer is not JSON")?;
    let proto = head.proto;
    let daemon = head.daemon.unwrap_or_else(|| "unknown".into());
    // Answers to `ping` and `update` keep their shape across versions.
    let stable = matches!(
        head.response.and_then(|r| r.kind).as_deref(),
        Some("pong" | "ok" | "error")
    );
    if proto != Some(u64::from(PROTOCOL_VERSION)) && !stable {
        bail!(
            "the running daemon is sup {daemon}, this CLI is sup {SUP_VERSION} (protocols differ); \
             run `sup update` to replace the daemon, or `sup kill` and retry"
        );
    }
    if daemon != SUP_VERSION && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "[sup] warning: the running daemon is sup {daemon}, this CLI is sup {SUP_VERSION}; \
             run `sup update` to replace the daemon"
        );
    }
    // From the bytes, where `type` comes before `data`: read in one pass
    // (from a `Value`, whose keys are sorted, serde would buffer the body).
    let envelope: ResponseEnvelope = serde_json::from_slice(body).map_err(|e| {
        anyhow!("cannot understand the answer of daemon sup {daemon} (this CLI is sup {SUP_VERSION}): {e}")
    })?;
    show_warnings(&envelope.warnings);
    Ok(envelope.response)
}

/// Starts `sup daemon` detached (its own session, output to the daemon log)
/// and waits until it answers.
fn spawn_daemon(home: &Home) -> Result<Client> {
    let log_path = home.daemon_log();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the sup executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("daemon")
        .env("SUP_HOME", home.dir())
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The daemon says READY=1 on NOTIFY_SOCKET once it answers, as under
    // systemd: no need to poll its socket.
    let notify_path = home
        .notify_dir()
        .join(format!("cli-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path)
        .with_context(|| format!("cannot bind {}", notify_path.display()))?;
    let _cleanup = RemoveOnDrop(notify_path.clone());
    notify.set_read_timeout(Some(Duration::from_millis(100)))?;
    cmd.env("NOTIFY_SOCKET", &notify_path);
    let mut child = cmd.spawn().context("cannot start the daemon")?;
    let deadline = Instant::now() + SPAWN_TIMEOUT;
    let mut buf = [0u8; 256];
    loop {
        let ready = matches!(notify.recv(&mut buf), Ok(n) if buf[..n].split(|b| *b == b'\n').any(|l| l == b"READY=1"));
        if ready {
            if let Some(client) = Client::connect(home)? {
                return Ok(client);
            }
        }
        if let Some(status) = child.try_wait()? {
            if let Some(client) = Client::connect(home)? {
                return Ok(client);
            }
            bail!(
                "the daemon exited at start ({status}); its log {} ends with:\n{}",
                log_path.display(),
                tail(&log_path, 5)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the daemon did not answer within {SPAWN_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Waits until the daemon holding `home`'s lock has exited.
pub fn wait_daemon_gone(home: &Home, daemon: Option<u32>, timeout: Duration) -> Result<()> {
    let unlocked = home
        .wait_daemon_unlocked(timeout)
        .context("cannot wait for the daemon lock")?;
    if !unlocked {
        bail!("the daemon is still running after {timeout:?}");
    }
    // The kernel frees the lock while the process exits; wait for the rest
    // of its exit, so that the daemon is really gone when we return.
    let Some(pid) = daemon else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(2);
    while process_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Whether a thread of process `pid` is still running (not a zombie): the
/// daemon's spawn thread has an fd table of its own, so the lock is free
/// when the other threads are gone, and it may still be exiting.
fn process_running(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(false)
    })
}

/// Turns a daemon error into a CLI error (exit code 1).
pub fn expect_ok(response: Response) -> Result<Response> {
    match response {
        Response::Error { message, .. } => Err(anyhow!(message)),
        other => Ok(other),
    }
}

/// How long the CLI waits for a unit to restart its daemon (the unit's
/// `RestartSec=2`, and its start) before asking systemd to start it.
const UNIT_RESTART_WAIT: Duration = Duration::from_secs(5);

/// Connects to the daemon that systemd `unit` runs, once it is back; asks
/// systemd to start the unit if it does not come back by itself.
fn wait_for_unit(home: &Home, unit: &ManagingUnit) -> Result<Client> {
    if let Some(client) = connect_within(home, UNIT_RESTART_WAIT)? {
        return Ok(client);
    }
    let mut systemctl = Command::new("systemctl");
    if unit.user {
        systemctl.arg("--user");
    }
    let started = systemctl.args(["start", &unit.name]).status();
    if started.is_ok_and(|s| s.success()) {
        if let Some(client) = connect_within(home, UNIT_RESTART_WAIT)? {
            return Ok(client);
        }
    }
    bail!(
        "the sup daemon runs under the systemd unit {} and did not come back; see `systemctl{} status {}` \
         (or `sup unstartup` to run sup without the unit)",
        unit.name,
        if unit.user { " --user" } else { "" },
        unit.name
    )
}

/// Tries to connect until `within` has passed.
fn connect_within(home: &Home, within: Duration) -> Result<Option<Client>> {
    let until = Instant::now() + within;
    loop {
        if let Some(client) = Client::connect(home)? {
            return Ok(Some(client));
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_json_passes_the_apps_through_only_from_this_very_version() {
        let apps = r#"[{"id":0,"name":"a \"b\"","cpu":0.5,"instances":[]}]"#;
        let body = |proto: u32, daemon: &str, kind: &str| {
            format!(
                r#"{{"proto":{proto},"daemon":"{daemon}","response":{{"type":"{kind}","data":{apps}}},"warnings":["w"]}}"#
            )
        };
        let same = body(PROTOCOL_VERSION, SUP_VERSION, "apps");
        assert_eq!(same_version_apps(same.as_bytes()).as_deref(), Some(apps));
        let older = body(PROTOCOL_VERSION, "0.0.1", "apps");
        assert_eq!(same_version_apps(older.as_bytes()), None);
        let other_proto = body(PROTOCOL_VERSION + 1, SUP_VERSION, "apps");
        assert_eq!(same_version_apps(other_proto.as_bytes()), None);
        let error = br#"{"proto":1,"daemon":"x","response":{"type":"error","data":{}}}"#;
        assert_eq!(same_version_apps(error), None);
        assert_eq!(same_version_apps(b"not json"), None);
    }

    #[test]
    fn another_protocol_is_a_clear_error() {
        let body = br#"{"proto":7,"daemon":"9.9.9","response":{"type":"apps","data":[]}}"#;
        let err = decode_response(body).unwrap_err().to_string();
        assert!(
            err.contains("sup 9.9.9") && err.contains("sup update"),
            "{err}"
        );
        // What `sup update` needs still reads, so an old daemon can be replaced.
        let ok = br#"{"proto":7,"daemon":"9.9.9","response":{"type":"ok"}}"#;
        assert_eq!(decode_response(ok).unwrap(), Response::Ok);
    }

    #[test]
    fn current_protocol_decodes() {
        let frame = encode_frame(&ResponseEnvelope::new(Response::Ok)).unwrap();
        assert_eq!(decode_response(&frame[HEADER_LEN..]).unwrap(), Response::Ok);
    }
}
