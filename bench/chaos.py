#!/usr/bin/env python3
"""Chaos run for bench/chaos.sh: many apps, random SIGKILLs of apps and of
the daemon, random bytes and malformed frames on the socket; then checks
that sup put everything back.

Expects SUP_BIN (the binary) and SUP_HOME (a fresh, empty home); chaos.sh
sets them and cleans up. Python 3 standard library only.

During the run, every step picks one of (seeded, so a run can be repeated):
  - SIGKILL a random app's process (its pid from `sup list --json`),
  - send garbage on the socket: random bytes, a header announcing more than
    the limit, a header then too few bytes, a valid header around invalid
    JSON, JSON of the wrong shape, a header cut short,
  - now and then (only in the first two thirds of the run, so the last
    daemon lives through the rest), SIGKILL the daemon; the next CLI call
    starts a new one, which finds the state file and restores the apps.

At the end, after up to SETTLE_S for things to settle, it checks:
  - every app is online;
  - exactly one process per instance carries each app's SUP_APP_ID tag (in
    /proc/*/environ), and it is the pid `sup list` shows;
  - exactly one daemon serves the home, and nothing else carries its tag;
  - no zombie children of the daemon (and no zombie carrying the tag);
  - the daemon's fd count and RSS are flat: the last daemon at the end vs
    the first daemon once all apps were first online (fds equal within
    FD_TOLERANCE, RSS within RSS_TOLERANCE), and the last daemon at the end
    vs itself once it had restored the apps.
"""
import argparse
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time

SETTLE_S = 60
FD_TOLERANCE = 2
RSS_TOLERANCE = 1.25  # end RSS <= start RSS * this + RSS_SLACK_KB
RSS_SLACK_KB = 2048
MAX_FRAME = 4 * 1024 * 1024

SUP = os.environ["SUP_BIN"]
HOME = os.environ["SUP_HOME"]
APP = os.path.join(os.path.dirname(HOME), "app.sh")


