#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs lint and the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k poller).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# The system pip (23.x) trips on some packages' metadata: upgrade it inside the venv first.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

# Real tools the tests drive (Prometheus/promtool, Grafana's schema, Helm, Docker): each script is
# idempotent and fails loudly when an install fails.
for installer in .ci/install-*.sh; do
  [ -e "$installer" ] || continue
  echo "== $installer"
  bash "$installer"
done
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  export LETTA_EXPORTER_DOCKER_TESTS=${LETTA_EXPORTER_DOCKER_TESTS:-1}
fi

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== tests"
exec .venv/bin/pytest "$@"
