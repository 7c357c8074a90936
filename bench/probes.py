#!/usr/bin/env python3
"""The daemon's cost of HTTP liveness probes: N idle apps, each probed over
HTTP every second (all at one keep-alive capable Node server, so only the
daemon's side differs between runs), daemon CPU over a window.

    bench/probes.py SUP [SUP2 ...] [--apps 100] [--window 20]

Every binary is measured in turn, in one run; each gets a fresh SUP_HOME.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import build_info, cpu_delta, cpu_sample  # noqa: E402
from ownership import sup  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(binary, port, apps, window):
    tmp = tempfile.mkdtemp()
    home = os.path.join(tmp, "home")
    os.makedirs(home)
    conf = os.path.join(tmp, "sup.toml")
    with open(conf, "w") as f:
        for i in range(apps):
            f.write(f'[[app]]\nname = "p{i}"\nscript = "/bin/sleep"\nargs = ["100000"]\n'
                    f'[app.health]\ninterval_ms = 1000\nliveness = {{ kind = "http", url = "http://127.0.0.1:{port}/health" }}\n\n')
    try:
        sup(binary, home, "start", conf)
        daemon = int(open(os.path.join(home, "daemon.lock")).read().strip())
        time.sleep(5)
        before = cpu_sample(daemon)
        time.sleep(window)
        d = cpu_delta(before, cpu_sample(daemon))
        probes = apps * window
        return d["pct"], d["sched_ms"] * 1000 / probes
    finally:
        sup(binary, home, "kill", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sups", nargs="+")
    p.add_argument("--apps", type=int, default=100)
    p.add_argument("--window", type=float, default=20)
    a = p.parse_args()
    port = free_port()
    server = subprocess.Popen(["node", os.path.join(ROOT, "examples", "app.js")],
                              env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        for binary in a.sups:
            pct, us = measure(binary, port, a.apps, a.window)
            print(f"{build_info(binary)}: {a.apps} apps probed every 1 s, {a.window:.0f} s: "
                  f"daemon CPU {pct:.2f} % of a core, {us:.0f} µs per probe")
    finally:
        server.kill()


main()
