#!/usr/bin/env bash
# Build the offline base image for the CPU runner variants: a minimal Debian bookworm root made with debootstrap
# from the Debian mirror apt already uses, imported with `docker import`. Needed because no registry can be reached
# here, so `FROM debian` or `FROM python` cannot be pulled. No-op when the image exists.
set -euo pipefail
image="${1:-lem-base:bookworm}"

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base-image: $image already present"
  exit 0
fi

# The Debian mirror apt really uses (its index targets), not a commented-out line of a sources file.
mirror=$(apt-get indextargets --format '$(URI)' 2>/dev/null | grep -m1 '/dists/bookworm/main/' | sed 's#/dists/.*##' || true)
mirror="${LEM_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "base-image: installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap >/dev/null
fi

rootfs=$(mktemp -d /tmp/lem-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base-image: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/bin/bash"]' \
  --change 'LABEL lem.base=debootstrap-bookworm' - "$image" >/dev/null
rm -f "$rootfs.log"
echo "base-image: built $image ($(docker image inspect "$image" --format '{{.Size}}') bytes)"
