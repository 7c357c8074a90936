#!/usr/bin/env python3
"""Measurements of bench/nginx.sh (run it through that script: it installs nginx
and PM2 when missing, makes the temporary homes and cleans up).

Nginx (bench/nginx.conf: one upstream, no upstream keepalive, no retries) in front
of examples/app.js, four clients, side by side for
  - sup:          `sup start examples/app.js --name api --listen 127.0.0.1:P --min-uptime 300ms`
                  (the daemon holds the port and hands it over as fd 3),
  - PM2 fork:     `PORT=P pm2 start examples/app.js --name api` (daemon booted with
                  PM2_KILL_SIGNAL=SIGTERM, as examples/app.js drains on SIGTERM),
  - PM2 cluster:  the same with `-i 2` (PM2's master holds the port, round robin),
  - the bare app: `PORT=P node examples/app.js`, no supervisor (throughput reference only).
Every supervisor has its own nginx, its own port and its own home, all up at once.

1. Throughput without faults: after 3 s of unmeasured load on each target (JIT
   and caches warm), 4 s of load per target (after 0.5 s more), round robin over
   the four targets, six rounds, the order reversed every other round.
2. Per supervisor, three phases of 20 s, each under the same load:
     a) `kill -9` of the app's main pid once a second (PM2 cluster: one worker,
        alternating); a pid is killed only once it is 1.05 s old (see KILL_MIN_AGE_S);
     b) `sup restart api` / `pm2 restart api` once a second;
     c) `sup reload api` / `pm2 reload api` once a second.
   An operation starts a second after the previous one started, or at once if
   that one took longer. The load runs from 0.5 s before the first operation
   until 1.5 s after the last one ended.
3. sup daemon CPU with 100 apps (`exec sleep 100000`), probed every second over
   HTTP (`--health http://127.0.0.1:P/ --health-interval 1s`, all pointed at one
   small Python HTTP server), against 100 apps without probes, two daemons (own
   homes) measured in the same 30 s window: schedstat summed over the daemon's threads.

The load generator: CLIENTS processes, each a loop of one request per new TCP
connection (`GET / HTTP/1.0`) to nginx, reading the answer to EOF. A request
fails when the status is not 2xx (nginx's 502/504) or the connection fails
(refused, reset, empty answer, no answer within 10 s). Each failure is kept with
its start and end time, so it can be set against the kill/restart/reload that
caused it; successes are counted, with their latency. nginx's access log is read
afterwards as a cross-check (non-2xx statuses in the same windows), and its
error log tells why nginx answered 502.
"""
import argparse
import bisect
import collections
import datetime
import http.server
import json
import multiprocessing as mp
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from benchlib import build_info as sup_build_info, cpu_delta, cpu_sample
from array import array

ROOT = os.environ["ROOT"]
SUP = os.environ["SUP_BIN"]
SUP_HOME = os.environ["SUP_HOME"]
PM2_HOME_FORK = os.environ["PM2_HOME_FORK"]
PM2_HOME_CLUSTER = os.environ["PM2_HOME_CLUSTER"]
WORK = os.environ["WORK"]
PM2 = shutil.which("pm2") or "pm2"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NODE = shutil.which("node") or "node"
PY = sys.executable
# What runs behind nginx (bench/cluster.sh sets it):
#   node          examples/app.js (takes fd 3 itself), one instance under sup;
#   node-cluster  examples/unmodified.js (only calls listen(PORT)), `-i 2`
#                 under sup with no code change (sup's Node preload);
#   python        gunicorn (examples/wsgi_app.py, reads LISTEN_FDS itself):
#                 `-i 2` × 1 worker under sup, 2 workers under PM2 fork mode
#                 and bare (PM2's cluster mode is for Node only).
PROFILE = os.environ.get("BENCH_PROFILE", "node")
APP = os.path.join(ROOT, "examples", "unmodified.js" if PROFILE == "node-cluster" else "app.js")
INSTANCES = 1 if PROFILE == "node" else 2
GUNICORN = [PY, "-m", "gunicorn", "--chdir", os.path.join(ROOT, "examples"), "wsgi_app:app"]


def app_argv(port, workers):
    """The app as the bare reference and PM2 fork mode run it."""
    if PROFILE == "python":
        return GUNICORN + ["-w", str(workers), "-b", f"127.0.0.1:{port}"]
    return [NODE, APP]
CONF = os.path.join(ROOT, "bench", "nginx.conf")

