#!/usr/bin/env bash
# A stand-in for the `meltano` executable in fast runner tests. What it does depends on the
# job (or schedule) it is asked to run; it records calls in files beside itself.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
echo "$*" >> "$here/calls"
case "${1:-}" in
  install)
    echo "installing plugins"
    exit 0
    ;;
  run) job="${2:-}" ;;
  schedule) job="${3:-}" ;;
  *) echo "stand-in meltano: unexpected arguments: $*" >&2; exit 64 ;;
esac
echo "environment=${MELTANO_ENVIRONMENT:-}"
case "$job" in
  ok)
    for i in 1 2 3; do echo "line $i"; done
    ;;
  fail)
    echo "something broke" >&2
    exit 3
    ;;
  slow)
    # Slow enough for a reader to see the first lines before the run ends.
    for i in $(seq 1 30); do echo "tick $i"; sleep 0.1; done
    ;;
  hang)
    # A child in the same process group, which a stop must end too.
    sleep 300 &
    echo "$$" > "$here/leader.pid"
    echo "$!" > "$here/child.pid"
    echo "waiting"
    wait
    ;;
  flood)
    # Many lines at once, for measuring log ingestion.
    seq 1 "${FLOOD_LINES:-100000}"
    ;;
  secret)
    echo "secret=${HELLO_SECRET:-unset}"
    ;;
  *)
    echo "ran $job"
    ;;
esac
