#!/usr/bin/env bash
# The embedded default end to end: DuckDB, a local state store, no server, no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/flows demo "$@"
