#!/usr/bin/env bash
# Makes a Docker daemon answer on this machine (for tests/image/ and local image builds).
# Idempotent, run as root: installs Debian's docker.io when dockerd is missing, starts dockerd
# in the background when `docker info` fails, and waits until it answers.
#   DOCKERD_LOG   where dockerd logs (default /var/log/dockerd.log)
#   DOCKER_WAIT   seconds to wait for the daemon (default 60)
set -euo pipefail

log=${DOCKERD_LOG:-/var/log/dockerd.log}
wait_s=${DOCKER_WAIT:-60}

if docker info >/dev/null 2>&1; then
  echo "install-docker: daemon answers ($(docker version --format '{{.Server.Version}}'))"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-docker: no Docker daemon answers and this is not root: start one, or run me as root" >&2
  exit 1
fi

# A static docker client may be present without a daemon: look for dockerd itself.
if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  # A stale pid file from a dead daemon blocks a new one.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    mkdir -p "$(dirname "$log")"
    echo "install-docker: starting dockerd (log: $log)"
    nohup setsid dockerd >>"$log" 2>&1 </dev/null &
  fi
  deadline=$((SECONDS + wait_s))
  until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "install-docker: dockerd did not answer within ${wait_s}s; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
fi
echo "install-docker: daemon answers ($(docker version --format '{{.Server.Version}}'))"
