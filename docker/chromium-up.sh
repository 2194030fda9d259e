#!/usr/bin/env bash
# Make sure a headless Chromium is installed (the report test renders `lem results report` in it). No-op when one
# is on PATH; otherwise, as root (CI runs as root on a bare machine), install Debian's `chromium` package.
set -euo pipefail
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "chromium-up: $name already installed"
    exit 0
  fi
done
if [ "$(id -u)" != 0 ]; then
  echo "chromium-up: no chromium and not root: install it (apt-get install chromium) or the report test is skipped" >&2
  exit 0
fi
echo "chromium-up: installing Debian's chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