CLIENTS = 4
PHASE_S = float(os.environ.get("PHASE_S", "20"))
STEADY_S = float(os.environ.get("STEADY_S", "4"))
STEADY_ROUNDS = int(os.environ.get("STEADY_ROUNDS", "6"))
WARMUP_S = float(os.environ.get("WARMUP_S", "3"))
WARM_S = 0.5
LEAD_S = 0.5          # load before the first operation
RECOVER_S = 1.5       # load after the last operation ended
REQ_TIMEOUT_S = 10.0
# A pid is killed only once it is this old: PM2 counts a run shorter than its
# min_uptime (1000 ms by default) as unstable and gives up after 16 of them, so
# "once a second" must not kill a PM2 app younger than 1 s. Applies to all.
KILL_MIN_AGE_S = 1.05
CPU_APPS = int(os.environ.get("CPU_APPS", "100"))
CPU_WINDOW_S = float(os.environ.get("CPU_WINDOW_S", "30"))
HZ = os.sysconf("SC_CLK_TCK")
PIDS_DIR = os.path.join(WORK, "pids")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None, check=True, timeout=120, cwd=ROOT):
    full = dict(os.environ)
    if env:
        full.update(env)
    r = subprocess.run(cmd, env=full, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r


def version(cmd):
    try:
        r = run(cmd, check=False, timeout=30)
        return (r.stdout.strip() or r.stderr.strip()).splitlines()[-1]
    except Exception:
        return "?"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remember_pid(name, pid):
    os.makedirs(PIDS_DIR, exist_ok=True)
    with open(os.path.join(PIDS_DIR, name), "w") as f:
        f.write(f"{pid}\n")


def proc_age(pid):
    """Seconds since the process started (10 ms resolution), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        with open("/proc/uptime") as f:
            up = float(f.read().split()[0])
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    if rest[0] == "Z":
        return None
    return up - int(rest[19]) / HZ  # field 22: starttime


def pct(vals, q):
    if not vals:
        return float("nan")
    vals = sorted(vals)
    k = (len(vals) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(vals) - 1)
    return vals[lo] + (vals[hi] - vals[lo]) * (k - lo)


# ---------------------------------------------------------------- other processes

class Others:
    """CPU used by processes that are not this run's (the machine is shared):
    every process whose environment lacks our WORK directory. Sampled every
    second by a thread; a process first seen after the start counts from 0."""

    def __init__(self):
        import threading
        self.mark = f"WORK={WORK}".encode()
        self.ours = {}
        self.first = {}
        self.last = {}
        self.cmd = {}
        self.t0 = time.time()
        self.boot = time.time() - float(open("/proc/uptime").read().split()[0])
        self.lock = threading.Lock()
        self.sample(initial=True)
        threading.Thread(target=self.loop, daemon=True).start()

    def is_ours(self, pid, depth=0):
        """Ours: our WORK in its environment, or a child of ours (nginx
        workers get a cleared environment)."""
        if pid <= 1 or depth > 20:
            return False
        if pid not in self.ours:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    mine = self.mark in f.read().split(b"\0")
                if not mine:
                    with open(f"/proc/{pid}/stat") as f:
                        st = f.read()
                    mine = self.is_ours(int(st[st.rindex(")") + 2:].split()[1]), depth + 1)
                self.ours[pid] = mine
            except OSError:
                self.ours[pid] = True  # gone: nothing to count
        return self.ours[pid]

    def sample(self, initial=False):
        me = os.getpid()
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid == me or self.is_ours(pid):
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
            except OSError:
                continue
            rest = st[st.rindex(")") + 2:].split()
            cpu = (int(rest[11]) + int(rest[12])) / HZ
            started = self.boot + int(rest[19]) / HZ
            key = (pid, rest[19])
            with self.lock:
                if key not in self.first:
                    self.first[key] = cpu if (initial or started < self.t0) else 0.0
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            self.cmd[key] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:70]
                    except OSError:
                        self.cmd[key] = "?"
                self.last[key] = cpu

    def loop(self):
        while True:
            time.sleep(1.0)
            try:
                self.sample()
            except Exception:
                pass

    def cpu_s(self):
        self.sample()
        with self.lock:
            return sum(self.last[k] - self.first[k] for k in self.last)

    def top(self, n=3):
        with self.lock:
            d = sorted(((self.last[k] - self.first[k], self.cmd.get(k, "?")) for k in self.last),
                       reverse=True)[:n]
        return [f"{cpu:.1f} s `{cmd}`" for cpu, cmd in d if cpu >= 0.5]


# ---------------------------------------------------------------- load generator

REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\nUser-Agent: sup-nginx-bench\r\n\r\n"


def one_request(addr):
    """None when the answer is 2xx, else what went wrong."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(REQ_TIMEOUT_S)
    buf = b""
    try:
        s.connect(addr)
        s.sendall(REQUEST)
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        return "no answer in 10 s"
    except ConnectionRefusedError:
        return "connection refused"
    except ConnectionResetError:
        return "connection reset"
    except OSError as e:
        return f"socket error {e.errno}"
    finally:
        s.close()
    if not buf:
        return "empty answer"
    parts = buf.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return "malformed answer"
    if parts[1].startswith(b"2"):
        return None
    return "HTTP " + parts[1].decode(errors="replace")


def load_worker(port, t_stop, count_from, conn):
    addr = ("127.0.0.1", port)
    ok = 0
    lat = array("d")
    fails = []
    while True:
        t0 = time.time()
        if t0 >= t_stop.value:
            break
        err = one_request(addr)
        t1 = time.time()
        if t0 < count_from:
            continue
        if err is None:
            ok += 1
            lat.append(t1 - t0)
        else:
            fails.append((t0, t1, err))
    conn.send((ok, lat.tobytes(), fails))
    conn.close()


class Load:
    """CLIENTS processes hammering one nginx port until t_stop (which may move)."""

    def __init__(self, port, t_stop, count_from=0.0):
        ctx = mp.get_context("fork")
        self.t_stop = ctx.Value("d", t_stop)
        self.procs = []
        for _ in range(CLIENTS):
            rx, tx = ctx.Pipe(duplex=False)
            p = ctx.Process(target=load_worker, args=(port, self.t_stop, count_from, tx), daemon=True)
            p.start()
            tx.close()
            self.procs.append((p, rx))

    def extend(self, t):
        with self.t_stop.get_lock():
            self.t_stop.value = max(self.t_stop.value, t)

    def join(self):
        ok, lat, fails = 0, array("d"), []
        for p, rx in self.procs:
            o, l, f = rx.recv()
            p.join()
            ok += o
            a = array("d")
            a.frombytes(l)
            lat.extend(a)
            fails.extend(f)
        fails.sort()
        return {"ok": ok, "lat": list(lat), "fails": fails}


# ---------------------------------------------------------------- nginx


class Nginx:
    def __init__(self, name, upstream_port):
        self.name = name
        self.port = free_port()
        self.upstream = upstream_port
        self.prefix = os.path.join(WORK, f"nginx-{name}")
        for d in ("logs", "tmp"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        os.chmod(WORK, 0o755)  # workers run as `nobody` when we are root
        os.chmod(self.prefix, 0o755)
        with open(CONF) as f:
            text = f.read()
        text = text.replace("@LISTEN_PORT@", str(self.port)).replace("@UPSTREAM_PORT@", str(upstream_port))
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(text)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix + "/", "-c", self.conf, "-e", "logs/error.log",
                                      "-g", "daemon off;"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.prefix, "stderr"), "w"),
                                     start_new_session=True)  # like a service: its own scheduling group
        remember_pid(f"nginx-{name}", self.proc.pid)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"nginx ({name}) did not start: "
                                       + open(os.path.join(self.prefix, "stderr")).read()[-500:])
                time.sleep(0.05)

    def error_log_size(self):
        try:
            return os.path.getsize(os.path.join(self.prefix, "logs", "error.log"))
        except OSError:
            return 0

    def error_reasons(self, start, end):
        """Why nginx failed requests, from its error log between two offsets."""
        with open(os.path.join(self.prefix, "logs", "error.log"), "rb") as f:
            f.seek(start)
            text = f.read(max(0, end - start)).decode(errors="replace")
        reasons = collections.Counter()
        for line in text.splitlines():
            m = re.search(r"\[(\w+)\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$", line)
            if m:
                reasons[f"[{m.group(1)}] {m.group(2)}"] += 1
        return reasons

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: flushes the access log buffer
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def access_statuses(self, t_from, t_to):
        """Counter of nginx statuses logged in [t_from, t_to] (after stop())."""
        c = collections.Counter()
        try:
            with open(os.path.join(self.prefix, "logs", "access.log")) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 2 and t_from <= float(p[0]) <= t_to:
                        c[p[1]] += 1
        except OSError:
            pass
        return c


