#!/usr/bin/env bash
# The whole test suite: installs what it needs (Python lock, PostgreSQL, redis, SeaweedFS,
# helm and kubectl, checkov in its own venv, docker, a local base image, a registry binary),
# then lint, types and pytest against real services.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
scripts/install-services.sh
scripts/install-helm.sh
scripts/install-checkov.sh
scripts/install-docker.sh
scripts/make-base-image.sh
scripts/install-registry.sh
.venv/bin/ruff check flows devstack tests
.venv/bin/ruff format --check flows devstack tests
.venv/bin/mypy
exec .venv/bin/python -m pytest --durations=15 "$@"
