#!/usr/bin/env python3
"""Scale: sup at 10, 100, 1,000 and 10,000 idle apps; PM2 and supervisord
beside it at 10, 100 and 1,000, all in one run.

    bench/scale.py SUP_BINARY [--sizes 10,100,1000,10000] [--peers pm2,supervisord]
                   [--max-peer 1000] [--one-by-one-max 1000] [--out DIR]
                   [--deadline-per-app 2] [--nofile N] [--svg docs/scale.svg]
    bench/scale.py --svg-from bench/results/scale-DATE.json   # redraw docs/scale.svg only

A start phase fails after 120 s + 2 s per app (--deadline-per-app), or once
no more app came online for 120 s; the other supervisors and sizes go on.
`ulimit -n` is raised to the hard limit (--nofile N sets both; above the hard
limit that needs CAP_SYS_RESOURCE); pid_max and threads-max are checked and
printed. Before each size the sup daemon's fds there are extrapolated from the
smaller sizes and compared with its own fd limit (a warning if short).

Every app is an idle `sleep 100000`. For each N, and for each supervisor in
turn (sup, then the peers; a fresh home each time):

  1. start N apps with one CLI call each, from a cold daemon, timed from the
     first call until the list shows all N online (skipped above
     --one-by-one-max); sup's and PM2's calls run from one `sh` script, as
     a user's loop would (supervisord's per-app conf file and `update` stay
     in Python); the daemon's RSS after a 2 s settle is kept too;
     then everything is stopped and the home thrown away;
  Each start phase begins after a 3 s pause, so the kernel has finished
  tearing down the last phase's processes and cgroups.
  2. in a fresh home, start N apps from one config file (sup.toml /
     ecosystem.config.js / supervisord.conf), cold daemon, until all online;
  with those N apps running:
  3. 2 s settle, then daemon RSS (VmRSS), fds and threads;
  4. daemon CPU over a 10 s idle window (schedstat, benchlib.cpu_sample);
  5. `list` wall time, whole CLI process, median of 20 runs after one warm-up
     (`sup list`, `sup list --json`, `pm2 list`, `pm2 jlist`,
     `supervisorctl status`);
  6. restart latency after kill -9 of one app, 15 kills of different apps:
     from the kill until the daemon has a new child
     (/proc/<daemon>/task/*/children read in a tight loop, as in
     bench/ownership.py);
  7. stop everything (`sup kill`, `pm2 kill`, `supervisorctl shutdown`), timed
     until the CLI returns and until the daemon and every app are gone.

How the peers are driven (what a user would do):
  - PM2: `pm2 start sleep --name aI -- 100000` per app; one
    ecosystem.config.js with N apps and `pm2 start ecosystem.config.js`.
    PM2_HOME is the fresh home. Online = `pm2 jlist` status "online".
  - supervisord: one-by-one is the conf.d workflow: `supervisord -c main.conf`
    (its [include] picks up conf.d/*.conf; the boot is inside the timed
    window, as the first `sup start` / `pm2 start` boots their daemons), then
    per app a conf.d/aI.conf with one [program:aI] and `supervisorctl update`.
    The file mode is one supervisord.conf with N [program:] sections and
    `supervisord -c`. Programs: `command=/bin/sleep 100000`, `startsecs=0`
    (RUNNING as soon as it is spawned, like sup's and PM2's "online"; the
    default 1 s would add a constant second), everything else default;
    `minfds` sized for N. supervisorctl reads a small conf of its own (just
    [supervisorctl]), so `status` does not parse the N-program file.
    Online = `supervisorctl status` says RUNNING.

Writes a Markdown report (stdout and DIR/scale-DATE.md), the raw figures
(DIR/scale-DATE.json) and docs/scale.svg (three charts drawn by hand: start
time one by one, list time, RSS against N). Every daemon and temp dir is
cleaned up on exit, Ctrl-C or error. Python 3 standard library only.
"""
import argparse
import collections
import datetime
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import ROOT, build_info, cpu_delta, cpu_sample  # noqa: E402

LIST_RUNS = 20
# Pause before each start phase: the kernel finishes tearing down the last
# phase's processes and cgroups.
PHASE_GAP_S = 3
KILLS = 15
SETTLE_S = 2.0
IDLE_S = 10.0
REKILL_GAP_S = 1.5  # an app is killed again only after this long up (min-uptime 1 s everywhere)
RESTART_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 600.0
STOPPED = set()  # homes whose daemon a timed stop already ended
STALL_S = 120.0  # a start phase fails when no more app came online for this long
APP_ARGS = ["100000"]
LABELS = {"sup": "sup", "pm2": "PM2", "supervisord": "supervisord"}
ORDER = ["sup", "pm2", "supervisord"]


def log(msg):
    print(f"[scale {datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


class PhaseError(Exception):
    def __init__(self, msg, online=None):
        super().__init__(msg)
        self.online = online


def run_blocking(argv, timeout, capture=True, **kw):
    """Runs argv to its end and returns a CompletedProcess, or raises
    subprocess.TimeoutExpired. Waits in a blocking waitpid, with a timer that
    kills the command at the deadline: subprocess.run(timeout=...) polls
    waitpid with sleeps of 0.5, 1, 2, 4, 8 ms..., which snaps a 4 ms command
    to 7.5 ms (and a 9 ms one to 15.5 ms) and delays the next call of a
    one-by-one start by as much."""
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=capture, **kw)
    expired = []

    def expire():
        expired.append(True)
        p.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    try:
        stdout, stderr = p.communicate()
    finally:
        timer.cancel()
    if expired:
        raise subprocess.TimeoutExpired(argv, timeout)
    return subprocess.CompletedProcess(argv, p.returncode, stdout, stderr)


def run(argv, env=None, cwd=None, timeout=600, check=True):
    try:
        p = run_blocking(argv, timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise PhaseError(f"{' '.join(argv[:4])}… timed out after {timeout:.0f} s")
    if check and p.returncode != 0:
        raise PhaseError(f"{' '.join(argv[:6])} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[:300]}")
    return p


def real_exe(name):
    """The executable behind `name`; a pyenv shim is resolved to the real script
    (the shim is a bash script that would add ~50 ms to every call)."""
    path = shutil.which(name)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
        if b"pyenv" in head and shutil.which("pyenv"):
            real = subprocess.run(["pyenv", "which", name], capture_output=True, text=True).stdout.strip()
            if real and os.path.exists(real):
                return real
    except OSError:
        pass
    return path


def parse_json_array(text):
    i = text.find("[")
    return json.loads(text[i:]) if i >= 0 else []


# ------------------------------------------------------------------ /proc helpers


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rindex(")") + 2]
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])  # field 22, starttime
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    st = proc_state(pid)
    return st is not None and st not in ("Z", "X")


def children(pid):
    kids = set()
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return kids


