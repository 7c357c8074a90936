#!/usr/bin/env bash
# A worker that takes its queue name as an argument:
#   sup start examples/worker.sh --name worker -- --queue high
queue=default
while [ $# -gt 0 ]; do
  case "$1" in
    --queue) queue=$2; shift 2 ;;
    *) shift ;;
  esac
done
trap 'echo "worker: stopping"; exit 0' TERM
echo "worker: consuming queue $queue"
while :; do
  sleep 5 &
  wait $!
  echo "worker: still consuming $queue"
done
