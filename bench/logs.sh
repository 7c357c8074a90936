#!/usr/bin/env bash
# Log capture benchmark: one app prints 1,000,000 lines of 100 bytes as fast
# as it can; time until every line is on disk, and lines lost, for
#   - the floor: the same writer straight into a file (`seq > file`),
#   - sup (timestamps on, its default),
#   - PM2 (fork mode, its default log files),
# in the same run. Daemons are started before the clock starts.
#
#   bench/logs.sh                       # uses target/release/sup (built if missing)
#   SUP_BIN=/path/to/sup ROUNDS=3 bench/logs.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SUP_BIN="${SUP_BIN:-target/release/sup}"
if [[ ! -x "$SUP_BIN" ]]; then cargo build --release; SUP_BIN=target/release/sup; fi
SUP_BIN="$(realpath "$SUP_BIN")"
command -v pm2 >/dev/null || npm install -g pm2 >&2
ROUNDS="${ROUNDS:-3}"

WORK="$(mktemp -d /tmp/suplogbench.XXXX)"
export SUP_HOME="$WORK/sup" PM2_HOME="$WORK/pm2"
cleanup() {
  "$SUP_BIN" kill >/dev/null 2>&1 || true
  pm2 kill >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

LINES=1000000
cat > "$WORK/gen.sh" <<'GEN'
#!/bin/bash
# 1,000,000 lines of exactly 100 bytes: "line-" + 94 digits + newline.
exec seq -f 'line-%094.0f' 1 1000000
GEN
chmod +x "$WORK/gen.sh"

# Start both daemons first: the figure is capture, not daemon boot.
"$SUP_BIN" start "sleep 100000" --name warm >/dev/null
pm2 start "$WORK/gen.sh" --name warm --no-autorestart >/dev/null 2>&1 && pm2 delete warm >/dev/null 2>&1

python3 - "$SUP_BIN" "$WORK" "$LINES" "$ROUNDS" <<'PY'
import os, subprocess, sys, time, statistics, glob

sup, work, lines, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gen = os.path.join(work, "gen.sh")

def wait_size(path_fn, size, deadline=120):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        total = sum(os.path.getsize(p) for p in path_fn() if os.path.exists(p))
        if total >= size:
            return time.monotonic()
        time.sleep(0.002)
    raise SystemExit(f"timed out waiting for {size} bytes")

def count(paths, prefix_len):
    seen, bad = set(), 0
    for p in paths:
        with open(p, "rb") as f:
            for line in f:
                body = line[prefix_len:].rstrip(b"\n")
                if body.startswith(b"line-") and len(body) == 99:
                    seen.add(int(body[5:]))
                else:
                    bad += 1
    return len(seen), bad

def floor(i):
    out = os.path.join(work, f"floor-{i}.log")
    t0 = time.monotonic()
    subprocess.run([gen], stdout=open(out, "wb"), check=True)
    t = time.monotonic() - t0
    n, _ = count([out], 0)
    os.remove(out)
    return t, lines - n

def sup_round(i):
    name = f"gen{i}"
    logs = os.path.join(work, "sup", "logs")
    files = lambda: sorted(glob.glob(os.path.join(logs, f"{name}-out.log*")))
    t0 = time.monotonic()
    subprocess.run([sup, "start", gen, "--name", name, "--restart", "no", "--log-max-size", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    t = wait_size(files, lines * 130) - t0   # 29-byte timestamp + space + 100
    n, bad = count(files(), 30)
    subprocess.run([sup, "delete", name], stdout=subprocess.DEVNULL)
    for f in files():
        os.remove(f)
    return t, lines - n

def pm2_round(i):
    name = f"gen{i}"
    logs = os.path.join(work, "pm2", "logs")
    files = lambda: sorted(glob.glob(os.path.join(logs, f"{name}-out*.log")))
    t0 = time.monotonic()
    subprocess.run(["pm2", "start", gen, "--name", name, "--no-autorestart"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t = wait_size(files, lines * 100, deadline=60) - t0
    except SystemExit:
        t = float("nan")
    n, bad = count(files(), 0)
    subprocess.run(["pm2", "delete", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for f in files():
        os.remove(f)
    return t, lines - n

results = {"floor": [], "sup": [], "pm2": []}
for i in range(rounds):
    # Interleaved, so the machine's noise falls on all three alike.
    results["floor"].append(floor(i))
    results["sup"].append(sup_round(i))
    results["pm2"].append(pm2_round(i))

mb = lines * 100 / 1e6
fl = statistics.median(t for t, _ in results["floor"])
print(f"| writer | median time (s) | MB/s of app output | lines lost (worst round) | throughput vs floor |")
print(f"|---|---|---|---|---|")
for key, label in [("floor", "floor: `seq > file`"), ("sup", "sup (timestamps on)"), ("pm2", "PM2 7 (fork mode)")]:
    ts = [t for t, _ in results[key]]
    med = statistics.median(ts)
    lost = max(l for _, l in results[key])
    print(f"| {label} | {med:.2f} | {mb/med:.0f} | {lost} | {fl/med*100:.0f} % |")
print()
print(f"rounds: {rounds}; all times: " + "; ".join(f"{k}: " + ", ".join(f'{t:.2f}' for t, _ in v) for k, v in results.items()))
PY