def sup(*args, check=True):
    """Runs `sup ARGS`; returns stdout."""
    out = subprocess.run([SUP, *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode != 0:
        raise RuntimeError(f"sup {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def apps():
    """`sup list --json`, or [] when the CLI fails (the daemon just died)."""
    try:
        return json.loads(sup("list", "--json"))
    except (RuntimeError, ValueError, subprocess.TimeoutExpired):
        return []


def daemon_pid():
    try:
        with open(os.path.join(HOME, "daemon.lock")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def proc_stat(pid):
    """(state, ppid) of pid, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[1])
    except (OSError, IndexError, ValueError):
        return None


def tagged():
    """pid -> environ dict, for every process carrying SUP_HOME=HOME."""
    needle = f"SUP_HOME={HOME}".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            found[int(name)] = dict(kv.decode(errors="replace").split("=", 1) for kv in env if b"=" in kv)
    return found


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0")]
    except OSError:
        return []


def in_my_session(pid):
    """Whether pid belongs to this harness's session (chaos.sh, tee, this
    script: they carry SUP_HOME too; the daemon and its apps run in
    sessions of their own)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[3]) == os.getsid(0)
    except (OSError, IndexError, ValueError):
        return False


def fds_and_rss(pid):
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return fds, rss


def wait_all_online(n, deadline_s):
    """Waits until `sup list` shows n apps, all online; returns the list (or the last seen)."""
    end = time.monotonic() + deadline_s
    last = []
    while time.monotonic() < end:
        last = apps()
        if len(last) == n and all(a["status"] == "online" for a in last):
            return last, True
        time.sleep(0.25)
    return last, False


def garbage(rng):
    """One piece of socket garbage: (kind, bytes)."""
    kind = rng.choice(["random", "oversize", "short-body", "bad-json", "wrong-shape", "cut-header"])
    if kind == "random":
        data = rng.randbytes(rng.randint(1, 4096))
    elif kind == "oversize":
        data = struct.pack(">I", MAX_FRAME + rng.randint(1, 1 << 30)) + rng.randbytes(16)
    elif kind == "short-body":
        data = struct.pack(">I", rng.randint(100, 100_000)) + rng.randbytes(rng.randint(0, 99))
    elif kind == "bad-json":
        body = rng.choice([b"{", b"not json", b'{"proto":1,"request":', rng.randbytes(64)])
        data = struct.pack(">I", len(body)) + body
    elif kind == "wrong-shape":
        body = json.dumps(rng.choice([
            {"proto": 1, "request": {"type": "no-such-request"}},
            {"proto": 1},
            [1, 2, 3],
            {"proto": "one", "request": {"type": "list"}},
            {"proto": 1, "request": {"type": "start", "data": {"name": 7}}},
        ])).encode()
        data = struct.pack(">I", len(body)) + body
    else:
        data = struct.pack(">I", 10)[: rng.randint(1, 3)]
    return kind, data


def send_garbage(rng):
    kind, data = garbage(rng)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(os.path.join(HOME, "sup.sock"))
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(65536)
            except OSError:
                pass
        return kind, True
    except OSError:
        return kind, False  # no daemon right now (just killed): not sent


def instance_pids(app):
    """The pids of an app's running instances."""
    return [i["pid"] for i in app.get("instances", []) if i.get("pid")] or ([app["pid"]] if app.get("pid") else [])


def kill_random_app(rng, names):
    """SIGKILLs one random instance of one random app; True when one was killed."""
    name = rng.choice(names)
    for a in apps():
        pids = instance_pids(a) if a["name"] == name else []
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                return True
            except OSError:
                return False
    return False


def start_apps(n, instances):
    with open(APP, "w") as f:
        f.write('#!/bin/sh\necho "started $$"\nexec sleep 1000000\n')
    os.chmod(APP, 0o755)
    names = [f"c{i}" for i in range(n)]
    for name in names:
        sup("start", APP, "--name", name, "--backoff-max", "5s", "-i", str(instances))
    return names


def chaos(args, rng, names):
    stats = {"app_kills": 0, "daemon_kills": 0, "garbage_sent": 0, "garbage_kinds": {},
             "restore_s": [], "restore_failures": 0, "last_start": None}
    start = time.monotonic()
    end = start + args.minutes * 60
    daemon_window = start + args.minutes * 60 * 2 / 3
    next_daemon_kill = start + rng.uniform(10, 40)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_daemon_kill and now < daemon_window:
            pid = daemon_pid()
            if pid:
                os.kill(pid, signal.SIGKILL)
                stats["daemon_kills"] += 1
            next_daemon_kill = now + rng.uniform(15, 45)
            # The next CLI call starts a new daemon, which restores the apps;
            # the chaos pauses until it has, to take the new daemon's figures.
            _, ok = wait_all_online(len(names), SETTLE_S)
            stats["restore_s"].append(round(time.monotonic() - now, 2))
            if not ok:
                stats["restore_failures"] += 1
            time.sleep(1)
            stats["last_start"] = fds_and_rss(daemon_pid())
            continue
        if rng.random() < 0.6:
            if kill_random_app(rng, names):
                stats["app_kills"] += 1
        else:
            kind, sent = send_garbage(rng)
            if sent:
                stats["garbage_sent"] += 1
                stats["garbage_kinds"][kind] = stats["garbage_kinds"].get(kind, 0) + 1
        time.sleep(rng.uniform(0.02, 0.15))
    stats["elapsed_s"] = round(time.monotonic() - start, 1)
    return stats


def zombies(daemon, tags):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[0] == "Z" and (st[1] == daemon or int(name) in tags):
            out.append(int(name))
    return out


def final_checks(names, instances, baseline, last_start):
    checks = []
    listed, online = wait_all_online(len(names), SETTLE_S)
    checks.append(("every app online", online, f"{sum(a['status'] == 'online' for a in listed)}/{len(names)} online"))
    time.sleep(1)  # let a restart in flight finish spawning before counting processes
    daemon = daemon_pid()
    tags = tagged()
    others = [p for p, env in tags.items() if "SUP_APP_ID" not in env and not in_my_session(p)]
    daemons = [p for p in others if cmdline(p)[1:2] == ["daemon"]]
    strays = [p for p in others if p not in daemons]
    checks.append(("exactly one daemon, nothing else tagged", daemons == [daemon] and not strays,
                   f"daemons {daemons} (lock: {daemon}), other tagged processes {strays}"))
    by_id = {}
    for pid, env in tags.items():
        if "SUP_APP_ID" in env:
            by_id.setdefault(env["SUP_APP_ID"], []).append(pid)
    listed = apps()
    wrong = []
    for a in listed:
        pids = sorted(by_id.pop(str(a["id"]), []))
        if pids != sorted(instance_pids(a)) or len(pids) != instances:
            wrong.append(f"{a['name']}: list says {instance_pids(a)}, tagged {pids}")
    wrong += [f"id {i} not listed: {p}" for i, p in by_id.items()]
    checks.append(("exactly one process per instance", not wrong,
                   "; ".join(wrong[:5]) or f"{len(listed)} apps, {instances} process(es) each"))
    zs = zombies(daemon, tags)
    if zs:
        time.sleep(2)
        zs = zombies(daemon, tags)
    checks.append(("no zombies", not zs, f"zombies: {zs}"))
    end = fds_and_rss(daemon)
    for label, (fds0, rss0) in (("first daemon after first start", baseline), ("last daemon after its restore", last_start)):
        # A leak grows the count; it may shrink, since the log writer
        # closes the files of apps quiet for 10 s.
        ok = end[0] <= fds0 + FD_TOLERANCE
        checks.append((f"fds not grown vs {label}", ok, f"{fds0} -> {end[0]}"))
        ok = end[1] <= rss0 * RSS_TOLERANCE + RSS_SLACK_KB
        checks.append((f"RSS flat vs {label}", ok, f"{rss0 / 1024:.1f} -> {end[1] / 1024:.1f} MiB"))
    return checks, end


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--apps", type=int, default=50)
    p.add_argument("--minutes", type=float, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--instances", type=int, default=1, help="instances per app (-i)")
    args = p.parse_args()
    rng = random.Random(args.seed)

    names = start_apps(args.apps, args.instances)
    _, ok = wait_all_online(args.apps, SETTLE_S)
    if not ok:
        sys.exit("the apps did not all come online at the start")
    time.sleep(2)
    first = daemon_pid()
    baseline = fds_and_rss(first)

    stats = chaos(args, rng, names)

    last_start = stats["last_start"] or baseline
    checks, end = final_checks(names, args.instances, baseline, last_start)
    checks.append(("every daemon kill restored all apps", stats["restore_failures"] == 0,
                   f"{stats['daemon_kills'] - stats['restore_failures']}/{stats['daemon_kills']}"))
    last = daemon_pid()

    passed = all(ok for _, ok, _ in checks)
    print(f"chaos: {args.apps} apps x {args.instances} instance(s), {args.minutes} min (seed {args.seed}), {stats['elapsed_s']} s of chaos")
    print(f"  app kills (SIGKILL): {stats['app_kills']}")
    print(f"  daemon kills (SIGKILL): {stats['daemon_kills']}, all apps back after {stats['restore_s']} s")
    print(f"  first daemon: pid {first}, {baseline[0]} fds, {baseline[1] / 1024:.1f} MiB RSS with every app online")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats["garbage_kinds"].items()))
    print(f"  socket garbage sent: {stats['garbage_sent']} ({kinds})")
    print(f"  daemon at the end: pid {last}, {end[0]} fds, {end[1] / 1024:.1f} MiB RSS")
    for name, ok, detail in checks:
        print(f"  {'PASS' if ok else 'FAIL'} {name}: {detail}")
    print("chaos: all checks passed" if passed else "chaos: SOME CHECKS FAILED")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
