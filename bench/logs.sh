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
source bench/lib.sh
resolve_sup_bin
command -v pm2 >/dev/null || npm install -g pm2 >&2
ROUNDS="${ROUNDS:-3}"

WORK="$(mktemp -d /tmp/suplogbench.XXXX)"
export SUP_HOME="$WORK/sup" PM2_HOME="$WORK/pm2"
cleanup() {
  "$SUP_BIN" kill >/dev/null 2>&1 || true
  pm2 kill >/dev/null 2>&1 || true
  # Keep the daemons' own logs if something looked wrong.
  mkdir -p "$ROOT/bench/results"
  if [[ -f "$SUP_HOME/daemon.log" ]] && grep -qE ' (WARN|ERROR) ' "$SUP_HOME/daemon.log"; then
    cp "$SUP_HOME/daemon.log" "$ROOT/bench/results/logs-last-sup-daemon.log"
    echo "[bench] sup daemon.log had WARN/ERROR lines; copied to bench/results/logs-last-sup-daemon.log" >&2
  fi
  if [[ -f "$PM2_HOME/pm2.log" ]] && grep -qiE 'error' "$PM2_HOME/pm2.log"; then
    cp "$PM2_HOME/pm2.log" "$ROOT/bench/results/logs-last-pm2.log"
    echo "[bench] pm2.log mentions errors; copied to bench/results/logs-last-pm2.log" >&2
  fi
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
printf '#!/bin/bash\nexec sleep 100000\n' > "$WORK/warm.sh"
chmod +x "$WORK/warm.sh"

echo "- machine: $(nproc) CPUs, Linux $(uname -r), load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- sup: $("$SUP_BIN" --version) ($SUP_BIN, built $(date -r "$SUP_BIN" '+%Y-%m-%d %H:%M'), git HEAD $(git rev-parse --short HEAD 2>/dev/null || echo '?')); PM2 $(pm2 --version 2>/dev/null | tail -1) on node $(node --version)"
echo

# Start both daemons first: the figure is capture, not daemon boot.
"$SUP_BIN" start "sleep 100000" --name warm >/dev/null
pm2 start "$WORK/warm.sh" --name warm >/dev/null 2>&1
pm2 delete warm >/dev/null 2>&1

python3 - "$SUP_BIN" "$WORK" "$LINES" "$ROUNDS" <<'PY'
import os, subprocess, sys, time, statistics, glob

sup, work, lines, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
gen = os.path.join(work, "gen.sh")

def wait_size(path_fn, size, deadline=120, stall=5):
    """Time when the files hold `size` bytes; None if that never happens
    (deadline passed, or no byte arrived for `stall` seconds: lines lost)."""
    end = time.monotonic() + deadline
    last_total, last_change = -1, time.monotonic()
    while time.monotonic() < end:
        total = sum(os.path.getsize(p) for p in path_fn() if os.path.exists(p))
        now = time.monotonic()
        if total >= size:
            return now
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > stall:
            return None
        time.sleep(0.002)
    return None

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
    n, bad = count([out], 0)
    if bad:
        print(f"[bench] floor round {i}: {bad} malformed lines", file=sys.stderr)
    os.remove(out)
    return t, lines - n

def sup_round(i):
    name = f"gen{i}"
    logs = os.path.join(work, "sup", "logs")
    files = lambda: sorted(glob.glob(os.path.join(logs, f"{name}-out.log*")))
    t0 = time.monotonic()
    subprocess.run([sup, "start", gen, "--name", name, "--restart", "no", "--log-max-size", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    done = wait_size(files, lines * 130)   # 29-byte timestamp + space + 100
    t = done - t0 if done else float("nan")
    n, bad = count(files(), 30)
    if bad:
        print(f"[bench] sup round {i}: {bad} malformed lines", file=sys.stderr)
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
    done = wait_size(files, lines * 100)
    t = done - t0 if done else float("nan")
    n, bad = count(files(), 0)
    if bad:
        print(f"[bench] pm2 round {i}: {bad} malformed lines", file=sys.stderr)
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
for key, label in [("floor", "floor: `seq > file`"), ("sup", "sup (timestamps on)"), ("pm2", "PM2 (fork mode)")]:
    ts = [t for t, _ in results[key]]
    if any(t != t for t in ts):   # a round timed out (lines never all arrived)
        lost = max(l for _, l in results[key])
        print(f"| {label} | timed out in {sum(t != t for t in ts)} of {len(ts)} rounds | — | {lost} | — |")
        continue
    med = statistics.median(ts)
    lost = max(l for _, l in results[key])
    print(f"| {label} | {med:.2f} | {mb/med:.0f} | {lost} | {fl/med*100:.0f} % |")
print()
print(f"rounds: {rounds}; lines lost per round: " + "; ".join(f"{k}: " + ", ".join(str(l) for _, l in v) for k, v in results.items()))
print(f"all times (s): " + "; ".join(f"{k}: " + ", ".join((f'{t:.2f}' if t == t else 'timed out') for t, _ in v) for k, v in results.items()))
PY
