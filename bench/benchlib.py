"""Shared by the benchmark harnesses: CPU time from /proc, and what the
measured binary was built from."""
import datetime
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_sample(pid):
    """schedstat nanoseconds per thread, plus utime+stime ticks of the whole process."""
    sched = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                sched[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    ticks = int(rest[11]) + int(rest[12])  # fields 14 (utime) and 15 (stime)
    return {"t": time.perf_counter(), "sched": sched, "ticks": ticks}


def cpu_delta(a, b):
    """CPU used between two samples: percent of one core (schedstat and ticks), ms, ticks."""
    wall = b["t"] - a["t"]
    ns = sum(v - a["sched"].get(tid, 0) for tid, v in b["sched"].items())
    ticks = b["ticks"] - a["ticks"]
    hz = os.sysconf("SC_CLK_TCK")
    sched_pct = 100.0 * ns / 1e9 / wall
    return {
        "sched_pct": sched_pct,
        "pct": sched_pct,
        "stat_pct": 100.0 * ticks / hz / wall,
        "sched_ms": ns / 1e6,
        "ms": ns / 1e6,
        "ticks": ticks,
        "wall_s": wall,
        "threads": len(b["sched"]),
    }


def build_info(sup):
    """What the binary `sup` was built from, as far as git and its mtime tell."""
    def git(*args):
        out = subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True)
        return out.stdout.strip()

    src = ["--", "crates", "Cargo.toml", "Cargo.lock"]
    head = git("rev-parse", "--short", "HEAD") or "?"
    last = git("log", "-1", "--format=%h %ct", *src).split()
    dirty = git("status", "--porcelain", *src)
    mtime = os.path.getmtime(sup)
    info = f"built {datetime.datetime.fromtimestamp(mtime):%Y-%m-%d %H:%M}, git HEAD {head} at the start of the run"
    if len(last) == 2 and int(last[1]) > mtime:
        info += f"; **the binary is older than the last source commit {last[0]}**"
    if dirty:
        info += "; uncommitted source changes in the tree"
    return info
