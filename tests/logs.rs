//! Logs: every line kept once, in order, timestamped, rotated, readable.

use crate::support::*;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};

/// The app's text of every stored line of `path` (and its rotated copies,
/// oldest first), timestamp prefixes removed.
fn texts(path: &Path) -> Vec<String> {
    let mut files: Vec<std::path::PathBuf> = (1..1000)
        .map(|n| path.with_extension(format!("log.{n}")))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for file in files {
        let bytes = fs::read(&file).unwrap_or_default();
        // Only whole lines: the daemon may be writing the last one right now.
        for line in bytes
            .split_inclusive(|b| *b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
        {
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            out.push(strip_ts(&line).to_string());
        }
    }
    out
}

/// Removes a `2026-11-26T07:42:10.123+00:00 ` prefix, checking its shape.
fn strip_ts(line: &str) -> &str {
    assert!(
        line.len() >= 30 && &line[10..11] == "T" && &line[19..20] == ".",
        "no timestamp: {line:?}"
    );
    &line[30..]
}

fn log(sup: &Sup, name: &str, stream: &str) -> std::path::PathBuf {
    sup.home.join(format!("logs/{name}-{stream}.log"))
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn a_fast_writer_loses_no_line() {
    let sup = Sup::new();
    let app = sup.script(
        "burst.sh",
        "seq -f 'out-%.0f' 200000 &\nseq -f 'err-%.0f' 200000 >&2\nwait",
    );
    sup.ok(&["start", &app, "--name", "burst", "--restart", "no"]);
    sup.wait_status("burst", "stopped");
    let out = log(&sup, "burst", "out");
    let err = log(&sup, "burst", "err");
    wait_for("all lines on disk", DEADLINE, || {
        texts(&out).len() >= 200_000 && texts(&err).len() >= 200_000
    });
    assert!(
        texts(&out) == numbered("out-", 200_000),
        "stdout lines lost, duplicated or out of order"
    );
    assert!(
        texts(&err) == numbered("err-", 200_000),
        "stderr lines lost, duplicated or out of order"
    );
}

#[test]
fn a_burst_right_before_a_crash_is_kept() {
    let sup = Sup::new();
    let app = sup.script(
        "crash.sh",
        "seq -f 'line-%.0f' 50000\nprintf 'no newline'\nkill -9 $$",
    );
    sup.ok(&["start", &app, "--name", "crash", "--restart", "no"]);
    let app = sup.wait_status("crash", "stopped");
    assert_eq!(app["last_exit"], "signal SIGKILL");
    let out = log(&sup, "crash", "out");
    wait_for("the burst on disk", DEADLINE, || texts(&out).len() > 50_000);
    let mut want = numbered("line-", 50_000);
    want.push("no newline".into());
    assert!(texts(&out) == want, "the burst was not kept whole");
}

#[test]
fn rotation_keeps_every_line_once() {
    let sup = Sup::new();
    let app = sup.script("chatty.sh", "seq -f 'line-%.0f' 30000");
    sup.ok(&[
        "start",
        &app,
        "--name",
        "chatty",
        "--restart",
        "no",
        "--log-max-size",
        "64K",
        "--log-keep",
        "100",
    ]);
    sup.wait_status("chatty", "stopped");
    let out = log(&sup, "chatty", "out");
    wait_for("every line on disk", DEADLINE, || {
        texts(&out).len() >= 30_000
    });
    assert!(out.with_extension("log.3").exists(), "no rotation happened");
    for n in 1..100 {
        let rotated = out.with_extension(format!("log.{n}"));
        if rotated.exists() {
            let size = fs::metadata(&rotated).unwrap().len();
            // Full, but never past the limit: rotation happens between lines.
            assert!(
                size <= 64 * 1024 && size > 64 * 1024 - 100,
                "{} is {size} bytes",
                rotated.display()
            );
        }
    }
    assert!(
        texts(&out) == numbered("line-", 30_000),
        "lines lost or duplicated across rotation"
    );
    // Keep = 2 drops the oldest files and nothing else.
    let app2 = sup.script("chatty2.sh", "seq -f 'l-%.0f' 30000");
    sup.ok(&[
        "start",
        &app2,
        "--name",
        "short",
        "--restart",
        "no",
        "--log-max-size",
        "64K",
        "--log-keep",
        "2",
    ]);
    sup.wait_status("short", "stopped");
    let out2 = log(&sup, "short", "out");
    wait_for("the last line on disk", DEADLINE, || {
        texts(&out2).last().map(String::as_str) == Some("l-30000")
    });
    assert!(out2.with_extension("log.2").exists() && !out2.with_extension("log.3").exists());
}

#[test]
fn lines_nostream_prints_exactly_the_last_n() {
    let sup = Sup::new();
    let app = sup.script(
        "app.sh",
        "seq -f 'line-%.0f' 1000\necho oops >&2\nexec sleep 1000",
    );
    sup.ok(&["start", &app, "--name", "app"]);
    wait_for("output on disk", DEADLINE, || {
        texts(&log(&sup, "app", "out")).len() == 1000
    });
    wait_for("stderr on disk", DEADLINE, || {
        texts(&log(&sup, "app", "err")).len() == 1
    });
    let out = sup.ok(&["logs", "app", "--out", "--lines", "7", "--nostream"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    for (line, n) in lines.iter().zip(994..) {
        assert!(
            line.starts_with("app out | ") && line.ends_with(&format!(" line-{n}")),
            "{line}"
        );
    }
    // Both streams merged: 200 lines, the stderr one among them.
    let out = sup.ok(&["logs", "app", "--lines", "200", "--nostream"]);
    assert_eq!(out.lines().count(), 200);
    assert!(out.contains("app err | ") && out.contains(" oops"), "{out}");
    // JSON, one object a line.
    let out = sup.ok(&["logs", "app", "--err", "--json", "--nostream"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["app"].as_str(), v["stream"].as_str(), v["text"].as_str()),
        (Some("app"), Some("err"), Some("oops"))
    );
    assert!(v["ts_ms"].as_i64().unwrap() > 0);
    // All apps, --since.
    let out = sup.ok(&["logs", "--nostream", "--since", "1h", "--lines", "3"]);
    assert_eq!(out.lines().count(), 3, "{out}");
    let out = sup.ok(&["logs", "app", "--nostream", "--since", "0s"]);
    assert!(out.trim().is_empty(), "nothing is newer than now: {out}");
}

/// Runs `sup logs ARGS` in the background, collecting its stdout lines.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(sup: &Sup, args: &[&str]) -> Follower {
        let mut child = sup.command(args).stdout(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Follower { child, lines }
    }

    fn wait_for_line(&self, what: &str) {
        wait_for(&format!("the follower printed {what:?}"), DEADLINE, || {
            self.lines.lock().unwrap().iter().any(|l| l.ends_with(what))
        });
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn following_survives_rotation_and_flush() {
    let sup = Sup::new();
    // The app echoes whatever the test writes into the FIFO.
    let (app, fifo) = sup.echo_app();
    sup.ok(&[
        "start",
        &app,
        "--name",
        "echo",
        "--log-max-size",
        "4K",
        "--log-keep",
        "3",
    ]);
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write;
    writeln!(feed, "warm-up").unwrap();
    wait_for("warm-up on disk", DEADLINE, || {
        texts(&log(&sup, "echo", "out")) == ["warm-up"]
    });
    // Once it printed the last line, it is watching: sup logs watches first.
    let follower = Follower::start(&sup, &["logs", "echo", "--out", "--lines", "1"]);
    follower.wait_for_line(" warm-up");
    writeln!(feed, "first").unwrap();
    follower.wait_for_line(" first");
    // 100 lines of 100 bytes: several rotations.
    for i in 0..100 {
        writeln!(feed, "{i:03}-{}", "x".repeat(95)).unwrap();
    }
    follower.wait_for_line(&format!("099-{}", "x".repeat(95)));
    assert!(log(&sup, "echo", "out").with_extension("log.1").exists());
    let got: Vec<String> = follower
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("-xxx"))
        .cloned()
        .collect();
    assert_eq!(
        got.len(),
        100,
        "lines lost or doubled while following a rotation"
    );
    sup.ok(&["flush", "echo"]);
    assert!(!log(&sup, "echo", "out").with_extension("log.1").exists());
    writeln!(feed, "after flush").unwrap();
    follower.wait_for_line(" after flush");
}

#[test]
fn long_lines_and_binary_bytes() {
    let sup = Sup::new();
    let gen = sup.path("gen.py");
    fs::write(
        &gen,
        "import sys\nw = sys.stdout.buffer\n\
         w.write(b'a' * (1024 * 1024) + b'\\n')\n\
         w.write(b'b' * (3 * 1024 * 1024 + 5) + b'\\n')\n\
         w.write(bytes(range(256)).replace(b'\\n', b'') + b'\\n')\nw.write(b'end\\n')\n",
    )
    .unwrap();
    sup.ok(&[
        "start",
        gen.to_str().unwrap(),
        "--name",
        "gen",
        "--restart",
        "no",
    ]);
    sup.wait_status("gen", "stopped");
    let path = log(&sup, "gen", "out");
    wait_for("the last line", DEADLINE, || {
        fs::read(&path).unwrap_or_default().ends_with(b" end\n")
    });
    let bytes = fs::read(&path).unwrap();
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    // 1 MiB whole; 3 MiB + 5 in four pieces, the first three marked continued.
    assert_eq!(lines.len(), 1 + 4 + 2);
    assert_eq!(lines[0].len(), 30 + 1024 * 1024);
    assert!(
        lines[1..4].iter().all(|l| l[29] == b'~'),
        "pieces are marked as continued"
    );
    assert_eq!(lines[4][29], b' ');
    let binary: Vec<u8> = (0..=255u8).filter(|b| *b != b'\n').collect();
    assert_eq!(&lines[5][30..], &binary[..]);
    // `sup logs` joins the pieces again.
    let out = sup
        .run(&[
            "logs",
            "gen",
            "--out",
            "--raw",
            "--nostream",
            "--lines",
            "3",
        ])
        .stdout;
    let printed: Vec<&[u8]> = out
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(printed.len(), 3);
    assert_eq!(printed[0].len(), 30 + 3 * 1024 * 1024 + 5);
}

#[test]
fn a_full_disk_never_stops_the_app() {
    let sup = Sup::new();
    // Writes as fast as it can, so the failure buffer fills at once.
    let app = sup.script("talk.sh", "exec yes talking");
    sup.ok(&["start", &app, "--name", "talk", "--output", "/dev/full"]);
    let pid = sup.pid("talk");
    sup.wait("dropped bytes are counted", || {
        let d: serde_json::Value =
            serde_json::from_str(&sup.ok(&["describe", "talk", "--json"])).unwrap();
        d[0]["logs"]["dropped_bytes"].as_u64() > Some(0)
            && d[0]["logs"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("/dev/full"))
    });
    assert_eq!(sup.app("talk")["pid"], pid, "the app kept running");
    let page = sup.ok(&["describe", "talk"]);
    assert!(
        page.contains("log bytes dropped") && page.contains("log error"),
        "{page}"
    );
    let log = fs::read_to_string(sup.home.join("daemon.log")).unwrap();
    assert!(log.contains("log write failing"), "{log}");
}

#[test]
fn a_log_deleted_by_hand_is_recreated() {
    let sup = Sup::new();
    // The app echoes whatever the test writes into the FIFO.
    let (app, fifo) = sup.echo_app();
    sup.ok(&["start", &app, "--name", "echo"]);
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write;
    let out = log(&sup, "echo", "out");
    writeln!(feed, "one").unwrap();
    wait_for("line one", DEADLINE, || texts(&out) == ["one"]);
    fs::remove_file(&out).unwrap();
    writeln!(feed, "two").unwrap();
    wait_for("the file is back with line two", DEADLINE, || {
        texts(&out) == ["two"]
    });
}

/// A link planted at an `-o` path: `start` refuses it; planted later (the
/// file deleted, then a link in its place), the daemon refuses to write
/// through it and `flush` empties nothing behind it.
#[test]
fn a_planted_link_is_never_written_or_emptied() {
    let sup = Sup::new();
    let victim = sup.path("victim");
    fs::write(&victim, "precious\n").unwrap();
    let out = sup.path("out.log");
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    let (app, fifo) = sup.echo_app();
    let out_arg = out.to_str().unwrap();
    let err = sup.fails(&["start", &app, "--name", "echo", "-o", out_arg], 1);
    assert!(err.contains("symbolic link"), "{err}");
    fs::remove_file(&out).unwrap();
    sup.ok(&["start", &app, "--name", "echo", "-o", out_arg]);
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    use std::io::Write;
    writeln!(feed, "one").unwrap();
    wait_for("line one", DEADLINE, || texts(&out) == ["one"]);
    fs::remove_file(&out).unwrap();
    std::os::unix::fs::symlink(&victim, &out).unwrap();
    writeln!(feed, "two").unwrap();
    sup.wait("the link is refused", || {
        sup.ok(&["describe", "echo"]).contains("symbolic link")
    });
    sup.ok(&["flush", "echo"]);
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn timestamps_off_custom_files_and_bad_input() {
    let sup = Sup::new();
    let both = sup.path("both.log");
    let app = sup.script("app.sh", "echo to-out\necho to-err >&2\nexec sleep 1000");
    sup.ok(&[
        "start",
        &app,
        "--name",
        "plain",
        "--time",
        "false",
        "--log",
        both.to_str().unwrap(),
    ]);
    wait_for("both lines", DEADLINE, || {
        fs::read_to_string(&both)
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    });
    let mut lines: Vec<String> = fs::read_to_string(&both)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    assert_eq!(lines, ["to-err", "to-out"]);
    let err = sup.fails(&["logs", "plain", "--since", "1m", "--nostream"], 1);
    assert!(err.contains("no timestamps"), "{err}");
    let out = sup.ok(&["logs", "plain", "--nostream"]);
    assert!(out.contains("plain log | to-out"), "{out}");

    sup.fails(&["logs", "plain", "--lines", "x"], 2);
    sup.fails(&["logs", "plain", "--since", "yesterday"], 2);
    sup.fails(&["start", &app, "--log-max-size", "huge"], 2);
    let err = sup.fails(&["logs", "nope", "--nostream"], 1);
    assert!(err.contains("nope"), "{err}");
    sup.fails(&["flush", "nope"], 1);
}

#[test]
fn a_missing_log_directory_is_created_as_pm2_does() {
    let sup = Sup::new();
    let app = sup.script("app.sh", "echo hello\nexec sleep 1000");
    let out = sup.path("logs/deep/out.log");
    let said = sup.ok(&["start", &app, "--name", "a", "-o", out.to_str().unwrap()]);
    assert!(said.contains("created"), "{said}");
    wait_for("the line in the new directory", DEADLINE, || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("hello")
    });
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(sup.path("logs/deep"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn log_format_json_writes_one_object_per_line_for_shippers() {
    let sup = Sup::new();
    let app = sup.script(
        "say.sh",
        "echo \"to out $SUP_INSTANCE\"; echo 'to \"err\"' >&2; exec sleep 1000",
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "j",
        "-i",
        "2",
        "--log-format",
        "json",
    ]);
    let read = |f: &str| std::fs::read_to_string(sup.home.join("logs").join(f)).unwrap_or_default();
    sup.wait("both instances wrote", || {
        read("j-out.log").lines().count() >= 2 && read("j-err.log").lines().count() >= 2
    });
    let objects = |f: &str| -> Vec<serde_json::Value> {
        read(f)
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
            .collect()
    };
    let out = objects("j-out.log");
    assert!(out
        .iter()
        .all(|o| o["app"] == "j" && o["stream"] == "out" && o["time"].is_string()));
    let mut instances: Vec<i64> = out
        .iter()
        .map(|o| o["instance"].as_i64().unwrap())
        .collect();
    instances.sort();
    assert_eq!(instances, [0, 1]);
    assert!(out.iter().any(|o| o["message"] == "to out 1"), "{out:?}");
    let err = objects("j-err.log");
    assert!(
        err.iter()
            .all(|o| o["stream"] == "err" && o["message"] == "to \"err\""),
        "{err:?}"
    );
    sup.ok(&["kill"]);
}

#[test]
fn logs_reads_a_compressed_rotation_for_the_lines_before_it() {
    let sup = Sup::new();
    let app = sup.script(
        "count.sh",
        "for i in $(seq 1 1000); do echo \"line-$i\"; done; exec sleep 1000",
    );
    sup.ok(&[
        "start",
        &app,
        "--name",
        "z",
        "--log-max-size",
        "4K",
        "--log-keep",
        "3",
        "--log-compress",
        "--time",
        "false",
    ]);
    let logs = sup.home.join("logs");
    sup.wait("a compressed rotation", || {
        logs.join("z-out.log.1.gz").exists()
    });
    sup.wait("every line written", || {
        sup.ok(&["logs", "z", "--lines", "1", "--nostream", "--raw", "--out"])
            .contains("line-1000")
    });
    let live = fs::read_to_string(logs.join("z-out.log")).unwrap();
    let want = live.lines().count() + 20;
    let out = sup.ok(&[
        "logs",
        "z",
        "--lines",
        &want.to_string(),
        "--nostream",
        "--raw",
        "--out",
    ]);
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("line-")).collect();
    assert_eq!(got.len(), want, "{out}");
    let first: usize = got[0].trim_start_matches("line-").parse().unwrap();
    let expected: Vec<String> = (first..=1000).map(|i| format!("line-{i}")).collect();
    assert_eq!(got, expected, "consecutive, ending with the last");
    sup.ok(&["kill"]);
}

/// What fd `n` of process `pid` is: `/dev/null`, `pipe:[…]`, ….
fn fd_target(pid: u32, n: u32) -> String {
    fs::read_link(format!("/proc/{pid}/fd/{n}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

#[test]
fn output_sent_to_dev_null_goes_there_without_a_pipe_even_across_update_and_restart() {
    let sup = Sup::new();
    let talk = sup.script(
        "talk.sh",
        "while :; do echo out-line; echo err-line >&2; sleep 0.1; done",
    );
    sup.ok(&[
        "start",
        &talk,
        "--name",
        "quiet",
        "-o",
        "/dev/null",
        "-e",
        "/dev/null",
    ]);
    sup.ok(&["start", &talk, "--name", "half", "-e", "/dev/null"]);
    let check = |sup: &Sup| {
        let (quiet, half) = (sup.pid("quiet"), sup.pid("half"));
        assert_eq!(fd_target(quiet, 1), "/dev/null");
        assert_eq!(fd_target(quiet, 2), "/dev/null");
        assert!(
            fd_target(half, 1).starts_with("pipe:"),
            "{}",
            fd_target(half, 1)
        );
        assert_eq!(fd_target(half, 2), "/dev/null");
        (quiet, half)
    };
    let out = log(&sup, "half", "out");
    let lines = |path: &Path| texts(path).iter().filter(|l| *l == "out-line").count();
    sup.wait("half's stdout captured", || lines(&out) >= 3);
    let before = check(&sup);
    // `update` hands half's one pipe to the next daemon, which must take
    // it for stdout: its lines go on reaching the file.
    sup.ok(&["update"]);
    assert_eq!(check(&sup), before, "update restarted an app");
    let seen = lines(&out);
    sup.wait("half's stdout captured after update", || {
        lines(&out) >= seen + 3
    });
    sup.ok(&["restart", "quiet"]);
    let (quiet, _) = check(&sup);
    assert_ne!(quiet, before.0);
    assert!(!log(&sup, "half", "err").exists());
    assert!(!log(&sup, "quiet", "out").exists());
    assert!(
        texts(&out).iter().all(|l| l == "out-line"),
        "{:?}",
        texts(&out)
    );
}
