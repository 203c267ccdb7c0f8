#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs the project from requirements.lock (exact pins),
# with the dev stack (devstack/: local services and `flows stack`, never in the image).
# Idempotent: a second call only re-checks the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'

say() { echo "bootstrap: $*"; }
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.lock-sha256
want=$(sha256sum requirements.lock pyproject.toml devstack/pyproject.toml \
  examples/shop_customers/pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing $(grep -c '==' requirements.lock) pinned packages of requirements.lock" \
    "(dlt, Prefect, DuckDB, ...; 2-3 minutes on a fresh machine)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
  say "installing flows, devstack (the local stack) and the example package (editable)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  # dev tooling: the tests' PostgreSQL and SeaweedFS launchers, `flows stack` (a plugin)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e devstack
  # the example package whose pipeline is declared by an entry point (tests/integration)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
    -e examples/shop_customers
  echo "$want" > "$stamp"
else
  say ".venv is up to date with requirements.lock"
fi
say "checking the installed packages' dependencies"
.venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check; exit 1; }
echo "bootstrap: $(.venv/bin/flows --version), $(.venv/bin/python -c 'import dlt, prefect; print(f"dlt {dlt.__version__}, prefect {prefect.__version__}")')"
