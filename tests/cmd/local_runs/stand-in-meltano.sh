#!/usr/bin/env bash
# A stand-in for `meltano` in the local-run cases: `ok` prints three lines, `fail` exits 3.
set -u
case "${1:-}" in
  install) exit 0 ;;
  run) job="${2:-}" ;;
  *) echo "unexpected arguments: $*" >&2; exit 64 ;;
esac
case "$job" in
  ok) for i in 1 2 3; do echo "line $i"; done ;;
  fail) echo "something broke" >&2; exit 3 ;;
  *) echo "unknown job $job" >&2; exit 65 ;;
esac
