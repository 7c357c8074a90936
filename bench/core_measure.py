#!/usr/bin/env python3
"""Measurements for bench/core.sh: sup vs PM2, side by side in one run.

Expects SUP_BIN, SUP_HOME and PM2_HOME in the environment (fresh, empty homes,
no daemon running in either); core.sh sets them up and cleans up afterwards.

Order of the run (both daemons stay alive from step 1 on):
  1. start 100 apps, cold daemon: sup first, then PM2 (100 CLI calls each,
     timed from the first call until list shows all 100 online)
  2. `list` latency with 100 apps (extra figure)
  3. idle CPU over one 30 s window, both daemons measured in the same window;
     RSS/PSS sampled at the start and at the end of that window (the end one
     is reported)
  4. delete a21..a100, then `list` latency with 20 apps (hyperfine)
  5. restart latency after kill -9: one extra app per supervisor writing its
     pid to a file; 30 kills each, sup and PM2 interleaved, >= 1.25 s between
     two kills of the same app
  6. crash loop: every app deleted, then one app that exits 1 at once under
     four daemons in the same 30 s window: sup defaults, sup --backoff-max 1s
     (own home, SUP_HOME/bm1), PM2 defaults, PM2 --exp-backoff-restart-delay=100
     (own home, PM2_HOME/exp); daemon CPU (schedstat) and restarts performed

`--only-crash` runs just phase 6 (starting both main daemons first) and prints
its figures as JSON, for trying it out.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import build_info as sup_build_info, cpu_delta, cpu_sample

SUP = os.environ["SUP_BIN"]
SUP_HOME = os.environ["SUP_HOME"]
PM2_HOME = os.environ["PM2_HOME"]
PM2 = shutil.which("pm2") or "pm2"

N_APPS = 100
N_LIST_APPS = 20
LIST_RUNS = 30
N_KILLS = 30
KILL_GAP_S = 1.25
IDLE_S = 30.0
CRASH_S = 30.0
POLL_S = 0.0002

TARGETS = {
    "list": ("≤ 5 ms", lambda v: v <= 5.0),
    "rss": ("≤ 8 MiB", lambda v: v <= 8.0),
    "restart": ("≤ 10 ms", lambda v: v <= 10.0),
    "start": ("≤ 1 s", lambda v: v <= 1.0),
    "cpu": ("< 0.1 %", lambda v: v < 0.1),
}


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(argv, cwd=None, check=True, env=None):
    p = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({p.returncode}): {p.stderr.strip()[:500]}")
    return p


def parse_json_array(text):
    # PM2 may print a notice before the JSON; take from the first '['.
    i = text.find("[")
    return json.loads(text[i:]) if i >= 0 else []


def sup_env(home):
    return dict(os.environ, SUP_HOME=home)


def pm2_env(home):
    return dict(os.environ, PM2_HOME=home)


def sup_list(home=SUP_HOME):
    return [(a["name"], a["status"], a["pid"], a["restarts"])
            for a in parse_json_array(run([SUP, "list", "--json"], env=sup_env(home)).stdout)]


def pm2_list(home=PM2_HOME):
    return [(a["name"], a["pm2_env"]["status"], a.get("pid"), a["pm2_env"].get("restart_time"))
            for a in parse_json_array(run([PM2, "jlist"], env=pm2_env(home)).stdout)]


def sup_daemon_pid(home=SUP_HOME):
    with open(os.path.join(home, "daemon.lock")) as f:
        return int(f.read().strip())


def pm2_daemon_pid(home=PM2_HOME):
    with open(os.path.join(home, "pm2.pid")) as f:
        return int(f.read().strip())


def write_script(path, pidfile=None, crash=False):
    body = "#!/bin/bash\n"
    if crash:
        body += "exit 1\n"
    else:
        if pidfile:
            body += f"echo $$ > {pidfile}\n"
        body += "exec sleep 100000\n"
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, 0o755)


def pct(sorted_vals, q):
    """Percentile with linear interpolation (q in 0..100)."""
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    k = (len(sorted_vals) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def summary(vals):
    s = sorted(vals)
    return {"median": statistics.median(s), "p95": pct(s, 95), "min": s[0], "max": s[-1], "n": len(s)}


# ---------------------------------------------------------------- 1. start 100


def start_many(tool, script):
    names = [f"a{i}" for i in range(1, N_APPS + 1)]
    home = SUP_HOME if tool == "sup" else PM2_HOME
    t0 = time.perf_counter()
    for n in names:
        if tool == "sup":
            run([SUP, "start", script, "--name", n], cwd=home)
        else:
            run([PM2, "start", script, "--name", n], cwd=home)
    t_calls = time.perf_counter() - t0
    lister = sup_list if tool == "sup" else pm2_list
    want = set(names)
    polls = 0
    while True:
        apps = lister()
        polls += 1
        online = {a[0] for a in apps if a[1] == "online"}
        if want <= online:
            break
        if time.perf_counter() - t0 > 180:
            raise RuntimeError(f"{tool}: only {len(want & online)}/{N_APPS} online after 180 s")
        time.sleep(0.005)
    total = time.perf_counter() - t0
    log(f"{tool}: {N_APPS} apps online in {total:.3f} s (CLI calls {t_calls:.3f} s, {polls} list polls)")
    return {"total_s": total, "calls_s": t_calls}


# ---------------------------------------------------------------- memory / cpu


def mem_kib(pid):
    rss = pss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return {"rss_kib": rss, "pss_kib": pss}


# ---------------------------------------------------------------- list latency


def list_latency(tag):
    cmds = {"sup": [SUP, "list"], "pm2": [PM2, "jlist"]}
    res = {}
    if shutil.which("hyperfine"):
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tf:
            out = tf.name
        try:
            run(["hyperfine", "-N", "--style", "none", "--warmup", "3", "--runs", str(LIST_RUNS),
                 "--export-json", out, "-n", "sup", " ".join(cmds["sup"]),
                 "-n", "pm2", " ".join(cmds["pm2"])])
            with open(out) as f:
                data = json.load(f)
        finally:
            os.unlink(out)
        for r in data["results"]:
            res[r["command"]] = summary([t * 1000 for t in r["times"]])
        res["tool"] = "hyperfine"
    else:
        for k, argv in cmds.items():
            for _ in range(3):
                run(argv)
            ts = []
            for _ in range(LIST_RUNS):
                t0 = time.perf_counter()
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=True)
                ts.append((time.perf_counter() - t0) * 1000)
            res[k] = summary(ts)
        res["tool"] = "python perf_counter loop"
    log(f"list ({tag}): sup median {res['sup']['median']:.2f} ms, pm2 jlist median {res['pm2']['median']:.2f} ms")
    return res


# ---------------------------------------------------------------- restart latency


def read_pid(path):
    try:
        with open(path) as f:
            s = f.read().strip()
        return int(s) if s else None
    except (OSError, ValueError):
        return None


def wait_pidfile(path, old=None, timeout=10.0):
    t0 = time.perf_counter()
    while True:
        p = read_pid(path)
        if p is not None and p != old:
            return p
        if time.perf_counter() - t0 > timeout:
            return None
        time.sleep(POLL_S)


def kill_and_wait(pidfile):
    old = read_pid(pidfile)
    os.kill(old, 0)  # must be alive
    t0 = time.perf_counter()
    os.kill(old, signal.SIGKILL)
    while True:
        p = read_pid(pidfile)
        if p is not None and p != old:
            return (time.perf_counter() - t0) * 1000
        if time.perf_counter() - t0 > 10.0:
            return None
        time.sleep(POLL_S)


def restart_latency():
    files = {}
    for tool, home in (("sup", SUP_HOME), ("pm2", PM2_HOME)):
        pidfile = os.path.join(home, "rk.pid")
        script = os.path.join(home, "rk.sh")
        write_script(script, pidfile)
        files[tool] = pidfile
        if tool == "sup":
            run([SUP, "start", script, "--name", "rk"], cwd=home)
        else:
            run([PM2, "start", script, "--name", "rk", "--restart-delay", "0"], cwd=home)
        if wait_pidfile(pidfile) is None:
            raise RuntimeError(f"{tool}: restart app never wrote its pid file")
    time.sleep(KILL_GAP_S)
    lat = {"sup": [], "pm2": []}
    failures = {"sup": 0, "pm2": 0}
    for i in range(N_KILLS):
        order = ("sup", "pm2") if i % 2 == 0 else ("pm2", "sup")
        for tool in order:
            ms = kill_and_wait(files[tool])
            if ms is None:
                failures[tool] += 1
                log(f"{tool}: no new instance within 10 s after kill #{i + 1}")
                wait_pidfile(files[tool], None, 30)
            else:
                lat[tool].append(ms)
        time.sleep(KILL_GAP_S)
    sup_r = next((a[3] for a in sup_list() if a[0] == "rk"), None)
    pm2_r = next((a[3] for a in pm2_list() if a[0] == "rk"), None)
    res = {t: summary(v) if v else None for t, v in lat.items()}
    res["failures"] = failures
    res["restart_counts"] = {"sup": sup_r, "pm2": pm2_r}
    log(f"restart: sup p50 {res['sup']['median']:.2f} ms, pm2 p50 {res['pm2']['median']:.2f} ms; "
        f"restart counters sup={sup_r} pm2={pm2_r}")
    return res


# ---------------------------------------------------------------- 6. crash loop

# Four crash loops of the same app (`exit 1` at once), each under its own daemon
# (own home), all four in the same CRASH_S window. The variants get their own
# homes inside the main ones, so core.sh's cleanup removes them.
SUP_HOME_BM1 = os.path.join(SUP_HOME, "bm1")
PM2_HOME_EXP = os.path.join(PM2_HOME, "exp")
CRASH_RUNS = [
    # key, tool, home, extra `start` flags, label
    ("sup", "sup", SUP_HOME, [], "sup, defaults"),
    ("sup_bm1", "sup", SUP_HOME_BM1, ["--backoff-max", "1s"], "sup `--backoff-max 1s`"),
    ("pm2", "pm2", PM2_HOME, [], "PM2, defaults"),
    ("pm2_exp", "pm2", PM2_HOME_EXP, ["--exp-backoff-restart-delay=100"],
     "PM2 `--exp-backoff-restart-delay=100`"),
]


def crash_app_state(tool, home):
    """(status, restarts actually performed) of the app `crash`."""
    if tool == "sup":
        apps = parse_json_array(run([SUP, "list", "--json"], env=sup_env(home)).stdout)
        a = next((a for a in apps if a["name"] == "crash"), None)
        if a is None:
            raise RuntimeError(f"crash loop: sup in {home} lost the app")
        # sup counts a restart when it schedules it: while `waiting-restart`, the
        # counter already includes the pending one. Count performed restarts only.
        done = a["restarts"] - (1 if a["status"] == "waiting-restart" else 0)
        return a["status"], done
    apps = parse_json_array(run([PM2, "jlist"], env=pm2_env(home)).stdout)
    a = next((a for a in apps if a["name"] == "crash"), None)
    if a is None:
        raise RuntimeError(f"crash loop: PM2 in {home} lost the app")
    # PM2 bumps restart_time right before it respawns: performed restarts.
    return a["pm2_env"]["status"], a["pm2_env"].get("restart_time")


def crash_loop():
    # Nothing else may run under the main daemons: drop every app of the earlier phases.
    run([SUP, "delete", "all"])
    run([PM2, "delete", "all"], check=False)  # fails when there is nothing to delete
    if sup_list() or pm2_list():
        raise RuntimeError("crash loop: apps left over after `delete all`")
    # Warm, empty daemons in the variant homes (their boot stays outside the window).
    os.makedirs(SUP_HOME_BM1, mode=0o700, exist_ok=True)
    write_script(os.path.join(SUP_HOME_BM1, "x.sh"))
    run([SUP, "start", os.path.join(SUP_HOME_BM1, "x.sh"), "--name", "warm"], cwd=SUP_HOME_BM1,
        env=sup_env(SUP_HOME_BM1))
    run([SUP, "delete", "warm"], env=sup_env(SUP_HOME_BM1))
    os.makedirs(PM2_HOME_EXP, exist_ok=True)
    run([PM2, "ping"], env=pm2_env(PM2_HOME_EXP))
    pids, argvs = {}, {}
    for key, tool, home, flags, _ in CRASH_RUNS:
        script = os.path.join(home, "crash.sh")
        write_script(script, crash=True)
        if tool == "sup":
            pids[key] = sup_daemon_pid(home)
            argvs[key] = ([SUP, "start", script, "--name", "crash", *flags], sup_env(home), home)
        else:
            pids[key] = pm2_daemon_pid(home)
            argvs[key] = ([PM2, "start", script, "--name", "crash", *flags], pm2_env(home), home)
    time.sleep(2.0)

    log(f"crash loop: {CRASH_S:.0f} s, {len(CRASH_RUNS)} daemons in the same window")
    c0 = {k: cpu_sample(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    procs = {k: subprocess.Popen(a, cwd=home, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (a, env, home) in argvs.items()}
    cli_s = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=60)
        cli_s[k] = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"crash loop {k}: start failed ({p.returncode}): {err.strip()[:500]}")
    time.sleep(max(0.0, t0 + CRASH_S - time.perf_counter()))
    c1 = {k: cpu_sample(p) for k, p in pids.items()}
    res = {}
    for key, tool, home, flags, label in CRASH_RUNS:  # sup first: its lists are quick
        status, restarts = crash_app_state(tool, home)
        d = cpu_delta(c0[key], c1[key])
        d.update(status=status, restarts=restarts, label=label, cli_s=cli_s[key],
                 ms_per_restart=(d["sched_ms"] / restarts) if restarts else None)
        res[key] = d
        log(f"crash loop {label}: {restarts} restarts, status {status}, daemon CPU "
            f"{d['sched_ms']:.2f} ms ({d['sched_pct']:.4f} %)")
    # The variant daemons are not needed any more.
    run([SUP, "kill"], env=sup_env(SUP_HOME_BM1), check=False)
    run([PM2, "kill"], env=pm2_env(PM2_HOME_EXP), check=False)
    return res


# ---------------------------------------------------------------- report


def fmt_ms(v):
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def fmt_s(v):
    return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"


def fmt_mib(kib):
    return f"{kib / 1024:.2f} MiB"


def fmt_pct(v):
    return f"{v:.3f} %"


def ratio(a, b):
    if b in (0, None) or a is None:
        return "n/a"
    r = a / b
    return f"{r:.3f}×" if r < 0.1 else f"{r:.2f}×"


def met(key, sup_val):
    label, ok = TARGETS[key]
    return f"{'yes' if ok(sup_val) else '**no**'} ({label})"


def version(argv):
    try:
        return run(argv, check=False).stdout.strip().splitlines()[-1]
    except Exception:
        return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only-crash", action="store_true",
                    help="run only the crash-loop phase and print its figures (for trying it out)")
    args = ap.parse_args()

    started = datetime.datetime.now()
    load0 = os.getloadavg()
    build = sup_build_info(SUP)
    for h in (SUP_HOME, PM2_HOME):
        write_script(os.path.join(h, "x.sh"))
    if os.path.exists(os.path.join(SUP_HOME, "sup.sock")):
        raise RuntimeError("SUP_HOME already has a daemon socket; need a cold daemon")
    if args.only_crash:
        run([SUP, "start", os.path.join(SUP_HOME, "x.sh"), "--name", "warm"], cwd=SUP_HOME)
        run([PM2, "ping"])
        print(json.dumps(crash_loop(), indent=1))
        return

    # 1. start 100 apps from a cold daemon
    log(f"starting {N_APPS} apps under sup (cold daemon)")
    st_sup = start_many("sup", os.path.join(SUP_HOME, "x.sh"))
    ping = run([SUP, "ping"]).stdout.strip()
    spid = sup_daemon_pid()
    if f"pid {spid}" not in ping:
        log(f"warning: daemon.lock says {spid} but ping says: {ping}")
    log(f"starting {N_APPS} apps under PM2 (cold daemon)")
    st_pm2 = start_many("pm2", os.path.join(PM2_HOME, "x.sh"))
    ppid = pm2_daemon_pid()

    # 2. list latency with 100 apps (extra)
    list100 = list_latency(f"{N_APPS} apps")

    # 3. idle CPU + memory, both daemons in the same window
    time.sleep(2.0)
    mem0 = {"sup": mem_kib(spid), "pm2": mem_kib(ppid)}
    log(f"idle CPU window: {IDLE_S:.0f} s, both daemons at once")
    c0 = {"sup": cpu_sample(spid), "pm2": cpu_sample(ppid)}
    time.sleep(IDLE_S)
    c1 = {"sup": cpu_sample(spid), "pm2": cpu_sample(ppid)}
    mem1 = {"sup": mem_kib(spid), "pm2": mem_kib(ppid)}
    cpu = {t: cpu_delta(c0[t], c1[t]) for t in c0}
    log(f"idle CPU: sup {cpu['sup']['sched_pct']:.4f} %, pm2 {cpu['pm2']['sched_pct']:.4f} %; "
        f"RSS sup {mem1['sup']['rss_kib']} KiB, pm2 {mem1['pm2']['rss_kib']} KiB")
    n_sup = sum(1 for a in sup_list() if a[1] == "online")
    n_pm2 = sum(1 for a in pm2_list() if a[1] == "online")

    # 4. down to 20 apps, list latency
    extra = [f"a{i}" for i in range(N_LIST_APPS + 1, N_APPS + 1)]
    for n in extra:
        run([SUP, "delete", n])
    run([PM2, "delete", *extra])
    assert len(sup_list()) == N_LIST_APPS, "sup: expected 20 apps after delete"
    assert len(pm2_list()) == N_LIST_APPS, "pm2: expected 20 apps after delete"
    list20 = list_latency(f"{N_LIST_APPS} apps")

    # 5. restart latency after kill -9
    log(f"restart latency: {N_KILLS} kill -9 each, {KILL_GAP_S} s apart")
    rs = restart_latency()

    # 6. crash loop, every app of the earlier phases deleted first
    cr = crash_loop()

    # daemon log check
    log_lines = []
    for h in (SUP_HOME, SUP_HOME_BM1):
        try:
            with open(os.path.join(h, "daemon.log")) as f:
                log_lines += [l.rstrip() for l in f if " WARN " in l or " ERROR " in l]
        except OSError:
            pass

    # ------------------------------------------------------------ table
    L = list20
    rows = [
        ("`list` wall time, 20 apps, median (`sup list` vs `pm2 jlist`)",
         fmt_ms(L["sup"]["median"]), fmt_ms(L["pm2"]["median"]),
         ratio(L["sup"]["median"], L["pm2"]["median"]), met("list", L["sup"]["median"])),
        ("`list` wall time, 20 apps, p95",
         fmt_ms(L["sup"]["p95"]), fmt_ms(L["pm2"]["p95"]), ratio(L["sup"]["p95"], L["pm2"]["p95"]), "—"),
        ("`list` wall time, 100 apps, median (extra)",
         fmt_ms(list100["sup"]["median"]), fmt_ms(list100["pm2"]["median"]),
         ratio(list100["sup"]["median"], list100["pm2"]["median"]), "—"),
        ("Daemon RSS (VmRSS), 100 apps",
         fmt_mib(mem1["sup"]["rss_kib"]), fmt_mib(mem1["pm2"]["rss_kib"]),
         ratio(mem1["sup"]["rss_kib"], mem1["pm2"]["rss_kib"]), met("rss", mem1["sup"]["rss_kib"] / 1024)),
        ("Daemon PSS (smaps_rollup), 100 apps",
         fmt_mib(mem1["sup"]["pss_kib"]), fmt_mib(mem1["pm2"]["pss_kib"]),
         ratio(mem1["sup"]["pss_kib"], mem1["pm2"]["pss_kib"]), "—"),
        ("Restart after `kill -9`, p50",
         fmt_ms(rs["sup"]["median"]), fmt_ms(rs["pm2"]["median"]),
         ratio(rs["sup"]["median"], rs["pm2"]["median"]), met("restart", rs["sup"]["median"])),
        ("Restart after `kill -9`, p95",
         fmt_ms(rs["sup"]["p95"]), fmt_ms(rs["pm2"]["p95"]), ratio(rs["sup"]["p95"], rs["pm2"]["p95"]), "—"),
        ("Start 100 apps, cold daemon, until all online",
         fmt_s(st_sup["total_s"]), fmt_s(st_pm2["total_s"]),
         ratio(st_sup["total_s"], st_pm2["total_s"]), met("start", st_sup["total_s"])),
        ("… of which the 100 `start` CLI calls",
         fmt_s(st_sup["calls_s"]), fmt_s(st_pm2["calls_s"]), ratio(st_sup["calls_s"], st_pm2["calls_s"]), "—"),
        ("Daemon CPU idle, 100 apps, 30 s (schedstat, % of one core)",
         fmt_pct(cpu["sup"]["sched_pct"]), fmt_pct(cpu["pm2"]["sched_pct"]),
         ratio(cpu["sup"]["sched_pct"], cpu["pm2"]["sched_pct"]), met("cpu", cpu["sup"]["sched_pct"])),
        ("Daemon CPU idle, 100 apps, 30 s (utime+stime)",
         fmt_pct(cpu["sup"]["stat_pct"]), fmt_pct(cpu["pm2"]["stat_pct"]),
         ratio(cpu["sup"]["stat_pct"], cpu["pm2"]["stat_pct"]), "—"),
        (f"Daemon CPU, crash loop (`exit 1`), {CRASH_S:.0f} s, defaults (schedstat, % of one core)",
         fmt_pct(cr["sup"]["sched_pct"]), fmt_pct(cr["pm2"]["sched_pct"]),
         ratio(cr["sup"]["sched_pct"], cr["pm2"]["sched_pct"]), "—"),
        (f"… restarts in those {CRASH_S:.0f} s (defaults)",
         f"{cr['sup']['restarts']}", f"{cr['pm2']['restarts']} (then {cr['pm2']['status']})", "—", "—"),
        ("Daemon CPU per restart, crash loop (sup `--backoff-max 1s`, PM2 `--exp-backoff-restart-delay=100`)",
         fmt_ms(cr["sup_bm1"]["ms_per_restart"]), fmt_ms(cr["pm2_exp"]["ms_per_restart"]),
         ratio(cr["sup_bm1"]["ms_per_restart"], cr["pm2_exp"]["ms_per_restart"]), "—"),
    ]

    out = []
    out.append(f"# Core benchmark: sup vs PM2 — {started:%Y-%m-%d %H:%M}")
    out.append("")
    out.append(f"- machine: {platform.node()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
               f"load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}")
    out.append(f"- sup: `{version([SUP, '--version'])}` ({SUP}, {build}); "
               f"PM2 {version([PM2, '--version'])} on node {version(['node', '--version'])}; "
               f"list timing by {L['tool']}")
    out.append("")
    out.append("| figure | sup | PM2 | ratio (sup ÷ PM2) | target met? |")
    out.append("| --- | --- | --- | --- | --- |")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    out.append("")
    out.append(f"Crash loop: one app `#!/bin/bash` / `exit 1` per daemon, four daemons (own homes) in the "
               f"same {CRASH_S:.0f} s window, which opens right before the `start` calls:")
    out.append("")
    out.append("| run | restarts in the window | status at the end | daemon CPU (schedstat) | % of one core "
               "| CPU per restart | utime+stime ticks |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    for key, _, _, _, label in CRASH_RUNS:
        c = cr[key]
        per = fmt_ms(c["ms_per_restart"]) if c["ms_per_restart"] is not None else "n/a"
        out.append(f"| {label} | {c['restarts']} | {c['status']} | {c['sched_ms']:.2f} ms | "
                   f"{fmt_pct(c['sched_pct'])} | {per} | {c['ticks']} |")
    out.append("")
    out.append("Notes:")
    out.append(f"- Lower is better everywhere; a ratio below 1 means sup is smaller/faster. Targets apply to sup.")
    out.append(f"- `list`: whole CLI process wall time, {LIST_RUNS} runs after 3 warm-ups; "
               f"min/max sup {L['sup']['min']:.2f}/{L['sup']['max']:.2f} ms, "
               f"PM2 {L['pm2']['min']:.2f}/{L['pm2']['max']:.2f} ms.")
    out.append(f"- Memory: the daemon process only (sup pid {spid}, PM2 God Daemon pid {ppid}), sampled at "
               f"the end of the idle window; at its start RSS was sup {fmt_mib(mem0['sup']['rss_kib'])}, "
               f"PM2 {fmt_mib(mem0['pm2']['rss_kib'])}. Apps: `exec sleep 100000` bash scripts.")
    out.append(f"- Restart: {N_KILLS} `kill -9` per supervisor, interleaved, {KILL_GAP_S} s apart; time from "
               f"`kill` until the app's pid file holds a new pid (includes bash starting the script); "
               f"sup defaults, PM2 `--restart-delay 0`. 20 other apps running. Failures: sup "
               f"{rs['failures']['sup']}, PM2 {rs['failures']['pm2']}; restart counters afterwards: sup "
               f"{rs['restart_counts']['sup']}, PM2 {rs['restart_counts']['pm2']}.")
    out.append(f"- Start 100: measured from a **cold daemon** (no daemon running; includes daemon boot), "
               f"100 separate `start x.sh --name aN` calls, then polling `sup list --json` / `pm2 jlist` "
               f"until all 100 are online (end time = end of the successful poll). sup ran first, then PM2.")
    out.append(f"- Idle CPU: both daemons measured in the same {cpu['sup']['wall_s']:.1f} s window with "
               f"{n_sup} (sup) / {n_pm2} (PM2) apps online; schedstat summed over the daemon's threads "
               f"(sup {cpu['sup']['threads']}, PM2 {cpu['pm2']['threads']}): sup {cpu['sup']['sched_ms']:.2f} ms, "
               f"PM2 {cpu['pm2']['sched_ms']:.2f} ms on CPU; utime+stime ticks: sup {cpu['sup']['ticks']}, "
               f"PM2 {cpu['pm2']['ticks']} (tick = {1000 // os.sysconf('SC_CLK_TCK')} ms).")
    out.append(f"- Crash loop: runs after every app of the earlier phases was deleted (sup and PM2 main "
               f"daemons, now with no other app), plus one fresh daemon each for the variants "
               f"(booted before the window). Restarts = restarts actually performed in the window: PM2's "
               f"`restart_time`; sup's `restarts` minus the pending one when the app is `waiting-restart` "
               f"(sup counts a restart when it schedules it). CPU per restart = daemon CPU in the window ÷ "
               f"restarts; it includes handling the `start` request and, for PM2, its idle cost (see the idle "
               f"row); the time a forked child spends before `exec` is charged to the child, not the daemon. "
               f"sup defaults: first restart at once, then 100 ms doubling up to 30 s; PM2 defaults: no delay, "
               f"`errored` after 16 unstable (< 1 s) runs; PM2 exp-backoff: 100 ms × 1.5 per restart up to 15 s.")
    if log_lines:
        out.append(f"- sup daemon.log had {len(log_lines)} WARN/ERROR line(s), first: `{log_lines[0][:200]}`")
    else:
        out.append("- sup daemon.log: no WARN/ERROR lines.")
    out.append(f"- Total benchmark time: {(datetime.datetime.now() - started).total_seconds():.0f} s.")
    text = "\n".join(out) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
