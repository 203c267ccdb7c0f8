#!/usr/bin/env bash
# Builds the local base image flows-base:bookworm (Debian bookworm minbase with python3 3.11,
# python3-venv and ca-certificates) with debootstrap and `docker import`, for machines that
# cannot pull python:3.11-slim-bookworm. Cached: does nothing when the image exists.
#   docker build --build-arg BASE_IMAGE=flows-base:bookworm -f docker/Dockerfile .
# Needs root and a running Docker daemon (scripts/install-docker.sh).
#   BASE_IMAGE_NAME   image to create (default flows-base:bookworm)
#   DEBIAN_MIRROR     mirror for debootstrap (default: the one apt uses here, else deb.debian.org)
set -euo pipefail

name=${BASE_IMAGE_NAME:-flows-base:bookworm}
suite=bookworm

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "make-base-image: $name exists"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  # the mirror this machine's apt is configured with (deb822 or one-line format)
  mirror=$(grep -hoE '^URIs: *[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=$(grep -hoE '^deb +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | grep -v security | head -n1 | awk '{print $2}' || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi

root=$(mktemp -d /var/tmp/flows-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "make-base-image: debootstrap $suite from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Slim it: apt lists and caches, docs and man pages are not needed in an image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
tar -C "$root" --numeric-owner -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$name" >/dev/null
echo "make-base-image: $name built ($(docker image inspect -f '{{.Size}}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
