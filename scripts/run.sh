#!/usr/bin/env bash
# Sets up a venv and runs the exporter. With no Letta configured (no LETTA_BASE_URL, LETTA_API_KEY or
# LETTA_API_KEY_FILE) it runs the demo: a built-in Letta simulator plus the exporter polling it, with
# metrics at http://localhost:8284/metrics. Extra arguments go to letta-exporter.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh

if [ -z "${LETTA_BASE_URL:-}${LETTA_API_KEY:-}${LETTA_API_KEY_FILE:-}" ]; then
  exec .venv/bin/letta-exporter demo "$@"
fi
exec .venv/bin/letta-exporter "$@"
