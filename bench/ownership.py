#!/usr/bin/env python3
"""Two sup binaries side by side, in one run: `list` and `list --json` at N
idle apps, daemon CPU over an idle window with 100 apps, and restart
latency (kill -9 -> new pid) with N apps running.

    bench/ownership.py OLD_SUP NEW_SUP [--apps 1000] [--runs 30]

Each binary gets a fresh SUP_HOME; the apps come from one sup.toml. The
figures are medians; run both in the same window since the machine is noisy.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_delta, cpu_sample  # noqa: E402


def sup(binary, home, *args, check=True):
    env = dict(os.environ, SUP_HOME=home)
    return subprocess.run([binary, *args], env=env, capture_output=True, text=True, check=check)


def start_apps(binary, home, n):
    os.makedirs(home, exist_ok=True)
    conf = os.path.join(home, "..", "sup.toml")
    with open(conf, "w") as f:
        for i in range(n):
            f.write(f'[[app]]\nname = "a{i}"\nscript = "/bin/sleep"\nargs = ["100000"]\n\n')
    sup(binary, home, "start", conf)
    deadline = time.time() + 120
    while time.time() < deadline:
        apps = json.loads(sup(binary, home, "list", "--json").stdout)
        if len(apps) == n and all(a["status"] == "online" for a in apps):
            return apps
        time.sleep(0.2)
    raise SystemExit(f"{binary}: {n} apps not online in time")


def timed(binary, home, args, runs):
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        sup(binary, home, *args)
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def children(daemon):
    kids = set()
    for tid in os.listdir(f"/proc/{daemon}/task"):
        with open(f"/proc/{daemon}/task/{tid}/children") as f:
            kids.update(int(p) for p in f.read().split())
    return kids


def restart_p50(binary, home, runs):
    """kill -9 -> the daemon has a new child: /proc/<daemon>/task/*/children
    is read in a tight loop (tens of microseconds a read), so the figure is
    not quantized by CLI round trips."""
    daemon = int(open(os.path.join(home, "daemon.lock")).read().strip())
    samples = []
    for i in range(runs):
        name = f"a{i}"
        old = json.loads(sup(binary, home, "list", "--json").stdout)
        pid = next(a["pid"] for a in old if a["name"] == name)
        before = children(daemon)
        t = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while not (children(daemon) - before - {pid}):
            pass
        samples.append((time.perf_counter() - t) * 1000)
        # The new instance is online before the next sample.
        while not sup(binary, home, "pid", name, check=False).stdout.strip().isdigit():
            time.sleep(0.01)
    return statistics.median(samples)


def idle_cpu(binary, home, seconds):
    daemon = int(open(os.path.join(home, "daemon.lock")).read().strip())
    a = cpu_sample(daemon)
    time.sleep(seconds)
    return cpu_delta(a, cpu_sample(daemon))["pct"]


def measure(binary, n, runs):
    root = tempfile.mkdtemp(prefix="sup-bench-")
    home = os.path.join(root, "home")
    try:
        start_apps(binary, home, n)
        out = {
            "list_ms": timed(binary, home, ["list"], runs),
            "list_json_ms": timed(binary, home, ["list", "--json"], runs),
            "restart_p50_ms": restart_p50(binary, home, 20),
        }
        daemon = int(open(os.path.join(home, "daemon.lock")).read().strip())
        out["rss_mib"] = int(open(f"/proc/{daemon}/status").read().split("VmRSS:")[1].split()[0]) / 1024
        sup(binary, home, "kill")
        start_apps(binary, home, 100)
        out["idle_cpu_pct_100_apps"] = idle_cpu(binary, home, 10)
        tracking = json.loads(sup(binary, home, "list", "--json").stdout)[0].get("tracking") or {}
        out["tracking"] = tracking.get("mode", "tags (no tracking field)")
        sup(binary, home, "kill")
        return out
    finally:
        sup(binary, home, "kill", check=False)
        shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--runs", type=int, default=30)
    a = p.parse_args()
    rows = {}
    for label, binary in (("before", a.old), ("after", a.new)):
        rows[label] = measure(binary, a.apps, a.runs)
    keys = ["tracking", "list_ms", "list_json_ms", "restart_p50_ms", "rss_mib", "idle_cpu_pct_100_apps"]
    print(f"| figure ({a.apps} apps) | before | after |")
    print("| --- | --- | --- |")
    for k in keys:
        b, f = rows["before"][k], rows["after"][k]
        fmt = (lambda v: f"{v:.2f}") if isinstance(b, float) else str
        print(f"| {k} | {fmt(b)} | {fmt(f)} |")


if __name__ == "__main__":
    main()
