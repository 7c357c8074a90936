#!/usr/bin/env python3
"""The web listener's costs at N idle apps: `/metrics` and `/api/apps`
latency (median and p90 of fresh-connection GETs, as Prometheus and the
dashboard make them), and the daemon's CPU over an idle window with the
listener on and nobody connected.

    bench/web.py SUP [--apps 1000] [--requests 50] [--idle 10]
"""
import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import build_info, cpu_delta, cpu_sample  # noqa: E402
from ownership import start_apps, sup  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_ms(port, path):
    t = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    assert r.status == 200, (path, r.status)
    return (time.perf_counter() - t) * 1000, len(body)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("sup")
    p.add_argument("--apps", type=int, default=1000)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--idle", type=float, default=10)
    a = p.parse_args()
    tmp = tempfile.mkdtemp()
    home = os.path.join(tmp, "home")
    try:
        start_apps(a.sup, home, a.apps)
        port = free_port()
        sup(a.sup, home, "web", "--listen", f"127.0.0.1:{port}")
        daemon = int(open(os.path.join(home, "daemon.lock")).read().strip())
        print(f"sup {build_info(a.sup)}, {a.apps} idle apps")
        for path in ("/metrics", "/api/apps"):
            get_ms(port, path)
            times, size = [], 0
            for _ in range(a.requests):
                ms, size = get_ms(port, path)
                times.append(ms)
            times.sort()
            print(f"{path:10} median {statistics.median(times):.2f} ms, p90 {times[int(len(times) * 0.9)]:.2f} ms, {size / 1024:.0f} KiB")
        time.sleep(1)
        before = cpu_sample(daemon)
        time.sleep(a.idle)
        idle = cpu_delta(before, cpu_sample(daemon))
        print(f"idle with the listener on, nobody connected, {a.idle:.0f} s: "
              f"{idle['sched_ms']:.2f} ms CPU ({idle['pct']:.3f} % of a core)")
    finally:
        sup(a.sup, home, "kill", check=False)
        shutil.rmtree(tmp, ignore_errors=True)


main()
