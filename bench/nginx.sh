#!/usr/bin/env bash
# nginx in front of a Node app (examples/app.js), four clients of steady load,
# while the app is killed, restarted and reloaded once a second: sup vs PM2
# (fork mode and cluster mode ×2) side by side in one run, plus the bare app
# (no supervisor) as the throughput reference, plus the sup daemon's CPU with
# 100 apps probed over HTTP every second.
#
#   bench/nginx.sh                    # uses target/release/sup (built if missing)
#   SUP_BIN=/path/to/sup bench/nginx.sh
#   PHASE_S=5 STEADY_S=3 CPU_WINDOW_S=5 bench/nginx.sh   # a quick try (results not comparable)
#   BENCH_PROFILE=node-cluster bench/nginx.sh   # what runs behind nginx: see bench/cluster.sh
#
# nginx runs from a temporary prefix as the current user (never as the system
# service), with bench/nginx.conf; see bench/nginx_measure.py for what each
# figure is. Prints a Markdown table and writes it to
# bench/results/nginx-<date>.md. Takes about 6.5 minutes. Needs bash, python3,
# node; installs nginx (apt) and PM2 (npm) when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source bench/lib.sh
resolve_sup_bin

if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
    echo "[bench] installing nginx" >&2
    { apt-get update && apt-get install -y nginx; } >&2
fi
export PATH="$PATH:/usr/sbin"
if ! command -v pm2 >/dev/null 2>&1; then
    echo "[bench] installing PM2" >&2
    npm install -g pm2 >&2
fi

if [[ "${BENCH_PROFILE:-}" == python ]] && ! python3 -c 'import gunicorn' 2>/dev/null; then
    echo "[bench] installing gunicorn" >&2
    python3 -m pip install gunicorn >&2
fi

WORK="$(mktemp -d /tmp/supnginx.XXXX)"
SUP_HOME="$WORK/sup"
PM2_HOME_FORK="$WORK/pm2-fork"
PM2_HOME_CLUSTER="$WORK/pm2-cluster"
mkdir -p "$SUP_HOME" "$PM2_HOME_FORK" "$PM2_HOME_CLUSTER"
export ROOT WORK SUP_BIN SUP_HOME PM2_HOME_FORK PM2_HOME_CLUSTER
unset PM2_HOME

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    # Our load generator / measurement process, if we are interrupted.
    [[ -n "${MEASURE_PID:-}" ]] && kill "$MEASURE_PID" 2>/dev/null && wait "$MEASURE_PID" 2>/dev/null
    # sup daemons: the main one and those of the CPU measurement (homes inside it).
    for home in "$SUP_HOME" "$SUP_HOME/probed" "$SUP_HOME/plain"; do
        [[ -S "$home/sup.sock" ]] && SUP_HOME="$home" "$SUP_BIN" kill >/dev/null 2>&1
    done
    for home in "$PM2_HOME_FORK" "$PM2_HOME_CLUSTER"; do
        [[ -e "$home/rpc.sock" || -e "$home/pm2.pid" ]] && PM2_HOME="$home" pm2 kill >/dev/null 2>&1
    done
    # nginx instances, the bare app and the probe server, by the pids we recorded.
    if [[ -d "$WORK/pids" ]]; then
        for f in "$WORK"/pids/*; do
            [[ -f "$f" ]] || continue
            pid="$(cat "$f")"
            kill -0 "$pid" 2>/dev/null && kill "$pid" 2>/dev/null
        done
        sleep 0.3
        for f in "$WORK"/pids/*; do
            [[ -f "$f" ]] || continue
            pid="$(cat "$f")"
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        done
    fi
    for d in "$WORK"/nginx-*; do
        [[ -f "$d/nginx.pid" ]] && kill "$(cat "$d/nginx.pid")" 2>/dev/null
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/nginx${BENCH_PROFILE:+-$BENCH_PROFILE}-$(date +%Y-%m-%d).md"
python3 "$ROOT/bench/nginx_measure.py" --out "$OUT" "$@" &
MEASURE_PID=$!
wait "$MEASURE_PID"
MEASURE_PID=
echo "[bench] written to ${OUT#$ROOT/}" >&2
