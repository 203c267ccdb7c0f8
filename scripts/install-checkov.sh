#!/usr/bin/env bash
# Installs checkov (pinned) into its own venv, .tools/checkov-venv: its dependencies clash
# with requirements.lock, and the project's .venv must keep passing `pip check`.
# Idempotent. The chart tests run .tools/checkov-venv/bin/checkov (or $CHECKOV).
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
venv=.tools/checkov-venv
if [ ! -x "$venv/bin/checkov" ] || [ "$("$venv/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
echo "checkov $("$venv/bin/checkov" --version) ($venv/bin/checkov)"
