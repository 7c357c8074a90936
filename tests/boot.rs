//! `sup startup && sup save` under a real systemd: boots the distribution's
//! systemd as PID 1 of private namespaces over an overlay of the host's
//! root (`tests/boot/stage2.sh`), installs the unit, saves an app, reboots,
//! and checks the app is back; then what the unit does when the daemon is
//! killed, and `systemctl stop`. Root only; with `CI` set a skip fails.

use crate::support::{skip, wait_for, SUP};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const STAGE2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/boot/stage2.sh");
const SYSTEMD: &str = "/lib/systemd/systemd";
const UNIT: &str = "sup-root.service";
/// The PATH of every command run inside.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host units that make no sense in a container (besides every unit the
/// host enabled itself, which are masked too).
const MASKED: &[&str] = &[
    "getty@tty1.service",
    "console-getty.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-modules-load.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "systemd-random-seed.service",
    "kmod-static-nodes.service",
    "systemd-firstboot.service",
];

/// A systemd "machine": its overlay's upper layer survives reboots; the
/// namespaces, its cgroup and the overlay go away on drop, even when the
/// test fails.
struct Machine {
    /// Scratch dir: `pid`, `console.log`, and the tmpfs `ovl/`.
    work: PathBuf,
    /// The cgroup2 directory the machine runs in.
    cgroup: PathBuf,
    /// `script` running `unshare` running systemd.
    launcher: Option<Child>,
    /// Host pid of the machine's PID 1.
    pid: u32,
}

