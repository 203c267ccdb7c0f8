#!/usr/bin/env bash
# Installs Debian's docker-registry (the CNCF distribution registry, v2 API) for
# tests/image/test_user_project.py, which runs it as a plain process on 127.0.0.1 so that
# `docker push` of a user's project image is real (Docker treats 127.0.0.0/8 registries as
# insecure by default: no TLS needed). Idempotent; run as root. Does not start a service.
set -euo pipefail

if command -v docker-registry >/dev/null 2>&1; then
  echo "install-registry: $(docker-registry --version)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-registry: docker-registry is missing and this is not root: apt-get install docker-registry" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d or no init system: the package's service is not started, which is what we want
apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
echo "install-registry: $(docker-registry --version)"
