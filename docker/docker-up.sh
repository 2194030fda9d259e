#!/usr/bin/env bash
# Make sure a Docker engine answers. No-op when one already does; otherwise install Debian's engine (if missing)
# and start our own dockerd in the background, recording its pid so `docker-down.sh` stops only that one.
set -euo pipefail
state_dir="${LEM_DOCKERD_DIR:-$(pwd)/.cache/dockerd}"

if docker info >/dev/null 2>&1; then
  echo "docker-up: an engine already answers"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "docker-up: no Docker engine and not root: install Docker (https://docs.docker.com/engine/install/)" >&2
    exit 1
  fi
  echo "docker-up: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

mkdir -p "$state_dir"
echo "docker-up: starting dockerd (log: $state_dir/dockerd.log)"
setsid dockerd >"$state_dir/dockerd.log" 2>&1 < /dev/null &
echo $! >"$state_dir/dockerd.pid"

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker-up: engine ready ($(docker info --format '{{.ServerVersion}} {{.Driver}}'))"
    exit 0
  fi
  sleep 1
done
echo "docker-up: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 "$state_dir/dockerd.log" >&2
exit 1
