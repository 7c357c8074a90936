#!/usr/bin/env bash
# Cluster mode behind nginx, by one command: bench/nginx.sh's setup (its own
# nginx per supervisor, four clients, kill -9 / restart / reload once a
# second, throughput) run twice:
#   1. BENCH_PROFILE=node-cluster: examples/unmodified.js, a Node app that only
#      calls listen(PORT), 2 instances under sup with no code change (sup's
#      Node preload), against PM2 cluster ×2 and PM2 fork mode;
#   2. BENCH_PROFILE=python: gunicorn (examples/wsgi_app.py), 2 instances × 1
#      worker under sup (gunicorn takes the held socket from LISTEN_FDS),
#      against gunicorn -w 2 under PM2 fork mode.
# Writes bench/results/nginx-node-cluster-<date>.md and nginx-python-<date>.md.
# The same variables as bench/nginx.sh (SUP_BIN, PHASE_S, STEADY_S, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for profile in node-cluster python; do
    BENCH_PROFILE="$profile" bench/nginx.sh "$@"
done