def probe_once(port):
    return one_request(("127.0.0.1", port))


def wait_serving(port, n=5, timeout=20.0):
    """Until n requests in a row through nginx succeed; False on timeout."""
    deadline = time.time() + timeout
    good = 0
    while time.time() < deadline:
        if probe_once(port) is None:
            good += 1
            if good >= n:
                return True
        else:
            good = 0
            time.sleep(0.05)
    return False


# ---------------------------------------------------------------- targets


class Bare:
    key, label = "bare", "bare app (no supervisor)"

    def __init__(self):
        self.up = free_port()
        out = open(os.path.join(WORK, "bare-app.log"), "w")
        # Own session, as under a supervisor: with the scheduler's autogroups
        # (kernel.sched_autogroup_enabled) a session is a scheduling group, and
        # an app sharing one with the load generator gets less CPU.
        self.proc = subprocess.Popen(app_argv(self.up, INSTANCES), env=dict(os.environ, PORT=str(self.up)), cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        remember_pid("bare-app", self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def state(self):
        return []


class Sup:
    key, label = "sup", "sup"

    def __init__(self):
        self.up = free_port()
        self.env = {"SUP_HOME": SUP_HOME}
        # `exec`: should the line run under `sh -c` (sup before 0.2 ran every
        # quoted command so), the shell becomes gunicorn and LISTEN_PID names it.
        program = " ".join(["exec"] + GUNICORN + ["-w", "1"]) if PROFILE == "python" else APP
        self.start_cmd = [SUP, "start", program, "--name", "api", "--listen", f"127.0.0.1:{self.up}",
                          "--min-uptime", "300ms", "-i", str(INSTANCES)]
        # PORT: an app that only calls listen(PORT) asks for the held port.
        run(self.start_cmd, env=dict(self.env, PORT=str(self.up)))

    def victim(self, k):
        """Pid of instance k % n (the instances in turn)."""
        r = run([SUP, "list", "--json"], env=self.env, check=False)
        try:
            app = json.loads(r.stdout)[0]
            instances = app.get("instances") or [app]
            return int(instances[k % len(instances)]["pid"])
        except (IndexError, ValueError, KeyError, TypeError):
            return None

    def op(self, kind):
        return [SUP, kind, "api"]

    def state(self):
        r = run([SUP, "list", "--json"], env=self.env, check=False)
        try:
            apps = json.loads(r.stdout)
        except ValueError:
            return [{"error": r.stdout[-200:] + r.stderr[-200:]}]
        if isinstance(apps, dict):
            apps = apps.get("apps", [])
        return [{"status": a.get("status"), "pid": a.get("pid"), "restarts": a.get("restarts"),
                 "unstable": a.get("unstable_restarts")} for a in apps]

    def online(self):
        st = self.state()
        return bool(st) and all(s.get("status") == "online" for s in st)

    def stop(self):
        run([SUP, "delete", "api"], env=self.env, check=False)


class Pm2:
    def __init__(self, cluster):
        self.cluster = cluster
        self.key = "pm2_cluster" if cluster else "pm2_fork"
        self.label = "PM2 cluster ×2" if cluster else "PM2 fork"
        self.home = PM2_HOME_CLUSTER if cluster else PM2_HOME_FORK
        self.up = free_port()
        # PM2 7 has no per-app stop signal on its command line: the daemon reads
        # PM2_KILL_SIGNAL (default SIGINT) from its environment when it boots.
        self.env = {"PM2_HOME": self.home, "PM2_KILL_SIGNAL": "SIGTERM"}
        self.ids = [0, 1] if cluster else [0]
        if PROFILE == "python":
            self.start_cmd = [PM2, "start", PY, "--name", "api", "--interpreter", "none", "--",
                              *app_argv(self.up, INSTANCES)[1:]]
        else:
            self.start_cmd = [PM2, "start", APP, "--name", "api"] + (["-i", "2"] if cluster else [])
        run(self.start_cmd, env=dict(self.env, PORT=str(self.up)))

    def victim(self, k):
        """Pid of instance ids[k % n], from PM2's pid file (no 200 ms CLI call)."""
        i = self.ids[k % len(self.ids)]
        try:
            with open(os.path.join(self.home, "pids", f"api-{i}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def op(self, kind):
        return [PM2, kind, "api"]

    def state(self):
        r = run([PM2, "jlist"], env=self.env, check=False)
        text = r.stdout
        try:
            apps = json.loads(text[text.index("["):])
        except ValueError:
            return [{"error": text[-200:] + r.stderr[-200:]}]
        return [{"status": a["pm2_env"].get("status"), "pid": a.get("pid"),
                 "restarts": a["pm2_env"].get("restart_time"),
                 "unstable": a["pm2_env"].get("unstable_restarts")} for a in apps]

    def online(self):
        st = self.state()
        return len(st) == len(self.ids) and all(s.get("status") == "online" for s in st)

    def stop(self):
        run([PM2, "delete", "api"], env=self.env, check=False)


# ---------------------------------------------------------------- phases


def steady(tgt, nginx, seconds=None):
    seconds = seconds or STEADY_S
    if not wait_serving(nginx.port):
        log(f"warning: {tgt.label} is not serving before the throughput run")
    t0 = time.time()
    load = Load(nginx.port, t0 + WARM_S + seconds, count_from=t0 + WARM_S)
    res = load.join()
    return {"rps": res["ok"] / seconds, "ok": res["ok"], "fails": len(res["fails"]),
            "p50_ms": pct(res["lat"], 50) * 1e3, "p99_ms": pct(res["lat"], 99) * 1e3}


def wait_online(tgt, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if tgt.online():
            return True
        time.sleep(0.2)
    return False


def fault_phase(tgt, nginx, kind):
    notes = []
    if not (wait_online(tgt) and wait_serving(nginx.port)):
        notes.append("not online/serving before the phase: restarted by hand")
        run(tgt.op("restart"), env=tgt.env, check=False)
        wait_online(tgt)
        wait_serving(nginx.port)
    before = tgt.state()
    err0 = nginx.error_log_size()
    t0 = time.time()
    end_ops = t0 + LEAD_S + PHASE_S
    load = Load(nginx.port, end_ops + RECOVER_S, count_from=t0)
    ops = []
    killed = set()
    next_t = t0 + LEAD_S
    k = 0
    while next_t < end_ops:
        dt = next_t - time.time()
        if dt > 0:
            time.sleep(dt)
        if kind == "kill":
            pid, p, age, give_up = None, None, None, time.time() + 3.0
            while time.time() < give_up:
                p = tgt.victim(k)
                age = proc_age(p) if p else None
                if p and p not in killed and age is not None:
                    if age >= KILL_MIN_AGE_S:
                        pid = p
                        break
                    time.sleep(KILL_MIN_AGE_S - age + 0.001)
                    continue
                time.sleep(0.005)
            if pid is None:
                notes.append(f"no killable pid at op {k} (pid {p}, age {age})")
                next_t = max(next_t + 1.0, time.time())
                k += 1
                continue
            ts = time.time()
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            ops.append({"t0": ts, "t1": ts, "rc": 0, "pid": pid})
        else:
            ts = time.time()
            r = run(tgt.op(kind), env=tgt.env, check=False, timeout=60)
            te = time.time()
            ops.append({"t0": ts, "t1": te, "rc": r.returncode,
                        "out": (r.stdout.strip() + " " + r.stderr.strip())[-300:]})
            if r.returncode != 0:
                notes.append(f"`{kind}` exited {r.returncode}: {ops[-1]['out'][-160:]}")
        k += 1
        next_t = max(next_t + 1.0, time.time())
    t_last = ops[-1]["t1"] if ops else time.time()
    load.extend(t_last + RECOVER_S)
    res = load.join()
    t_end = time.time()
    err1 = nginx.error_log_size()
    after = tgt.state()
    recovered = wait_serving(nginx.port, timeout=15)
    if not recovered:
        notes.append("not serving 15 s after the phase")
    return analyse(kind, ops, res, t0, t_end, before, after, notes, nginx.error_reasons(err0, err1))


def analyse(kind, ops, res, t0, t_end, before, after, notes, reasons):
    fails = res["fails"]
    starts = [o["t0"] for o in ops]
    per_op = [0] * len(ops)
    span = [None] * len(ops)  # (first, last) failure end per op
    before_first = 0
    delays, inflight = [], 0
    for (f0, f1, _) in fails:
        i = bisect.bisect_right(starts, f1) - 1
        if i < 0:
            before_first += 1
            continue
        per_op[i] += 1
        span[i] = (min(span[i][0], f0), max(span[i][1], f1)) if span[i] else (f0, f1)
        delays.append((f1 - starts[i]) * 1e3)
        if f0 < starts[i]:
            inflight += 1
    dur = [(o["t1"] - o["t0"]) * 1e3 for o in ops]
    load_s = t_end - t0
    lat = res["lat"]
    return {
        "kind": kind, "ops": len(ops), "failed": len(fails), "ok": res["ok"],
        "rps": res["ok"] / load_s if load_s > 0 else 0.0, "load_s": load_s,
        "per_op": (len(fails) / len(ops)) if ops else float("nan"),
        "ops_with_fail": sum(1 for n in per_op if n), "max_in_op": max(per_op) if per_op else 0,
        # How long requests kept failing after an op: from the start of the first
        # failed request to the end of the last one (0 when none failed).
        "outage_med_ms": pct([(b - a) * 1e3 if (a, b) != (0, 0) else 0.0
                              for a, b in (x or (0, 0) for x in span)], 50),
        "outage_max_ms": max([(x[1] - x[0]) * 1e3 for x in span if x] or [0.0]),
        "before_first": before_first, "inflight": inflight,
        "delay_med_ms": pct(delays, 50), "delay_max_ms": max(delays) if delays else float("nan"),
        "delay_min_ms": min(delays) if delays else float("nan"),
        "kinds": dict(collections.Counter(f[2] for f in fails)),
        "op_ms_med": pct(dur, 50), "op_ms_max": max(dur) if dur else float("nan"),
        "op_fail_rc": sum(1 for o in ops if o["rc"] != 0),
        "p50_ms": pct(lat, 50) * 1e3, "p99_ms": pct(lat, 99) * 1e3,
        "max_ms": (max(lat) * 1e3) if lat else float("nan"),
        "before": before, "after": after, "notes": notes, "nginx_reasons": dict(reasons),
        "t0": t0, "t_end": t_end,
        "fail_times": [(round((f0 - t0) * 1e3), round((f1 - t0) * 1e3), e) for f0, f1, e in fails][:400],
        "op_times": [round((o["t0"] - t0) * 1e3) for o in ops],
    }


# ---------------------------------------------------------------- daemon CPU with probes


def probe_server(port, counter, resets, ready):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            with counter.get_lock():
                counter.value += 1
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            with resets.get_lock():  # e.g. the prober closed before reading the body
                resets.value += 1

    S.request_queue_size = 1024  # 100 probes may connect at the same instant
    srv = S(("127.0.0.1", port), H)
    srv.daemon_threads = True
    ready.set()
    srv.serve_forever()


def probe_cpu():
    ctx = mp.get_context("fork")
    hport = free_port()
    counter, resets, ready = ctx.Value("l", 0), ctx.Value("l", 0), ctx.Event()
    srv = ctx.Process(target=probe_server, args=(hport, counter, resets, ready), daemon=True)
    srv.start()
    remember_pid("probe-server", srv.pid)
    ready.wait(10)
    url = f"http://127.0.0.1:{hport}/"
    homes = {"probed": os.path.join(SUP_HOME, "probed"), "plain": os.path.join(SUP_HOME, "plain")}
    script = os.path.join(WORK, "x.sh")
    with open(script, "w") as f:
        f.write("#!/bin/bash\nexec sleep 100000\n")
    os.chmod(script, 0o755)
    for key, home in homes.items():
        os.makedirs(home, exist_ok=True)
        extra = ["--health", url, "--health-interval", "1s"] if key == "probed" else []
        log(f"starting {CPU_APPS} apps under sup ({key})")
        for i in range(CPU_APPS):
            run([SUP, "start", script, "--name", f"a{i}"] + extra, env={"SUP_HOME": home})
    deadline = time.time() + 30
    for home in homes.values():
        while time.time() < deadline:
            apps = json.loads(run([SUP, "list", "--json"], env={"SUP_HOME": home}).stdout)
            if sum(1 for a in apps if a.get("status") == "online") >= CPU_APPS:
                break
            time.sleep(0.3)
    time.sleep(3.0)  # let every probe loop get going
    pids = {}
    for key, home in homes.items():
        with open(os.path.join(home, "daemon.lock")) as f:
            pids[key] = int(f.read().strip())
    a = {k: cpu_sample(p) for k, p in pids.items()}
    c0 = counter.value
    log(f"daemon CPU window, {CPU_WINDOW_S:.0f} s")
    time.sleep(CPU_WINDOW_S)
    b = {k: cpu_sample(p) for k, p in pids.items()}
    c1 = counter.value
    out = {k: cpu_delta(a[k], b[k]) for k in pids}
    out["probes"] = c1 - c0
    out["server_errors"] = resets.value
    apps = json.loads(run([SUP, "list", "--json"], env={"SUP_HOME": homes["probed"]}).stdout)
    out["healthy"] = sum(1 for x in apps if (x.get("health") or {}).get("status") == "healthy")
    out["online"] = sum(1 for x in apps if x.get("status") == "online")
    out["pids"] = pids
    for home in homes.values():
        run([SUP, "kill"], env={"SUP_HOME": home}, check=False)
    srv.terminate()
    srv.join(5)
    return out


# ---------------------------------------------------------------- report


def fmt(x, nd=2):
    return "n/a" if x != x else f"{x:.{nd}f}"


def daemon_log_problems():
    lines = []
    for root, _, files in os.walk(SUP_HOME):
        for fn in files:
            if fn == "daemon.log":
                with open(os.path.join(root, fn), errors="replace") as f:
                    lines += [l.rstrip() for l in f if re.search(r" (WARN|ERROR) ", l)]
    return lines


def names_of(key):
    return {"sup": "sup", "pm2_fork": "PM2 fork", "pm2_cluster": "PM2 cluster ×2"}[key]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", help="also dump the raw figures here")
    args = ap.parse_args()
    # Interrupted by bench/nginx.sh's trap: exit normally, so that the load
    # processes (daemonic) are ended too; the script stops the rest.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.datetime.now()
    load0 = os.getloadavg()
    build = sup_build_info(SUP)

    others = Others()
    log("starting the four targets, each behind its own nginx")
    bare = Bare()
    sup = Sup()
    fork = Pm2(cluster=False)
    cluster = Pm2(cluster=True) if PROFILE != "python" else None
    targets = [t for t in (bare, sup, fork, cluster) if t]
    nginx = {t.key: Nginx(t.key, t.up) for t in targets}
    for t in targets:
        if t is not bare and not wait_online(t):
            raise RuntimeError(f"{t.label} did not come online: {t.state()}")
        if not wait_serving(nginx[t.key].port):
            raise RuntimeError(f"{t.label} does not answer through nginx")

    # 1. throughput without faults
    log(f"warm-up, {WARMUP_S:.0f} s per target")
    for t in targets:
        steady(t, nginx[t.key], seconds=WARMUP_S)
    tp = {t.key: [] for t in targets}
    other0 = others.cpu_s()
    t_tp0 = time.time()
    for r in range(STEADY_ROUNDS):
        # Alternate the order (ABCD, DCBA, ...) so that a drift of the machine
        # does not favour whoever runs first.
        for t in (targets if r % 2 == 0 else targets[::-1]):
            log(f"throughput, round {r + 1}: {t.label}")
            tp[t.key].append(steady(t, nginx[t.key]))
    other_tp = (others.cpu_s() - other0) / (time.time() - t_tp0)
    bare.stop()
    rps = {k: sum(x["rps"] for x in v) / len(v) for k, v in tp.items()}

    # 2. faults
    faults = {}
    for t in targets[1:]:
        faults[t.key] = {}
        for kind in ("kill", "restart", "reload"):
            log(f"{t.label}: {kind} once a second for {PHASE_S:.0f} s")
            faults[t.key][kind] = fault_phase(t, nginx[t.key], kind)
            f = faults[t.key][kind]
            log(f"  {f['ops']} ops, {f['failed']} failed requests, {f['ok']} served "
                f"({f['rps']:.0f}/s), kinds {f['kinds']}")
        t.stop()
    run([PM2, "kill"], env={"PM2_HOME": PM2_HOME_FORK}, check=False)
    run([PM2, "kill"], env={"PM2_HOME": PM2_HOME_CLUSTER}, check=False)

    # nginx cross-check: statuses in each window (stop flushes the access log)
    for n in nginx.values():
        n.stop()
    for key, phases in faults.items():
        for kind, f in phases.items():
            st = nginx[key].access_statuses(f["t0"], f["t_end"] + 0.2)
            f["nginx_statuses"] = dict(st)
            f["nginx_non2xx"] = sum(v for s, v in st.items() if not s.startswith("2"))

    # 3. daemon CPU with probes
    cpu = probe_cpu() if PROFILE == "node" else None

    problems = daemon_log_problems()
    if problems:
        dest = os.path.join(ROOT, "bench", "results", "nginx-last-daemon.log")
        with open(dest, "w") as f:
            f.write("\n".join(problems) + "\n")

    # ------------------------------------------------------------ table
    cols = ("sup", "pm2_fork", "pm2_cluster")
    present = [k for k in cols if k in faults]
    base = rps["bare"]

    def tp_cell(k):
        if k not in rps:
            return "— (Node only)"
        return f"{rps[k]:.0f} req/s ({100 * rps[k] / base:.1f} %)"

    def per_op_cell(k, kind):
        if k not in faults:
            return "—"
        f = faults[k][kind]
        return f"{fmt(f['per_op'])} ({f['failed']} / {f['ops']})"

    def served_cell(k, kind):
        if k not in faults:
            return "—"
        f = faults[k][kind]
        return f"{f['ok']} ({f['rps']:.0f}/s, max {f['max_ms']:.0f} ms)"

    def met(ok):
        return "met" if ok else "**missed**"

    s = faults["sup"]
    sup_tp = rps["sup"] / base
    if PROFILE == "node":
        tp_target = f"≥ 95 % of the bare app — sup: {met(sup_tp >= 0.95)}"
        kill_target = f"≤ 1 — sup: {met(s['kill']['per_op'] <= 1)}"
    else:
        # With another instance up, nothing that arrives after a kill may
        # fail; requests already inside the killed one are counted apart.
        rival = "pm2_cluster" if "pm2_cluster" in rps else "pm2_fork"
        after_kill = s["kill"]["failed"] - s["kill"]["inflight"]
        tp_target = f"≥ {names_of(rival)}'s — sup: {met(rps['sup'] >= rps[rival])}"
        kill_target = (f"0 after the kill (in flight apart: {s['kill']['inflight']}), ≤ {names_of(rival)}'s, ≤ 1 — "
                       f"sup: {after_kill} after, "
                       f"{met(after_kill == 0 and s['kill']['per_op'] <= min(1, faults[rival]['kill']['per_op']))}")
    rows = [
        (f"Throughput through nginx, 4 clients, no faults (bare app: {base:.0f} req/s = 100 %)",
         *[tp_cell(k) for k in cols], tp_target),
        (f"`kill -9` of {'one instance' if INSTANCES > 1 else 'the app'} once a second: failed requests per kill "
         "(failed / kills)", *[per_op_cell(k, "kill") for k in cols], kill_target),
        ("… requests served in that phase (rate, slowest success)", *[served_cell(k, "kill") for k in cols], "—"),
        ("`restart` once a second: failed requests per restart", *[per_op_cell(k, "restart") for k in cols],
         f"0 — sup: {met(s['restart']['failed'] == 0)}"),
        ("… requests served in that phase (rate, slowest success)", *[served_cell(k, "restart") for k in cols], "—"),
        ("`reload` once a second: failed requests per reload", *[per_op_cell(k, "reload") for k in cols],
         f"0 — sup: {met(s['reload']['failed'] == 0)}"),
        ("… requests served in that phase (rate, slowest success)", *[served_cell(k, "reload") for k in cols], "—"),
    ]
    if cpu:
        rows += [
            (f"Daemon CPU, {CPU_APPS} apps probed every 1 s over HTTP, {cpu['probed']['wall_s']:.0f} s "
             f"(schedstat, % of one core)", f"{cpu['probed']['pct']:.3f} %", "— (no HTTP probes)", "—", "—"),
            (f"Daemon CPU, {CPU_APPS} apps without probes, same window", f"{cpu['plain']['pct']:.3f} %", "—", "—",
             "—"),
        ]

    out = []
    what = {"node": "a Node app", "node-cluster": "an unmodified Node app, 2 instances",
            "python": "gunicorn, 2 instances"}[PROFILE]
    out.append(f"# nginx in front of {what}: sup vs PM2 — {started:%Y-%m-%d %H:%M}")
    out.append("")
    out.append(f"- machine: {platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
               f"load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}")
    out.append(f"- sup: `{version([SUP, '--version'])}` ({SUP}, {build}); PM2 {version([PM2, '--version'])} "
               f"on node {version([NODE, '--version'])}; {version([NGINX, '-v'])}; Python {platform.python_version()} "
               f"load generator")
    out.append("")
    out.append("| figure | sup | PM2 fork | PM2 cluster ×2 | target |")
    out.append("| --- | --- | --- | --- | --- |")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    out.append("Each fault phase in detail (delay = from the start of the operation to the failed request's end; "
               "\"in flight\" = failed requests that had started before the operation; failing span = from the start of "
               "an operation's first failed request to the end of its last one):")
    out.append("")
    out.append("| supervisor | phase | ops | op time med / max | failed | ops with a failure | most in one op "
               "| in flight | delay min / med / max | failing span per op med / max | what failed | nginx non-2xx (access log) | why (nginx error log) "
               "| latency p50 / p99 / max |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    names = {"sup": "sup", "pm2_fork": "PM2 fork", "pm2_cluster": "PM2 cluster ×2"}
    for k in present:
        for kind in ("kill", "restart", "reload"):
            f = faults[k][kind]
            kinds = ", ".join(f"{n}× {e}" for e, n in sorted(f["kinds"].items(), key=lambda x: -x[1])) or "—"
            why = "; ".join(f"{n}× {e}" for e, n in sorted(f["nginx_reasons"].items(), key=lambda x: -x[1])[:3]) or "—"
            out.append(f"| {names[k]} | {kind} | {f['ops']} | {f['op_ms_med']:.0f} / {f['op_ms_max']:.0f} ms | "
                       f"{f['failed']} | {f['ops_with_fail']} | {f['max_in_op']} | {f['inflight']} | "
                       f"{fmt(f['delay_min_ms'], 0)} / {fmt(f['delay_med_ms'], 0)} / {fmt(f['delay_max_ms'], 0)} ms | "
                       f"{f['outage_med_ms']:.0f} / {f['outage_max_ms']:.0f} ms | "
                       f"{kinds} | {f['nginx_non2xx']} | {why} | "
                       f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} / {f['max_ms']:.0f} ms |")
    out.append("")
    out.append("Notes:")
    rounds = "; ".join(f"{names.get(k, 'bare app')}: " + ", ".join(f"{x['rps']:.0f}" for x in v)
                       for k, v in tp.items())
    out.append(f"- Throughput: {WARMUP_S:.0f} s of unmeasured load per target first, then {STEADY_ROUNDS} rounds "
               f"of {STEADY_S:.0f} s per target (each after {WARM_S} s of load not counted), round robin, "
               f"the order reversed every other round, all four targets up at once (each with its own nginx and "
               f"port; the bare app and nginx in sessions of their own, as the supervised apps are, since "
               f"autogroup scheduling is {open('/proc/sys/kernel/sched_autogroup_enabled').read().strip()}); "
               f"req/s per round — {rounds}. Failed requests during these runs: "
               + ", ".join(f"{names.get(k, 'bare app')} {sum(x['fails'] for x in v)}" for k, v in tp.items())
               + ". p50 latency (first round): "
               + ", ".join(f"{names.get(k, 'bare app')} {v[0]['p50_ms']:.2f} ms" for k, v in tp.items()) + ".")
    other_all = others.cpu_s() / (time.time() - others.t0)
    top = others.top()
    out.append(f"- The machine is shared: processes that are not this run's used {100 * other_tp:.1f} % of one core "
               f"during the throughput rounds and {100 * other_all:.1f} % over the whole run"
               + (f" (most: {'; '.join(top)})" if top else "") + ".")
    out.append(f"- Load: {CLIENTS} client processes, each a loop of `GET / HTTP/1.0` on a new connection to nginx, "
               f"read to EOF; a request fails on a non-2xx status, a refused/reset connection, an empty answer "
               f"or no answer within {REQ_TIMEOUT_S:.0f} s (such a request holds one of the {CLIENTS} clients for "
               f"{REQ_TIMEOUT_S:.0f} s, which lowers that phase's requests served). nginx: bench/nginx.conf (one upstream, no upstream "
               f"keepalive, `proxy_next_upstream off`, `worker_processes auto`).")
    out.append(f"- Phases: {PHASE_S:.0f} s each; an operation a second (the next one at once if one took longer); "
               f"load from {LEAD_S} s before the first until {RECOVER_S} s after the last one ended. "
               f"`kill -9` hits the pid that `sup pid api` prints, or PM2's pid file (cluster: instance 0 and 1 in "
               f"turn), and only once that process is {KILL_MIN_AGE_S} s old, so that PM2 (min_uptime 1 s, "
               f"16 unstable restarts then errored) keeps restarting.")
    short = lambda cmd: " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else os.path.basename(c)
                                 if c.startswith("/") else c for c in cmd)
    out.append(f"- Profile `{PROFILE}` (BENCH_PROFILE): sup ran `{short(sup.start_cmd)}` (with PORT=P); "
               f"PM2 ran `{short(fork.start_cmd)}`"
               + (f" and `{short(cluster.start_cmd)}`" if cluster else "") + " (with PORT=P).")
    out.append("- sup: `sup start examples/app.js --name api --listen 127.0.0.1:P --min-uptime 300ms` (other "
               "options default: restart delay 0, SIGTERM, kill timeout 5 s; no readiness probe, so a reload's new "
               "instance counts as ready after 300 ms up). PM2: `PORT=P pm2 start examples/app.js --name api [-i 2]` with "
               "the daemon started under `PM2_KILL_SIGNAL=SIGTERM`, otherwise PM2 defaults (restart delay 0, "
               "min_uptime 1 s, kill_timeout 1.6 s, listen_timeout 3 s); SIGTERM instead of PM2's default SIGINT "
               "because examples/app.js drains only on SIGTERM. PM2 fork mode has no zero-downtime reload: `pm2 reload` restarts it.")
    for k in present:
        for kind in ("kill", "restart", "reload"):
            f = faults[k][kind]
            extra = []
            if f["notes"]:
                extra.append("; ".join(f["notes"][:3]))
            if f["op_fail_rc"]:
                extra.append(f"{f['op_fail_rc']} operation(s) exited non-zero")
            if f["before_first"]:
                extra.append(f"{f['before_first']} failure(s) before the first operation")
            st = lambda L: ", ".join(f"{x.get('status')} r{x.get('restarts')} u{x.get('unstable')}" for x in L)
            extra.append(f"state before: {st(f['before'])}; after: {st(f['after'])}")
            out.append(f"- {names[k]}, {kind}: " + "; ".join(extra) + ".")
    if cpu:
        out.append(f"- Daemon CPU: two sup daemons (own homes) measured in the same {cpu['probed']['wall_s']:.1f} s "
               f"window, {CPU_APPS} apps each (`exec sleep 100000`); one with `--health http://127.0.0.1:P/ "
               f"--health-interval 1s` on every app, all pointed at one Python ThreadingHTTPServer, which answered "
               f"{cpu['probes']} probes in the window ({cpu['probes'] / cpu['probed']['wall_s']:.1f}/s); "
               f"{cpu['healthy']} of {cpu['online']} probed apps healthy at the end; the server saw "
               f"{cpu['server_errors']} connection errors while answering (the prober closing early). On CPU: probed "
               f"{cpu['probed']['ms']:.1f} ms ({cpu['probed']['ticks']} utime+stime ticks), plain "
               f"{cpu['plain']['ms']:.1f} ms ({cpu['plain']['ticks']} ticks), threads {cpu['probed']['threads']}/"
               f"{cpu['plain']['threads']}; per probe "
               f"{(cpu['probed']['ms'] - cpu['plain']['ms']) / max(1, cpu['probes']) * 1e3:.0f} µs.")
    if problems:
        out.append(f"- sup daemon.log had {len(problems)} WARN/ERROR line(s) (copied to "
                   f"bench/results/nginx-last-daemon.log), first: `{problems[0][:240]}`")
    else:
        out.append("- sup daemon.log: no WARN/ERROR lines.")
    out.append(f"- Total benchmark time: {(datetime.datetime.now() - started).total_seconds():.0f} s.")
    text = "\n".join(out) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": tp, "faults": faults, "cpu": cpu}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
