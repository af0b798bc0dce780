#!/usr/bin/env bash
# Installs Debian's `prometheus` package (server + promtool) for the dashboard/rules tests, without
# leaving the packaged service running. Idempotent: does nothing when both binaries are present.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: $(prometheus --version 2>&1 | head -n1) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

# Keep the package's maintainer scripts from starting the daemon (containers without systemd run
# invoke-rc.d, which honours policy-rc.d; exit 101 = "action not allowed").
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" = 1 ]; then
        $SUDO rm -f "$policy"
    fi
}
trap cleanup EXIT

# A third-party list that cannot be fetched should not stop us: the install below fails loudly if
# Debian's package itself is unavailable.
$SUDO apt-get update -qq || echo "install-prometheus: apt-get update reported errors; installing anyway" >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Belt and braces: if a service manager started it anyway, stop it (the tests start their own).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl stop prometheus || true
    $SUDO systemctl disable prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
    $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
# A daemon started by the packaged init script runs as the "prometheus" user from /usr/bin/prometheus.
if pids=$(pgrep -u prometheus -x prometheus 2>/dev/null); then
    for pid in $pids; do
        $SUDO kill "$pid" || true
    done
fi

prometheus --version 2>&1 | head -n1
promtool --version 2>&1 | head -n1
