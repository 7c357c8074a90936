#!/usr/bin/env bash
# `sup start FILE` vs `pm2 start FILE` of one ecosystem file with 100 apps,
# in the same run: fresh homes (both daemons start cold), timed from the
# command until all 100 apps are online (`sup list --json` / `pm2 jlist`).
#
#   bench/ecosystem.sh            # uses target/release/sup (built if missing)
#   SUP_BIN=/path/to/sup APPS=100 bench/ecosystem.sh
#
# Each app is `sleep 3600` (interpreter none), so the figure is the
# supervisors' own cost, not the apps' start-up. Needs python3 and pm2.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source bench/lib.sh
resolve_sup_bin
APPS="${APPS:-100}"

WORK="$(mktemp -d /tmp/sup-bench-eco.XXXXXX)"
export SUP_HOME="$WORK/sup" PM2_HOME="$WORK/pm2"
cleanup() {
    "$SUP_BIN" kill >/dev/null 2>&1 || true
    pm2 kill >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 - "$APPS" >"$WORK/ecosystem.config.js" <<'PY'
import json, sys
apps = [{"name": f"app{i}", "script": "/usr/bin/sleep", "args": "3600",
         "interpreter": "none"} for i in range(int(sys.argv[1]))]
print("module.exports = " + json.dumps({"apps": apps}, indent=1) + ";")
PY

now_ms() { date +%s%3N; }

# Seconds from `$@` until `$count_cmd` reports $APPS online apps.
time_until_online() {
    local count_cmd="$1"; shift
    local start end
    start=$(now_ms)
    "$@" >/dev/null 2>&1
    until [[ "$($count_cmd)" -ge "$APPS" ]]; do
        if (( $(now_ms) - start > 120000 )); then
            echo "[bench] timed out waiting for $APPS apps" >&2; exit 1
        fi
        sleep 0.05
    done
    end=$(now_ms)
    echo $(( end - start ))
}

sup_online() {
    "$SUP_BIN" list --json 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(a["status"]=="online" for a in json.load(sys.stdin)))'
}
pm2_online() {
    pm2 jlist 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(p["pm2_env"]["status"]=="online" for p in json.load(sys.stdin)))'
}

cd "$WORK"
sup_ms=$(time_until_online sup_online "$SUP_BIN" start ecosystem.config.js)
pm2_ms=$(time_until_online pm2_online pm2 start ecosystem.config.js)

echo "| start one ecosystem file, $APPS apps, until all online | sup | PM2 |"
echo "|---|---|---|"
echo "| wall time (cold daemon) | ${sup_ms} ms | ${pm2_ms} ms |"
