#!/usr/bin/env bash
# Chaos run: many apps under one daemon, random SIGKILLs of apps and of the
# daemon, random bytes and malformed frames on its socket; at the end, every
# app must be online exactly once, with no zombies and the daemon's fds and
# RSS flat. See bench/chaos.py for what is done and checked.
#
#   bench/chaos.sh [--apps N] [--minutes M] [--seed S] [--instances I]    # defaults: 50 apps, 3 min, seed 1, 1 instance
#   SUP_BIN=/path/to/sup bench/chaos.sh ...               # default: target/release/sup (built if missing)
#
# Prints a summary and writes it to bench/results/chaos-<date>.txt. Exit
# status 0 when every check passed. Needs bash and python3 (stdlib only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

source bench/lib.sh
resolve_sup_bin

WORK="$(mktemp -d /tmp/supchaos.XXXX)"
export SUP_HOME="$WORK/home"
cleanup() {
    "$SUP_BIN" kill >/dev/null 2>&1 || true
    if [[ -s "$SUP_HOME/daemon.lock" ]]; then
        kill -9 "$(cat "$SUP_HOME/daemon.lock")" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p bench/results
out="bench/results/chaos-$(date +%Y-%m-%d-%H%M).txt"
status=0
python3 bench/chaos.py "$@" | tee "$out" || status=$?
echo "[chaos] summary written to $out" >&2
exit "$status"
