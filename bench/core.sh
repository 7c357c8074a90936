#!/usr/bin/env bash
# Core benchmark: sup vs PM2, side by side in the same run.
#
#   bench/core.sh                 # uses target/release/sup (built if missing)
#   SUP_BIN=/path/to/sup bench/core.sh
#   bench/core.sh --only-crash    # just the crash-loop phase (prints JSON, writes no file)
#
# Measures (see bench/core_measure.py for the details of each figure):
#   1. time to start 100 apps from a cold daemon (100 CLI calls, until all online)
#   2. daemon RSS / PSS with 100 apps
#   3. daemon CPU over 30 s idle with 100 apps (both daemons measured in the same window)
#   4. `sup list` vs `pm2 jlist` wall time with 20 apps (hyperfine, 30 runs)
#   5. restart latency after kill -9 of an app (30 kills, interleaved sup/PM2)
#   6. daemon CPU during a crash loop (an app that exits 1 at once), 30 s, all
#      other apps deleted: sup and PM2 defaults, plus sup --backoff-max 1s and
#      PM2 --exp-backoff-restart-delay=100 (own homes), all four in one window
#
# Prints a Markdown table and writes it to bench/results/core-<date>.md.
# Takes about 3 minutes. Needs: bash, python3, node/npm (for PM2); installs
# PM2 (npm) and hyperfine (apt) when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source bench/lib.sh
resolve_sup_bin

if ! command -v pm2 >/dev/null 2>&1; then
    echo "[bench] installing PM2" >&2
    npm install -g pm2 >&2
fi
if ! command -v hyperfine >/dev/null 2>&1; then
    echo "[bench] installing hyperfine" >&2
    { apt-get update && apt-get install -y hyperfine; } >&2 || echo "[bench] hyperfine unavailable, falling back to a python timing loop" >&2
fi

SUP_HOME="$(mktemp -d /tmp/supbench.XXXX)"
PM2_HOME="$(mktemp -d /tmp/pm2bench.XXXX)"
export SUP_HOME PM2_HOME SUP_BIN

cleanup() {
    local rc=$?
    set +e
    "$SUP_BIN" kill >/dev/null 2>&1
    pm2 kill >/dev/null 2>&1
    # Daemons of the crash-loop variants (homes inside the main ones), if still up.
    [[ -S "$SUP_HOME/bm1/sup.sock" ]] && SUP_HOME="$SUP_HOME/bm1" "$SUP_BIN" kill >/dev/null 2>&1
    [[ -S "$PM2_HOME/exp/rpc.sock" ]] && PM2_HOME="$PM2_HOME/exp" pm2 kill >/dev/null 2>&1
    # Keep the sup daemon log around if something looked wrong.
    if [[ -f "$SUP_HOME/daemon.log" ]] && grep -qE ' (WARN|ERROR) ' "$SUP_HOME/daemon.log"; then
        mkdir -p "$ROOT/bench/results"
        cp "$SUP_HOME/daemon.log" "$ROOT/bench/results/core-last-daemon.log"
        echo "[bench] sup daemon.log had WARN/ERROR lines; copied to bench/results/core-last-daemon.log" >&2
    fi
    if [[ -f "$SUP_HOME/bm1/daemon.log" ]] && grep -qE ' (WARN|ERROR) ' "$SUP_HOME/bm1/daemon.log"; then
        mkdir -p "$ROOT/bench/results"
        cp "$SUP_HOME/bm1/daemon.log" "$ROOT/bench/results/core-last-daemon-bm1.log"
        echo "[bench] sup (--backoff-max 1s) daemon.log had WARN/ERROR lines; copied to bench/results/core-last-daemon-bm1.log" >&2
    fi
    rm -rf "$SUP_HOME" "$PM2_HOME"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/core-$(date +%Y-%m-%d).md"

# Extra arguments go to core_measure.py (`--only-crash` runs just the crash-loop phase
# and prints its figures without writing the results file).
python3 "$ROOT/bench/core_measure.py" --out "$OUT" "$@"
if [[ $# -eq 0 ]]; then
    echo
    echo "[bench] written to ${OUT#$ROOT/}" >&2
fi
