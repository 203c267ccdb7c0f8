#!/usr/bin/env bash
# The embedded default end to end: DuckDB, a local state store, no server, no cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/flows demo "$@"
echo
echo "next: put flows on your PATH with 'source .venv/bin/activate', then 'flows --help'"
echo "      (or call .venv/bin/flows); your own project: docs/getting-started.md"
