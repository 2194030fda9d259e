#!/usr/bin/env bash
# Stop the dockerd that docker-up.sh started (by its recorded pid), and nothing else.
set -euo pipefail
pid_file="${LEM_DOCKERD_DIR:-$(pwd)/.cache/dockerd}/dockerd.pid"
[ -f "$pid_file" ] || { echo "docker-down: no dockerd of ours recorded"; exit 0; }
pid=$(cat "$pid_file")
if kill -0 "$pid" 2>/dev/null; then
  kill "$pid"
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
fi
rm -f "$pid_file"
echo "docker-down: stopped dockerd $pid"
