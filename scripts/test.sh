#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs lint and the whole suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k poller).
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="[test]" source scripts/venv.sh

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
# The live Kubernetes tests need the image too, and the cluster that .ci/install-k8s.sh built.
if [ "${LETTA_EXPORTER_DOCKER_TESTS:-}" = 1 ] && [ -s "${LETTA_EXPORTER_K8S_HOME:-/var/tmp/letta-exporter-k8s}/bin/kubelet" ]; then
  export LETTA_EXPORTER_K8S_TESTS=${LETTA_EXPORTER_K8S_TESTS:-1}
fi

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== tests"
exec .venv/bin/pytest "$@"
