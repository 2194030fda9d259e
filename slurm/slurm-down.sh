#!/usr/bin/env bash
# Stop the daemons slurm-up.sh started (listed in /run/lem-slurm/started), each by its pidfile, newest first.
# Daemons it found already running are left alone. Packages stay installed.
set -uo pipefail
STATE=/run/lem-slurm
[ -f "$STATE/started" ] || { echo "slurm-down: nothing started by slurm-up"; exit 0; }
for pf in $(tac "$STATE/started"); do
  [ -f "$pf" ] || continue
  pid=$(cat "$pf")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && { echo "slurm-down: pid $pid ($pf) still alive, sending KILL"; kill -9 "$pid"; }
    echo "slurm-down: stopped $pf ($pid)"
  fi
  rm -f "$pf"
done
rm -f "$STATE/started"