def descendants(pid):
    out, todo = set(), [pid]
    while todo:
        for c in children(todo.pop()):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_limit(pid):
    """The soft `Max open files` of a process (a daemon may raise its own)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    v = line.split()[3]
                    return None if v == "unlimited" else int(v)
    except (OSError, ValueError, IndexError):
        pass
    return None


def fs_type(path):
    """The type of the filesystem `path` is on, from /proc/self/mounts."""
    path, best, kind = os.path.realpath(path), "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            _, mnt, fstype = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, kind = mnt, fstype
    return kind


def count_dir(path):
    try:
        return len(os.listdir(path))
    except OSError:
        return None


def wait_gone(pids, timeout):
    t0 = time.perf_counter()
    pids = set(pids)
    while pids and time.perf_counter() - t0 < timeout:
        pids = {p for p in pids if alive(p)}
        if pids:
            time.sleep(0.005)
    return not pids


def force_kill(pid):
    """SIGKILL a daemon and everything under it."""
    if not pid or not alive(pid):
        return
    victims = descendants(pid)
    for p in [pid, *victims]:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    wait_gone([pid, *victims], 10)


def summary(vals):
    s = sorted(vals)
    if not s:
        return None

    def q(p):
        k = (len(s) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(s) - 1)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"median": statistics.median(s), "p95": q(0.95), "min": s[0], "max": s[-1], "n": len(s)}


# ------------------------------------------------------------------ supervisors


class Sup:
    key = "sup"

    def __init__(self, binary, null_logs_at=math.inf):
        self.bin = binary
        self.null_logs_at = null_logs_at

    def env(self, home):
        return dict(os.environ, SUP_HOME=home)

    def cli(self, home, *args, **kw):
        return run([self.bin, *args], env=self.env(home), cwd=home, **kw)

    def version(self):
        return run([self.bin, "--version"], check=False).stdout.strip()

    def boot(self, home):
        pass  # the first `sup start` starts the daemon

    def start_one(self, home, i):
        self.cli(home, "start", *self.one_argv(i)[1:])

    def one_argv(self, i):
        return [self.bin, "start", "/bin/sleep", "--name", f"a{i}", "--", *APP_ARGS]

    def one_cmd(self):
        return "`sup start /bin/sleep --name aI -- 100000`"

    def start_file(self, home, n):
        path = os.path.join(home, "sup.toml")
        # From --null-logs-at on, output goes to /dev/null (PM2's way to turn
        # logs off), which sup hands to the app without a pipe.
        null = 'logs = { out_file = "/dev/null", err_file = "/dev/null" }\n' if n >= self.null_logs_at else ""
        with open(path, "w") as f:
            for i in range(n):
                f.write(f'[[app]]\nname = "a{i}"\nscript = "/bin/sleep"\nargs = ["100000"]\n{null}\n')
        return lambda: self.cli(home, "start", path, check=False)

    def file_cmd(self):
        return "one sup.toml with N `[[app]]` tables, `sup start sup.toml`"

    def online(self, home):
        p = self.cli(home, "list", "--json", check=False)
        if p.returncode != 0:
            return 0
        return sum(1 for a in parse_json_array(p.stdout) if a.get("status") == "online")

    def daemon_pid(self, home):
        try:
            with open(os.path.join(home, "daemon.lock")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def list_cmds(self, home):
        return {"list": [self.bin, "list"], "json": [self.bin, "list", "--json"]}

    def env_for_list(self, home):
        return self.env(home)

    def pid_of(self, home, name):
        out = self.cli(home, "pid", name, check=False).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def stop_argv(self, home):
        return [self.bin, "kill"]

    def stop_cmd(self):
        return "`sup kill`"

    def problems(self, home):
        """WARN/ERROR lines of the daemon log."""
        try:
            with open(os.path.join(home, "daemon.log"), errors="replace") as f:
                return [l.rstrip() for l in f if " WARN " in l or " ERROR " in l]
        except OSError:
            return []


class Pm2:
    key = "pm2"

    def __init__(self):
        self.bin = shutil.which("pm2") or "/usr/bin/pm2"

    def env(self, home):
        return dict(os.environ, PM2_HOME=home)

    def cli(self, home, *args, **kw):
        return run([self.bin, *args], env=self.env(home), cwd=home, **kw)

    def version(self):
        # Not `pm2 --version`: every pm2 command boots a God daemon in PM2_HOME.
        try:
            pkg = os.path.join(os.path.dirname(os.path.realpath(self.bin)), "..", "package.json")
            with open(pkg) as f:
                v = json.load(f)["version"]
        except (OSError, ValueError, KeyError):
            v = "?"
        node = run(["node", "--version"], check=False).stdout.strip()
        return f"PM2 {v} on node {node}"

    def boot(self, home):
        pass  # the first `pm2 start` starts the God daemon

    def start_one(self, home, i):
        self.cli(home, *self.one_argv(i)[1:])

    def one_argv(self, i):
        return [self.bin, "start", "sleep", "--name", f"a{i}", "--", *APP_ARGS]

    def one_cmd(self):
        return "`pm2 start sleep --name aI -- 100000`"

    def start_file(self, home, n):
        path = os.path.join(home, "ecosystem.config.js")
        apps = [{"name": f"a{i}", "script": "sleep", "args": " ".join(APP_ARGS)} for i in range(n)]
        with open(path, "w") as f:
            f.write("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";\n")
        return lambda: self.cli(home, "start", path, check=False)

    def file_cmd(self):
        return "one ecosystem.config.js with N apps, `pm2 start ecosystem.config.js`"

    def online(self, home):
        p = self.cli(home, "jlist", check=False)
        if p.returncode != 0:
            return 0
        try:
            apps = parse_json_array(p.stdout)
        except ValueError:
            return 0
        return sum(1 for a in apps if a.get("pm2_env", {}).get("status") == "online")

    def daemon_pid(self, home):
        try:
            with open(os.path.join(home, "pm2.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def list_cmds(self, home):
        return {"list": [self.bin, "list"], "json": [self.bin, "jlist"]}

    def env_for_list(self, home):
        return self.env(home)

    def pid_of(self, home, name):
        out = self.cli(home, "pid", name, check=False).stdout.strip().splitlines()
        out = out[-1].strip() if out else ""
        return int(out) if out.isdigit() and int(out) > 0 else None

    def stop_argv(self, home):
        return [self.bin, "kill"]

    def stop_cmd(self):
        return "`pm2 kill`"

    def problems(self, home):
        return []


class Supervisord:
    key = "supervisord"

    def __init__(self):
        self.supervisord = real_exe("supervisord")
        self.ctl = real_exe("supervisorctl")

    def paths(self, home):
        return {
            "main": os.path.join(home, "supervisord.conf"),
            "ctl": os.path.join(home, "supervisorctl.conf"),
            "sock": os.path.join(home, "supervisor.sock"),
            "pid": os.path.join(home, "supervisord.pid"),
            "confd": os.path.join(home, "conf.d"),
        }

    def version(self):
        return "supervisord " + run([self.supervisord, "--version"], check=False).stdout.strip()

    def header(self, home, n, include):
        p = self.paths(home)
        os.makedirs(os.path.join(home, "logs"), exist_ok=True)
        with open(p["ctl"], "w") as f:
            f.write(f"[supervisorctl]\nserverurl=unix://{p['sock']}\n")
        text = (f"[unix_http_server]\nfile={p['sock']}\n\n"
                f"[supervisord]\nlogfile={home}/supervisord.log\npidfile={p['pid']}\n"
                f"childlogdir={home}/logs\nminfds={max(1024, 6 * n + 256)}\n\n"
                "[rpcinterface:supervisor]\n"
                "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
                f"[supervisorctl]\nserverurl=unix://{p['sock']}\n\n")
        if include:
            os.makedirs(p["confd"], exist_ok=True)
            text += f"[include]\nfiles = {p['confd']}/*.conf\n\n"
        return text

    @staticmethod
    def program(i):
        return f"[program:a{i}]\ncommand=/bin/sleep {' '.join(APP_ARGS)}\nstartsecs=0\n\n"

    def ctlcli(self, home, *args, **kw):
        return run([self.ctl, "-c", self.paths(home)["ctl"], *args], cwd=home, **kw)

    def launch(self, home):
        """`supervisord -c main.conf`, then wait for its socket (a user waits too)."""
        p = self.paths(home)
        run([self.supervisord, "-c", p["main"]], cwd=home)
        t0 = time.perf_counter()
        while not (os.path.exists(p["sock"]) and os.path.exists(p["pid"])):
            if time.perf_counter() - t0 > 60:
                raise PhaseError("supervisord: no socket 60 s after `supervisord -c`")
            time.sleep(0.005)

    def boot(self, home):
        with open(self.paths(home)["main"], "w") as f:
            f.write(self.header(home, self.n_hint, include=True))
        self.launch(home)

    def start_one(self, home, i):
        with open(os.path.join(self.paths(home)["confd"], f"a{i}.conf"), "w") as f:
            f.write(self.program(i))
        out = self.ctlcli(home, "update")
        if "ERROR" in out.stdout:
            raise PhaseError(f"supervisorctl update: {out.stdout.strip()[:300]}")

    def one_cmd(self):
        return ("`supervisord -c main.conf` ([include] conf.d/*.conf), then per app conf.d/aI.conf "
                "with one [program:aI] and `supervisorctl update`")

    def start_file(self, home, n):
        with open(self.paths(home)["main"], "w") as f:
            f.write(self.header(home, n, include=False))
            for i in range(n):
                f.write(self.program(i))
        return lambda: self.launch(home)

    def file_cmd(self):
        return "one supervisord.conf with N `[program:aI]` sections, `supervisord -c supervisord.conf`"

    def online(self, home):
        p = self.ctlcli(home, "status", check=False)
        return sum(1 for line in p.stdout.splitlines()
                   if len(line.split()) >= 2 and line.split()[1] == "RUNNING")

    def daemon_pid(self, home):
        try:
            with open(self.paths(home)["pid"]) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def list_cmds(self, home):
        return {"list": [self.ctl, "-c", self.paths(home)["ctl"], "status"]}

    def env_for_list(self, home):
        return None

    def pid_of(self, home, name):
        out = self.ctlcli(home, "pid", name, check=False).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def stop_argv(self, home):
        return [self.ctl, "-c", self.paths(home)["ctl"], "shutdown"]

    def stop_cmd(self):
        return "`supervisorctl shutdown`"

    def problems(self, home):
        return []


# ------------------------------------------------------------------ phases


class Homes:
    """Every home handed out, so that `finally` can stop its daemon and remove it."""

    def __init__(self, root):
        self.root = root
        self.live = []  # (supervisor, home)
        self.count = 0

    def new(self, sv):
        self.count += 1
        home = os.path.join(self.root, f"{sv.key}-{self.count}")
        os.makedirs(home)
        self.live.append((sv, home))
        return home

    def release(self, sv, home):
        cleanup_home(sv, home)
        if (sv, home) in self.live:
            self.live.remove((sv, home))

    def release_all(self):
        for sv, home in list(self.live):
            try:
                self.release(sv, home)
            except BaseException as e:  # keep going: every home must go
                log(f"cleanup of {home}: {e!r}")
        shutil.rmtree(self.root, ignore_errors=True)


def cleanup_home(sv, home):
    """Stop the home's daemon with its own command (run even when its pid is not
    known yet: an interrupted first call may have booted it), then SIGKILL
    whatever of it is left, and remove the home."""
    pid = sv.daemon_pid(home)
    up = bool(pid and alive(pid))
    kids = {k: start_time(k) for k in descendants(pid)} if up else {}
    if up or (pid is None and home not in STOPPED):
        env = sv.env(home) if hasattr(sv, "env") else None
        try:
            run_blocking(sv.stop_argv(home), 120, capture=False, env=env, cwd=home)
        except (subprocess.TimeoutExpired, OSError):
            pass
    pid = pid or sv.daemon_pid(home)
    if pid and not wait_gone([pid], 30):
        log(f"{sv.key}: daemon {pid} still up after its stop command; SIGKILL")
        force_kill(pid)
    for k, t in kids.items():
        if alive(k) and start_time(k) == t:  # the same process, not a reused pid
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(home, ignore_errors=True)


def wait_online(sv, home, n, t0, deadline):
    """Polls the list until n apps are online; gives up at the deadline, or once
    the count has not grown for STALL_S."""
    polls, best, best_t = 0, -1, time.perf_counter()
    while True:
        got = sv.online(home)
        polls += 1
        now = time.perf_counter()
        if got >= n:
            return now - t0, polls, got
        if got > best:
            best, best_t = got, now
        if now - t0 > deadline:
            raise PhaseError(f"only {got}/{n} online after {deadline:.0f} s", online=got)
        if now - best_t > STALL_S:
            raise PhaseError(f"stuck at {best}/{n} online for {STALL_S:.0f} s "
                             f"({now - t0:.0f} s after the first call)", online=got)
        time.sleep(0.05)


def settle_memory(sv, home):
    time.sleep(SETTLE_S)
    pid = sv.daemon_pid(home)
    return {
        "daemon_pid": pid,
        "rss_kib": status_kib(pid, "VmRSS"),
        "hwm_kib": status_kib(pid, "VmHWM"),
        "fds": count_dir(f"/proc/{pid}/fd"),
        "fd_limit": fd_limit(pid),
        "threads": count_dir(f"/proc/{pid}/task"),
        "children": len(children(pid)),
    }


def one_by_one_in_sh(sv, home, n, deadline):
    """The N calls from one `sh` script, as a user's loop makes them: what
    each call costs is the shell's fork and exec, not Python's (about
    0.4 ms more a call, measured)."""
    script = os.path.join(home, "start-each.sh")
    with open(script, "w") as f:
        f.write("set -e\nexec >/dev/null\n")
        for i in range(n):
            f.write(shlex.join(sv.one_argv(i)) + "\n")
    t0 = time.perf_counter()
    try:
        p = run_blocking(["/bin/sh", script], deadline, env=sv.env(home), cwd=home)
    except subprocess.TimeoutExpired:
        raise PhaseError(f"the start calls were not done after {deadline:.0f} s")
    if p.returncode != 0:
        raise PhaseError(f"a start call failed ({p.returncode}): {p.stderr.strip()[-300:]}")
    return t0


def phase_one_by_one(sv, home, n, deadline):
    sv.n_hint = n
    time.sleep(PHASE_GAP_S)
    if hasattr(sv, "one_argv"):
        t0 = one_by_one_in_sh(sv, home, n, deadline)
        calls = time.perf_counter() - t0
        total, polls, got = wait_online(sv, home, n, t0, deadline)
        return {"start_s": total, "calls_s": calls, "polls": polls, "online": got}
    t0 = time.perf_counter()
    sv.boot(home)
    for i in range(n):
        sv.start_one(home, i)
        if time.perf_counter() - t0 > deadline:
            raise PhaseError(f"only {i + 1}/{n} start calls done after {deadline:.0f} s")
        if (i + 1) % 200 == 0:
            log(f"  {sv.key}: {i + 1}/{n} start calls, {time.perf_counter() - t0:.1f} s")
    calls = time.perf_counter() - t0
    total, polls, got = wait_online(sv, home, n, t0, deadline)
    return {"start_s": total, "calls_s": calls, "polls": polls, "online": got}


def phase_file(sv, home, n, deadline):
    go = sv.start_file(home, n)
    time.sleep(PHASE_GAP_S)
    t0 = time.perf_counter()
    p = go()
    calls = time.perf_counter() - t0
    out = {"calls_s": calls}
    if p is not None and getattr(p, "returncode", 0) != 0:
        out["cli_error"] = f"rc {p.returncode}: {(p.stderr or p.stdout).strip()[:300]}"
        log(f"  {sv.key}: the start call failed ({out['cli_error']}); polling anyway")
    total, polls, got = wait_online(sv, home, n, t0, deadline)
    out.update(start_s=total, polls=polls, online=got)
    return out


def idle_cpu(sv, home):
    pid = sv.daemon_pid(home)
    a = cpu_sample(pid)
    time.sleep(IDLE_S)
    return cpu_delta(a, cpu_sample(pid))


def list_latency(sv, home):
    env = sv.env_for_list(home)
    res = {}
    for k, argv in sv.list_cmds(home).items():
        samples = []
        for r in range(LIST_RUNS + 1):
            t = time.perf_counter()
            p = run_blocking(argv, 300, capture=False, env=env, cwd=home)
            ms = (time.perf_counter() - t) * 1000
            if p.returncode not in (0, 3):  # supervisorctl status exits 3 when a program is not RUNNING
                raise PhaseError(f"{' '.join(argv)} exited {p.returncode}")
            if r:  # the first run is a warm-up
                samples.append(ms)
        res[k] = summary(samples)
        res[k]["samples"] = samples
        res[k]["argv"] = " ".join(os.path.basename(a) if a.startswith("/") else a for a in argv)
    return res


def restart_latency(sv, home, n):
    daemon = sv.daemon_pid(home)
    samples, failures, notes = [], 0, []
    up_since = {}
    for k in range(KILLS):
        name = f"a{k % n}"
        if name in up_since:
            time.sleep(max(0.0, up_since[name] + REKILL_GAP_S - time.perf_counter()))
        pid = sv.pid_of(home, name)
        if pid is None:
            raise PhaseError(f"restart: no pid for {name}")
        before = children(daemon)
        if pid not in before:
            notes.append(f"{name} pid {pid} is not a child of the daemon {daemon}")
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            if children(daemon) - before - {pid}:
                samples.append((time.perf_counter() - t) * 1000)
                break
            if time.perf_counter() - t > RESTART_TIMEOUT_S:
                failures += 1
                break
        # The new instance is online (the daemon says so) before the next kill.
        t1 = time.perf_counter()
        while True:
            new = sv.pid_of(home, name)
            if new and new != pid:
                break
            if time.perf_counter() - t1 > RESTART_TIMEOUT_S:
                raise PhaseError(f"restart: {name} has no new pid {RESTART_TIMEOUT_S:.0f} s after kill -9")
            time.sleep(0.01)
        up_since[name] = time.perf_counter()
    out = summary(samples) or {}
    out.update(samples=samples, failures=failures, notes=notes[:3])
    return out


def timed_stop(sv, home):
    pid = sv.daemon_pid(home)
    apps = children(pid) if pid else set()
    env = sv.env(home) if hasattr(sv, "env") else None
    t0 = time.perf_counter()
    p = run(sv.stop_argv(home), env=env, timeout=STOP_TIMEOUT_S, check=False)
    cli = time.perf_counter() - t0
    gone = wait_gone({pid, *apps} - {None}, STOP_TIMEOUT_S)
    total = time.perf_counter() - t0
    out = {"cli_s": cli, "gone_s": total if gone else None, "rc": p.returncode, "apps": len(apps)}
    if gone:
        STOPPED.add(home)
    else:
        out["error"] = f"daemon or apps still alive {STOP_TIMEOUT_S:.0f} s after the stop command"
    return out


def measure(sv, n, homes, args, deadline):
    r = {"errors": []}
    t_all = time.perf_counter()
    # 1. one by one
    if n > args.one_by_one_max:
        r["one"] = {"skipped": f"N > --one-by-one-max {args.one_by_one_max}"}
    else:
        home = homes.new(sv)
        try:
            log(f"{sv.key} N={n}: start one by one")
            r["one"] = phase_one_by_one(sv, home, n, deadline)
            r["one"].update(settle_memory(sv, home))
            log(f"{sv.key} N={n}: one by one {r['one']['start_s']:.2f} s "
                f"(calls {r['one']['calls_s']:.2f} s), RSS {r['one']['rss_kib']} KiB")
        except PhaseError as e:
            r["one"] = {"error": str(e), "online": e.online, "fds": daemon_fds(sv, home)}
            r["errors"].append(f"one by one: {e}")
            log(f"{sv.key} N={n}: one by one FAILED: {e}")
        finally:
            homes.release(sv, home)
    # 2..7 from one config file
    home = homes.new(sv)
    try:
        log(f"{sv.key} N={n}: start from one file")
        r["file"] = phase_file(sv, home, n, deadline)
        log(f"{sv.key} N={n}: file {r['file']['start_s']:.2f} s")
        r.update(settle_memory(sv, home))
        log(f"{sv.key} N={n}: RSS {r['rss_kib']} KiB, {r['fds']} fds, {r['threads']} threads; idle CPU {IDLE_S:.0f} s")
        r["cpu"] = idle_cpu(sv, home)
        log(f"{sv.key} N={n}: idle CPU {r['cpu']['pct']:.3f} %; list x{LIST_RUNS}")
        r["list"] = list_latency(sv, home)
        log(f"{sv.key} N={n}: list " + ", ".join(f"{v['argv']} {v['median']:.1f} ms" for v in r["list"].values()))
        r["restart"] = restart_latency(sv, home, n)
        if r["restart"].get("median") is not None:
            log(f"{sv.key} N={n}: restart p50 {r['restart']['median']:.2f} ms ({r['restart']['failures']} failures)")
        r["online_after"] = sv.online(home)
        r["stop"] = timed_stop(sv, home)
        if "error" in r["stop"]:
            r["errors"].append(f"stop: {r['stop']['error']}")
        log(f"{sv.key} N={n}: stop: CLI {r['stop']['cli_s']:.2f} s, all gone {r['stop']['gone_s']}")
    except PhaseError as e:
        r.setdefault("file", {})
        if "start_s" not in r["file"]:
            r["file"].update(error=str(e), online=e.online)
            r.setdefault("fds", daemon_fds(sv, home))
        r["errors"].append(str(e))
        log(f"{sv.key} N={n}: FAILED: {e}")
    finally:
        r["problems"] = sv.problems(home)[:5]
        r["problem_count"] = len(sv.problems(home))
        if sv.key == "sup" and (r["errors"] or r["problem_count"]):
            keep_log(home, n, args.out)
        homes.release(sv, home)
    r["wall_s"] = time.perf_counter() - t_all
    return r


def daemon_fds(sv, home):
    pid = sv.daemon_pid(home)
    return count_dir(f"/proc/{pid}/fd") if pid and alive(pid) else None


KEPT_LOG_LINES = 500


def keep_log(home, n, out_dir):
    """The tail of sup's daemon.log (at 10,000 apps the whole is megabytes
    of the same warning), beside the results but not in git."""
    src = os.path.join(home, "daemon.log")
    if os.path.exists(src):
        dst = os.path.join(out_dir, f"scale-last-sup-{n}-daemon.log")
        os.makedirs(out_dir, exist_ok=True)
        with open(src, errors="replace") as f:
            tail = collections.deque(f, maxlen=KEPT_LOG_LINES)
        with open(dst, "w") as f:
            f.writelines(tail)
        log(f"the last {KEPT_LOG_LINES} lines of sup's daemon.log kept as {dst}")


# ------------------------------------------------------------------ system limits


def limits(sizes, nofile=None):
    info = {}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    info["nofile_before"] = [soft, hard]
    if nofile:  # above the hard limit this needs root (CAP_SYS_RESOURCE), up to fs.nr_open
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, max(nofile, hard)))
    elif soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    info["nofile"] = list(resource.getrlimit(resource.RLIMIT_NOFILE))
    info["nproc"] = list(resource.getrlimit(resource.RLIMIT_NPROC))
    for k in ("pid_max", "threads-max"):
        try:
            with open(f"/proc/sys/kernel/{k}") as f:
                info[k] = int(f.read())
        except (OSError, ValueError):
            info[k] = None
    tasks = 0
    for p in os.listdir("/proc"):
        if p.isdigit():
            tasks += count_dir(f"/proc/{p}/task") or 0
    info["tasks_in_use"] = tasks
    need = max(sizes) + 200  # the apps, their daemon's threads, the CLI calls
    warn = []
    for k in ("pid_max", "threads-max"):
        if info[k] is not None and info[k] < tasks + need:
            warn.append(f"{k} {info[k]} < {tasks} tasks in use + {need} needed")
    info["warnings"] = warn
    return info


# ------------------------------------------------------------------ report


def fmt_num(v, unit=""):
    if v is None:
        return "—"
    if v >= 100:
        s = f"{v:,.0f}"
    elif v >= 10:
        s = f"{v:.1f}"
    elif v >= 0.1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3f}"
    return s + unit


def ratio(a, b):
    if a is None or b in (None, 0):
        return "—"
    r = a / b
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


def cell_value(r, fig):
    """(value, text) of one figure of one result dict, or (None, why not)."""
    if r is None:
        return None, "—"
    if fig == "fds":  # also when the start failed: the fds at that moment
        return r.get("fds"), None
    one, f = r.get("one", {}), r.get("file", {})
    if fig == "start_one":
        if "skipped" in one:
            return None, "skipped"
        if "error" in one:
            return None, "**failed**"
        return one.get("start_s"), None
    if fig == "start_file":
        if "error" in f:
            return None, "**failed**"
        return f.get("start_s"), None
    if "error" in f:
        return None, "**failed**"
    if fig == "list":
        return r.get("list", {}).get("list", {}).get("median"), None
    if fig == "list_json":
        j = r.get("list", {}).get("json")
        return (j["median"], None) if j else (None, "n/a")
    if fig == "rss":
        v = r.get("rss_kib")
        return (v / 1024 if v is not None else None), None
    if fig == "rss_one":
        v = one.get("rss_kib")
        return (v / 1024 if v is not None else None), ("skipped" if "skipped" in one else None)
    if fig == "cpu":
        c = r.get("cpu")
        return (c["pct"] if c else None), None
    if fig == "restart":
        return r.get("restart", {}).get("median"), None
    if fig == "stop":
        return r.get("stop", {}).get("gone_s"), None
    raise KeyError(fig)


FIGURES = [
    ("start_one", "Start N apps, one CLI call each, cold daemon, until all online (s)", " s"),
    ("start_file", "Start N apps from one config file, cold daemon, until all online (s)", " s"),
    ("list", "`list` wall time, whole CLI process, median of 20 (ms): `sup list`, `pm2 list`, "
             "`supervisorctl status`", " ms"),
    ("list_json", "Machine-readable list, median of 20 (ms): `sup list --json`, `pm2 jlist` "
                  "(supervisorctl has none)", " ms"),
    ("rss", "Daemon RSS (VmRSS) with N apps started from the file, after a 2 s settle (MiB)", " MiB"),
    ("rss_one", "Daemon RSS (VmRSS) after the one-by-one start, 2 s settle (MiB)", " MiB"),
    ("cpu", "Daemon CPU over a 10 s idle window with N apps (% of one core, schedstat)", " %"),
    ("restart", "Restart after `kill -9` of one app with N running, p50 of 15 (ms): kill to new child "
                "of the daemon", " ms"),
    ("stop", "Stop everything (`sup kill`, `pm2 kill`, `supervisorctl shutdown`) until the daemon and "
             "every app are gone (s)", " s"),
    ("fds", "Daemon's open fds with N apps (`ls /proc/PID/fd | wc -l`)", ""),
]


def table(data, sizes, peers, fig, unit):
    cols = ["sup"] + peers
    head = ["N"] + [LABELS[c] for c in cols] + [f"sup ÷ {LABELS[p]}" for p in peers]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for n in sizes:
        vals, cells = {}, []
        for c in cols:
            r = data.get(c, {}).get(str(n))
            v, why = cell_value(r, fig)
            vals[c] = v
            if v is None:
                cells.append(why or "—")
            elif fig == "fds":
                cells.append(f"{v:,}")
            elif fig == "cpu":
                cells.append(f"{v:.3f}{unit}")
            else:
                cells.append(fmt_num(v, unit))
        for p in peers:
            cells.append(ratio(vals["sup"], vals[p]) if fig != "fds" else ratio(vals["sup"], vals[p]))
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return lines


def report(meta, data):
    sizes, peers = meta["sizes"], meta["peers"]
    who = " vs ".join(LABELS[k] for k in ["sup"] + peers)
    out = [f"# Scale: {who} at {', '.join(f'{n:,}' for n in sizes)} idle apps — {meta['started']}", ""]
    out.append(f"- machine: {meta['machine']}")
    out.append(f"- sup: `{meta['versions'].get('sup', '?')}` ({meta['sup']}, {meta['build']})")
    for p in peers:
        out.append(f"- {LABELS[p]}: {meta['versions'].get(p, '?')}")
    lim = meta["limits"]
    out.append(f"- limits: `ulimit -n` {lim['nofile'][0]} (hard {lim['nofile'][1]}; was {lim['nofile_before'][0]}), "
               f"pid_max {lim['pid_max']}, threads-max {lim['threads-max']}, {lim['tasks_in_use']} tasks in use "
               f"at the start" + ("; **" + "; ".join(lim["warnings"]) + "**" if lim["warnings"] else ""))
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- homes (every supervisor's, one fresh directory per phase): {meta.get('home_root', '?')}")
    if meta.get("null_logs_at"):
        out.append(f"- from {meta['null_logs_at']:,} apps on, sup's apps send their output to /dev/null "
                   "(`logs.out_file`/`logs.err_file`), which sup hands to them without a pipe")
    out.append("")
    for fig, title, unit in FIGURES:
        out.append(f"### {title}")
        out.append("")
        out.extend(table(data, sizes, peers, fig, unit))
        out.append("")
    # sup specifics: every app up, kill time, fds per app
    out.append("### sup at each N")
    out.append("")
    out.append("| N | online after the file start | online after the kills | `sup kill` CLI | until all gone "
               "| daemon fds | fds per extra app | daemon's fd limit | threads | daemon.log WARN/ERROR |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    prev = None
    for n in sizes:
        r = data.get("sup", {}).get(str(n))
        if not r:
            continue
        f = r.get("file", {})
        st = r.get("stop", {})
        fds = r.get("fds")
        per = f"{(fds - prev[1]) / (n - prev[0]):.2f}" if fds is not None and prev else "—"
        if fds is not None:
            prev = (n, fds)
        on = f.get("online")
        out.append(f"| {n:,} | {on if on is not None else '—'}/{n} | {r.get('online_after', '—')}/{n} | "
                   f"{fmt_num(st.get('cli_s'), ' s')} | {fmt_num(st.get('gone_s'), ' s')} | "
                   f"{fds if fds is not None else '—'} | {per} | {r.get('fd_limit') or '—'} | "
                   f"{r.get('threads', '—')} | "
                   f"{r.get('problem_count', len(r.get('problems', [])))} |")
    out.append("")
    out.append("Notes:")
    out.append("- Lower is better everywhere; a ratio below 1 means sup is smaller/faster. Each supervisor "
               "ran alone, one after the other, in the same run (sup first at each N), each phase with a "
               "fresh home and a cold daemon. Apps: `sleep 100000`.")
    out.append(f"- One by one: sup {meta['one_cmd']['sup']}" +
               "".join(f"; {LABELS[p]} {meta['one_cmd'][p]}" for p in peers) +
               ". Timed from the first call (which boots the daemon) until the list shows all N online "
               "(polled after the last call); sup's and PM2's calls run from one `sh` script. Each start "
               "phase begins 3 s after the last phase's cleanup. Skipped above --one-by-one-max "
               f"{meta['one_by_one_max']}.")
    out.append(f"- From one file: sup {meta['file_cmd']['sup']}" +
               "".join(f"; {LABELS[p]} {meta['file_cmd'][p]}" for p in peers) + ".")
    if "supervisord" in peers:
        out.append("- supervisord programs: `command=/bin/sleep 100000`, `startsecs=0` (RUNNING once spawned, "
                   "like \"online\"; the default 1 s would add a constant second), other settings default "
                   "(logs to childlogdir); `minfds` = 6N+256. supervisorctl uses a conf of its own with just "
                   "[supervisorctl], so `status` does not parse the N-program file.")
    out.append(f"- The RSS, fds, CPU, list, restart and stop figures are taken with the N apps started from "
               f"the file. `list`: {LIST_RUNS} runs after one warm-up, stdout to /dev/null. Restart: "
               f"{KILLS} kill -9 of a0, a1, … (an app is killed again only after {REKILL_GAP_S} s up); the "
               f"next kill waits until the CLI shows the new pid; /proc/<daemon>/task/*/children read in a "
               f"tight loop.")
    out.append(f"- Peers ran at N ≤ --max-peer {meta['max_peer']}; \"—\" = not run.")
    errs = []
    for c in ["sup"] + peers:
        for n in sizes:
            r = data.get(c, {}).get(str(n))
            if not r:
                continue
            for e in r.get("errors", []):
                errs.append(f"{LABELS[c]} at {n:,}: {e}")
            for e in r.get("restart", {}).get("notes", []):
                errs.append(f"{LABELS[c]} at {n:,}: {e}")
            if r.get("restart", {}).get("failures"):
                errs.append(f"{LABELS[c]} at {n:,}: {r['restart']['failures']} kills without a new child in "
                            f"{RESTART_TIMEOUT_S:.0f} s")
            if r.get("file", {}).get("cli_error"):
                errs.append(f"{LABELS[c]} at {n:,}: the file start CLI failed ({r['file']['cli_error']}), "
                            f"the apps came up anyway")
            for p in r.get("problems", [])[:2]:
                errs.append(f"{LABELS[c]} at {n:,}: daemon.log: `{p[:200]}`")
    slow = [n for n in sizes if (data.get("supervisord", {}).get(str(n), {}).get("restart", {}).get("median")
                                 or 0) > 500]
    if slow:
        out.append("- supervisord's restart is about 1 s: its main loop reaps an exited child after that pass's "
                   "transitions, so the respawn waits for the next pass, i.e. its 1 s poll timeout "
                   "(supervisord.py runforever: transition(), then reap()).")
    for e in errs:
        out.append(f"- {e}")
    if not errs:
        out.append("- No failures.")
    times = ", ".join(f"{int(n):,}: {s:.0f} s" for n, s in meta["size_wall_s"].items())
    out.append(f"- Wall time per N (all supervisors): {times}; total {meta['total_s']:.0f} s.")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ SVG


COLORS = {"sup": "#e8590c", "pm2": "#1c7ed6", "supervisord": "#2f9e44"}
MARKERS = {"sup": "circle", "pm2": "square", "supervisord": "diamond"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_tick(v):
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 1:
        return f"{v:g}"
    return f"{v:g}"


def marker(kind, x, y, color):
    if kind == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{color}"/>'
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 4.5:.1f} {x + 4.5:.1f},{y:.1f} {x:.1f},{y + 4.5:.1f} '
                f'{x - 4.5:.1f},{y:.1f}" fill="{color}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.8" fill="{color}"/>'


def log_range(vals):
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))
    if hi <= lo:
        hi = lo * 10
    return lo, hi


def lin_ticks(vmax):
    if vmax <= 0:
        vmax = 1
    raw = vmax / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    top = step * math.ceil(vmax / step)
    n = int(round(top / step))
    return [i * step for i in range(n + 1)], top


def panel(ox, oy, w, h, title, ylabel, series, sizes, ylog):
    """One chart: series = {key: [(n, value or None), ...]}."""
    ml, mr, mt, mb = 58, 26, 30, 40
    pw, ph = w - ml - mr, h - mt - mb
    x0, y0 = ox + ml, oy + mt
    svg = [f'<text x="{ox + w / 2:.1f}" y="{oy + 16}" text-anchor="middle" font-size="13" '
           f'font-weight="bold">{esc(title)}</text>']
    xlo, xhi = log_range(sizes)

    def X(n):
        return x0 + pw * (math.log10(n) - math.log10(xlo)) / (math.log10(xhi) - math.log10(xlo))

    vals = [v for pts in series.values() for _, v in pts if v is not None and v > 0]
    if not vals:
        vals = [1.0]
    if ylog:
        ylo, yhi = log_range(vals)

        def Y(v):
            return y0 + ph - ph * (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))

        decades = int(round(math.log10(yhi / ylo)))
        major = [ylo * 10 ** i for i in range(decades + 1)]
        minor = [d * m for d in major[:-1] for m in range(2, 10)]
        labelled = list(major)
        if decades <= 2:
            labelled += [d * m for d in major[:-1] for m in (2, 5)]
    else:
        major, top = lin_ticks(max(vals))
        ylo, yhi = 0, top

        def Y(v):
            return y0 + ph - ph * v / yhi

        minor, labelled = [], major
    # grid
    for v in minor:
        svg.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#f1f3f5"/>')
    for v in major:
        svg.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#dee2e6"/>')
    for v in sorted(set(labelled)):
        svg.append(f'<text x="{x0 - 6}" y="{Y(v) + 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="#495057">{esc(fmt_tick(v))}</text>')
    xt = [10 ** i for i in range(int(round(math.log10(xlo))), int(round(math.log10(xhi))) + 1)]
    for n in xt:
        svg.append(f'<line x1="{X(n):.1f}" x2="{X(n):.1f}" y1="{y0}" y2="{y0 + ph}" stroke="#dee2e6"/>')
        svg.append(f'<text x="{X(n):.1f}" y="{y0 + ph + 16}" text-anchor="middle" font-size="11" '
                   f'fill="#495057">{n:,}</text>')
    svg.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#868e96"/>')
    svg.append(f'<text x="{x0 + pw / 2:.1f}" y="{y0 + ph + 33}" text-anchor="middle" font-size="11" '
               f'fill="#495057">apps (log)</text>')
    svg.append(f'<text transform="translate({ox + 14},{y0 + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
               f'font-size="11" fill="#495057">{esc(ylabel)}</text>')
    # lines
    for key, pts in series.items():
        color = COLORS[key]
        run_pts = []
        segments = []
        for n, v in pts:
            if v is None or (ylog and v <= 0):
                if run_pts:
                    segments.append(run_pts)
                run_pts = []
            else:
                run_pts.append((X(n), Y(v)))
        if run_pts:
            segments.append(run_pts)
        for seg in segments:
            if len(seg) > 1:
                pts_s = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
                svg.append(f'<polyline points="{pts_s}" fill="none" stroke="{color}" stroke-width="2.2" '
                           f'stroke-linejoin="round"/>')
            for x, y in seg:
                svg.append(marker(MARKERS[key], x, y, color))
    return svg


def draw_svg(saved, path):
    meta, data = saved["meta"], saved["results"]
    sizes = meta["sizes"]
    keys = [k for k in ORDER if k in data]
    charts = [
        ("Start N apps, one call each", "seconds (log)", "start_one", True),
        ("One list command, wall time", "milliseconds (log)", "list", True),
        ("Daemon memory (RSS)", "MiB", "rss", False),
    ]
    w, h, top = 340, 270, 44
    W, H = w * len(charts), h + top + 36
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           f'font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif">',
           f'<rect width="{W}" height="{H}" fill="#ffffff"/>']
    # legend
    lx = 16
    svg.append(f'<text x="{lx}" y="24" font-size="13" fill="#212529">Idle sleep apps, lower is better:</text>')
    lx += 230
    for k in keys:
        c = COLORS[k]
        svg.append(f'<line x1="{lx}" x2="{lx + 26}" y1="20" y2="20" stroke="{c}" stroke-width="2.2"/>')
        svg.append(marker(MARKERS[k], lx + 13, 20, c))
        svg.append(f'<text x="{lx + 32}" y="24" font-size="13" fill="#212529">{esc(LABELS[k])}</text>')
        lx += 40 + 8 * len(LABELS[k]) + 18
    for i, (title, ylabel, fig, ylog) in enumerate(charts):
        series = {}
        for k in keys:
            pts = []
            for n in sizes:
                r = data[k].get(str(n))
                v = cell_value(r, fig)[0] if r else None
                pts.append((n, v))
            if any(v is not None for _, v in pts):
                series[k] = pts
        svg += panel(i * w, top, w, h, title, ylabel, series, sizes, ylog)
    foot = (f"bench/scale.py, {meta['started']}, {meta.get('cpus', '?')} CPUs. List: sup list, pm2 list, "
            f"supervisorctl status (median of {LIST_RUNS}). RSS: the daemon's, apps started from one file.")
    skipped = [n for n in sizes if "skipped" in (data.get("sup", {}).get(str(n), {}).get("one") or {})]
    if skipped:
        foot += f" sup one-by-one not run at {', '.join(f'{n:,}' for n in skipped)}."
    svg.append(f'<text x="16" y="{H - 14}" font-size="11" fill="#868e96">{esc(foot)}</text>')
    svg.append("</svg>")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(svg) + "\n")


# ------------------------------------------------------------------ main


def predict_fds(sup_data, n):
    """The sup daemon's fds at n apps, extrapolated from the sizes measured so far."""
    pts = sorted((int(k), r["fds"]) for k, r in sup_data.items() if r.get("fds"))
    if not pts:
        return None
    if len(pts) == 1:
        return int(pts[0][1] * n / pts[0][0])
    (n1, f1), (n2, f2) = pts[-2], pts[-1]
    return int(f2 + (f2 - f1) / (n2 - n1) * (n - n2))