impl Machine {
    /// A machine ready to boot, or `None` after saying why it can't run.
    fn new() -> Option<Machine> {
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            skip("booting systemd in namespaces needs root");
            return None;
        }
        if !Path::new(SYSTEMD).exists() {
            skip(&format!("{SYSTEMD} is not installed"));
            return None;
        }
        for tool in ["unshare", "nsenter", "script", "setsid", "mount"] {
            if Command::new(tool).arg("--version").output().is_err() {
                skip(&format!("{tool} is not installed (util-linux)"));
                return None;
            }
        }
        let unified = Path::new("/sys/fs/cgroup/unified");
        let cgroot = if unified.is_dir() {
            unified
        } else {
            Path::new("/sys/fs/cgroup")
        };
        let name = format!("sup-boot-{}", std::process::id());
        let machine = Machine {
            work: Path::new("/tmp").join(&name),
            cgroup: cgroot.join(&name),
            launcher: None,
            pid: 0,
        };
        machine.prepare();
        Some(machine)
    }

    fn upper(&self) -> PathBuf {
        self.work.join("ovl/upper")
    }

    /// The upper layer: masked units, the sup under test, the app.
    fn prepare(&self) {
        fs::create_dir_all(self.work.join("ovl")).unwrap();
        fs::create_dir_all(&self.cgroup).unwrap();
        // The upper layer lives on a tmpfs: overlayfs wants an upper
        // directory it can use whatever /tmp is.
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=512m", "supboot"])
                .arg(self.work.join("ovl")),
        );
        let units = self.upper().join("etc/systemd/system");
        for dir in [
            "ovl/work",
            "ovl/merged",
            "ovl/upper/usr/local/bin",
            "ovl/upper/srv/nap",
        ] {
            fs::create_dir_all(self.work.join(dir)).unwrap();
        }
        fs::create_dir_all(&units).unwrap();
        for unit in MASKED
            .iter()
            .map(|u| u.to_string())
            .chain(host_enabled_units())
        {
            symlink("/dev/null", units.join(unit)).unwrap_or(());
        }
        let bin = self.upper().join("usr/local/bin/sup");
        fs::copy(SUP, &bin).unwrap();
        let app = self.upper().join("srv/nap/app.sh");
        fs::write(&app, "#!/bin/sh\nexec sleep 100000\n").unwrap();
        fs::set_permissions(&app, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Boots, and waits until systemd reports `running` (or `degraded`).
    fn boot(&mut self) {
        let _ = fs::remove_file(self.work.join("pid"));
        let inner = format!(
            "exec unshare --pid --fork --mount --uts --ipc --net --cgroup --propagation private {STAGE2} {}",
            self.work.display()
        );
        // Into the machine's cgroup first, so that the cgroup namespace is
        // rooted there; `script` gives systemd a pty for its console.
        let launch = format!(
            "echo $$ > {}/cgroup.procs && exec script -qfec '{inner}' {}/console.log",
            self.cgroup.display(),
            self.work.display()
        );
        let child = Command::new("setsid")
            .args(["sh", "-c", &launch])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("launch the machine");
        self.launcher = Some(child);
        let pid_file = self.work.join("pid");
        let mut pid = None;
        self.wait("the machine has a PID 1", secs(10), || {
            pid = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            pid.is_some()
        });
        self.pid = pid.unwrap_or_default();
        self.wait("systemd is up", secs(30), || {
            let state = self.out(&["systemctl", "is-system-running"]);
            matches!(state.trim(), "running" | "degraded")
        });
    }

    /// `systemctl VERB` (reboot, poweroff) and waits for the machine to end.
    fn shut_down(&mut self, verb: &str) {
        self.out(&["systemctl", verb]);
        let mut launcher = self.launcher.take().expect("the machine runs");
        self.wait(
            &format!("the machine is down after {verb}"),
            secs(30),
            || launcher.try_wait().unwrap().is_some(),
        );
        self.pid = 0;
    }

    /// `ARGS` run inside, with a clean environment.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.pid.to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "-C",
                "-r",
                "-w",
            ])
            .args(["env", "-i", &format!("PATH={PATH}"), "HOME=/root"])
            .args(args)
            .output()
            .expect("run nsenter")
    }

    /// Stdout of `ARGS` run inside, whatever their status.
    fn out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.run(args).stdout).into_owned()
    }

    /// Runs `sh -c SCRIPT` inside, asserts success and returns stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.run(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed inside ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file inside, read from the host's side of the machine's root.
    fn read(&self, path: &str) -> String {
        let out = self.run(&["cat", path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p PROP --value UNIT`.
    fn unit_prop(&self, prop: &str) -> String {
        self.out(&["systemctl", "show", "-p", prop, "--value", UNIT])
            .trim()
            .to_string()
    }

    /// The app `nap` once it is online: (pid inside, its environment).
    fn nap_online(&self) -> (u32, Vec<String>) {
        let mut found = (0, Vec::new());
        self.wait("nap is online", secs(15), || {
            let text = self.out(&["sup", "list", "--json"]);
            let Ok(apps) = serde_json::from_str::<Value>(&text) else {
                return false;
            };
            let Some(nap) = apps
                .as_array()
                .and_then(|a| a.iter().find(|a| a["name"] == "nap"))
            else {
                return false;
            };
            let pid = nap["pid"].as_u64().unwrap_or(0) as u32;
            if nap["status"] != "online" || pid == 0 {
                return false;
            }
            let environ = self.read(&format!("/proc/{pid}/environ"));
            found = (pid, environ.split('\0').map(str::to_string).collect());
            true
        });
        found
    }

    /// Whether process `pid` inside has exited (gone, or a zombie).
    fn gone(&self, pid: u32) -> bool {
        let stat = self.read(&format!("/proc/{pid}/stat"));
        stat.rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
    }

    /// Polls `cond` for up to `deadline`; on timeout, fails with the console's
    /// last lines.
    fn wait(&self, what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
        let console = self.work.join("console.log");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, deadline, &mut cond)
        }));
        if let Err(panic) = result {
            let log = fs::read_to_string(console).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "console, last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut launcher) = self.launcher.take() {
            // Killing PID 1 of a pid namespace kills everything in it.
            if self.pid != 0 && is_namespace_init(self.pid) {
                // SAFETY: plain kill(2) of the machine's PID 1.
                unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
            }
            let _ = launcher.kill();
            let _ = launcher.wait();
        }
        let ovl = self.work.join("ovl");
        let umounted = Command::new("umount")
            .arg(&ovl)
            .status()
            .is_ok_and(|s| s.success());
        if !umounted {
            let _ = Command::new("umount").arg("-l").arg(&ovl).status();
        }
        remove_cgroup(&self.cgroup);
        let _ = fs::remove_dir_all(&self.work);
    }
}

/// Whether host pid `pid` is PID 1 of its own pid namespace.
fn is_namespace_init(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("NSpid:"))
            .is_some_and(|l| l.split_whitespace().last() == Some("1"))
    })
}

/// Removes a cgroup and the ones systemd made under it, deepest first,
/// once their processes are gone.
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&entry.path());
            }
        }
    }
    let _ = wait_for_ok(|| fs::remove_dir(dir).is_ok() || !dir.exists());
}

/// Retries `f` for a few seconds (a cgroup is busy until its last process
/// is reaped).
fn wait_for_ok(mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Units the host enabled for itself (`*.wants/`): its own services and
/// timers, not the machine's business.
fn host_enabled_units() -> Vec<String> {
    let mut units = Vec::new();
    for wants in fs::read_dir("/etc/systemd/system")
        .into_iter()
        .flatten()
        .flatten()
    {
        if !wants.file_name().to_string_lossy().ends_with(".wants") {
            continue;
        }
        for unit in fs::read_dir(wants.path()).into_iter().flatten().flatten() {
            let name = unit.file_name().to_string_lossy().into_owned();
            if name.ends_with(".service") || name.ends_with(".timer") {
                units.push(name);
            }
        }
    }
    units
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("run a host command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn startup_and_save_bring_the_app_back_after_a_reboot() {
    let Some(mut machine) = Machine::new() else {
        return;
    };
    machine.boot();
    let said = machine.sh(
        "cd /srv/nap && sup start ./app.sh --name nap --env GREETING=hello-saved \
         && sup startup && sup save",
    );
    assert!(said.contains("saved 1 app to"), "{said}");
    assert_eq!(
        machine.out(&["systemctl", "is-enabled", UNIT]).trim(),
        "enabled"
    );

    machine.shut_down("reboot");
    machine.boot();
    assert_eq!(
        machine.out(&["systemctl", "is-active", UNIT]).trim(),
        "active"
    );
    let main = machine.unit_prop("MainPID");
    let cmdline = machine
        .read(&format!("/proc/{main}/cmdline"))
        .replace('\0', " ");
    assert!(
        cmdline.contains("sup daemon --resurrect"),
        "MainPID {main}: {cmdline}"
    );
    let (pid, env) = machine.nap_online();
    assert!(
        env.iter().any(|v| v == "GREETING=hello-saved"),
        "nap's env: {env:?}"
    );
    assert!(
        !env.iter().any(|v| v.starts_with("NOTIFY_SOCKET=")),
        "nap's env: {env:?}"
    );
    let cwd = machine.out(&["readlink", &format!("/proc/{pid}/cwd")]);
    assert_eq!(cwd.trim(), "/srv/nap");
    // The unit delegates its cgroup: the daemon moved itself into a leaf,
    // and the app has a cgroup of its own beside it.
    assert_eq!(machine.unit_prop("Delegate").trim(), "yes");
    let own = |pid: &str| {
        let text = machine.read(&format!("/proc/{pid}/cgroup"));
        text.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no cgroup v2 line in {text}"))
    };
    let unit_cgroup = format!("/system.slice/{UNIT}");
    assert_eq!(own(main.trim()), format!("{unit_cgroup}/daemon"));
    let app_cgroup = own(&pid.to_string());
    assert!(
        app_cgroup.starts_with(&format!("{unit_cgroup}/apps/")),
        "{app_cgroup}"
    );
    let listed = machine.out(&["sup", "list", "--json"]);
    assert!(listed.contains("\"mode\":\"cgroup\""), "{listed}");
    // READY=1 follows the daemon's "daemon ready" line, and systemd's
    // "Started" follows READY=1. The journal's order of the two lines is
    // not that order: the daemon's stderr reaches it through a stream that
    // journald may read after systemd's own message. Each line's time at
    // its source is: the daemon's own stamp, and systemd's
    // _SOURCE_REALTIME_TIMESTAMP.
    let journal = machine.out(&["journalctl", "-u", UNIT, "-b", "-o", "json"]);
    let entries: Vec<Value> = journal
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |e: &Value| e["MESSAGE"].as_str().unwrap_or("").to_string();
    let ready_line = entries
        .iter()
        .map(message)
        .find(|m| m.contains("daemon ready"))
        .unwrap_or_else(|| panic!("the daemon logged ready:\n{journal}"));
    let stamp = ready_line.split_whitespace().next().unwrap();
    let ready_us: u64 = machine
        .out(&["date", "-u", "-d", stamp, "+%s%6N"])
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{stamp}: {e}"));
    let started_us: u64 = entries
        .iter()
        .find(|e| message(e).starts_with("Started sup-root"))
        .and_then(|e| e["_SOURCE_REALTIME_TIMESTAMP"].as_str()?.parse().ok())
        .unwrap_or_else(|| panic!("systemd logged Started:\n{journal}"));
    assert!(
        ready_us <= started_us,
        "READY=1 comes before Started: ready at {ready_us}, started at {started_us}:\n{journal}"
    );

    // With KillMode=mixed, systemd kills what is left in the unit's cgroup
    // when the daemon dies, at once (before RestartSec=2 could start the
    // next daemon); the next daemon starts the apps again.
    machine.sh(&format!("kill -9 {main}"));
    machine.wait("systemd killed nap with the daemon", ms(1500), || {
        machine.gone(pid)
    });
    // A `sup` command in the RestartSec window waits for the unit's next
    // daemon instead of starting one outside the unit.
    let listed = machine.run(&["sup", "list"]);
    assert!(
        listed.status.success(),
        "sup list right after the daemon died: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    machine.wait("the unit restarted the daemon", secs(10), || {
        let now = machine.unit_prop("MainPID");
        now != "0" && now != main && machine.unit_prop("ActiveState") == "active"
    });
    let cmdline = machine.read(&format!("/proc/{}/cmdline", machine.unit_prop("MainPID")));
    assert!(
        cmdline.contains("--resurrect"),
        "the unit's daemon serves: {cmdline}"
    );
    let (again, env) = machine.nap_online();
    assert_ne!(again, pid);
    assert!(
        env.iter().any(|v| v == "GREETING=hello-saved"),
        "nap's env: {env:?}"
    );

    // The unit's stop stops the apps and the daemon, cleanly.
    machine.sh(&format!("systemctl stop {UNIT}"));
    assert_eq!(machine.unit_prop("Result"), "success");
    let left = machine.run(&["pgrep", "-x", "sleep|sup"]);
    assert!(
        !left.status.success(),
        "left running: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    machine.shut_down("poweroff");
}