def on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sup", nargs="?", help="the sup binary to measure")
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--peers", default="pm2,supervisord", help="comma-separated: pm2, supervisord (or empty)")
    ap.add_argument("--max-peer", type=int, default=1000, help="largest N the peers run at")
    ap.add_argument("--one-by-one-max", type=int, default=1000, help="largest N started one call at a time")
    ap.add_argument("--deadline-per-app", type=float, default=2.0,
                    help="each start phase may take 120 s + this many seconds per app")
    ap.add_argument("--nofile", type=int, help="set `ulimit -n` (soft and hard) to this first; above the "
                    "hard limit it needs root (default: raise the soft limit to the hard one)")
    ap.add_argument("--home-root", default=tempfile.gettempdir(),
                    help="where the homes go (default: the temp dir); every supervisor's are there")
    ap.add_argument("--null-logs-at", type=int, default=None,
                    help="from this N on, sup's apps (from the file) send their output to /dev/null")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--svg", default=os.path.join(ROOT, "docs", "scale.svg"))
    ap.add_argument("--svg-from", metavar="RESULTS_JSON", help="only redraw the SVG from a saved JSON")
    args = ap.parse_args()

    if args.svg_from:
        with open(args.svg_from) as f:
            draw_svg(json.load(f), args.svg)
        print(f"written {args.svg}")
        return
    if not args.sup:
        ap.error("the sup binary is required (or --svg-from)")
    sup_bin = os.path.abspath(args.sup)
    if not os.access(sup_bin, os.X_OK):
        ap.error(f"{sup_bin} is not an executable")
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in ("pm2", "supervisord"):
            ap.error(f"unknown peer {p!r}")
    args.out = os.path.abspath(args.out)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    started = datetime.datetime.now()
    t_start = time.perf_counter()
    try:
        lim = limits(sizes, args.nofile)
    except (ValueError, OSError) as e:
        sys.exit(f"--nofile {args.nofile}: {e} (the hard limit is "
                 f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]}; raising it needs CAP_SYS_RESOURCE)")
    log(f"ulimit -n {lim['nofile'][0]}/{lim['nofile'][1]} (was {lim['nofile_before'][0]}), "
        f"pid_max {lim['pid_max']}, threads-max {lim['threads-max']}, {lim['tasks_in_use']} tasks in use")
    for wmsg in lim["warnings"]:
        log(f"WARNING: {wmsg}")

    root = tempfile.mkdtemp(prefix="sup-scale-", dir=args.home_root)
    homes = Homes(root)
    svs = {"sup": Sup(sup_bin, args.null_logs_at or math.inf)}
    if "pm2" in peers:
        svs["pm2"] = Pm2()
    if "supervisord" in peers:
        s = Supervisord()
        if not s.supervisord or not s.ctl:
            sys.exit("supervisord not found: pip install supervisor (--break-system-packages if pip refuses)")
        svs["supervisord"] = s
    if "pm2" in peers and not shutil.which("pm2"):
        sys.exit("pm2 not found: npm install -g pm2")

    meta = {
        "started": f"{started:%Y-%m-%d %H:%M}",
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, load average at "
                   "start " + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "cpus": os.cpu_count(),
        "sup": sup_bin,
        "build": build_info(sup_bin),
        "sizes": sizes,
        "peers": peers,
        "max_peer": args.max_peer,
        "one_by_one_max": args.one_by_one_max,
        "limits": lim,
        "command": " ".join(["bench/scale.py", *sys.argv[1:]]),
        "home_root": f"{os.path.abspath(args.home_root)} ({fs_type(args.home_root)})",
        "null_logs_at": args.null_logs_at,
        "one_cmd": {k: sv.one_cmd() for k, sv in svs.items()},
        "file_cmd": {k: sv.file_cmd() for k, sv in svs.items()},
        "versions": {},
        "size_wall_s": {},
    }
    data = {k: {} for k in svs}
    interrupted = None
    try:
        for k, sv in svs.items():
            meta["versions"][k] = sv.version()
        for n in sizes:
            t_n = time.perf_counter()
            deadline = 120 + args.deadline_per_app * n
            log(f"=== N = {n:,} (load {os.getloadavg()[0]:.2f}; each start phase may take {deadline:.0f} s)")
            need = predict_fds(data["sup"], n)
            # The daemon's own limit as seen at the last size (it may raise its own), else ours.
            dlim = next((r.get("fd_limit") for _, r in sorted(data["sup"].items(), key=lambda kv: -int(kv[0]))
                         if r.get("fd_limit")), None) or lim["nofile"][0]
            if need and need > dlim:
                wmsg = (f"sup's daemon will need about {need:,} fds at {n:,} apps (from its fds at the smaller "
                        f"sizes), above its limit of {dlim:,} open files: expect failures (rerun with "
                        f"--nofile {1 << (need + 1024).bit_length()}; above the hard limit "
                        f"{lim['nofile'][1]:,} that needs CAP_SYS_RESOURCE)")
                log(f"WARNING: {wmsg}")
                lim["warnings"].append(wmsg)
            for k, sv in svs.items():
                if k != "sup" and n > args.max_peer:
                    continue
                data[k][str(n)] = measure(sv, n, homes, args, deadline)
            meta["size_wall_s"][str(n)] = time.perf_counter() - t_n
            log(f"=== N = {n:,} took {meta['size_wall_s'][str(n)]:.0f} s")
    except KeyboardInterrupt as e:
        interrupted = str(e) or "Ctrl-C"
        log(f"interrupted ({interrupted}); cleaning up")
    finally:
        homes.release_all()
    meta["total_s"] = time.perf_counter() - t_start
    if interrupted:
        meta["interrupted"] = interrupted
    if not any(data[k] for k in data):
        sys.exit(1)

    text = report(meta, data)
    if interrupted:
        text += f"- **Interrupted ({interrupted}); the figures are partial.**\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    # A partial run does not replace a whole one, nor the chart.
    stem = os.path.join(args.out, f"scale-{started:%Y-%m-%d}" + ("-partial" if interrupted else ""))
    with open(stem + ".md", "w") as f:
        f.write(text)
    saved = {"meta": meta, "results": data}
    with open(stem + ".json", "w") as f:
        json.dump(saved, f, indent=1)
    if interrupted:
        log(f"written {stem}.md and {stem}.json (not the SVG)")
        sys.exit(130)
    draw_svg(saved, args.svg)
    log(f"written {stem}.md, {stem}.json and {args.svg}")


if __name__ == "__main__":
    main()
