#!/usr/bin/env bash
# Prepare a Docker engine for the image tests (tests/test_docker.py, marker `docker`).
#
# Idempotent; every step that fails stops the script with a non-zero exit:
#   1. apt-get install docker.io and debootstrap (only when missing);
#   2. start dockerd in the background with --iptables=false --bridge=none (only when no engine
#      answers); containers then run with `--network host`. Under scripts/test.sh
#      (LETTA_EXPORTER_PID_DIR set) its pid goes to $LETTA_EXPORTER_PID_DIR/dockerd.pid and the
#      script stops it on exit; run alone, it is left running and the log says how to stop it;
#   3. build the stand-in base image that the Dockerfile pins (python:3.11-slim-bookworm), because
#      registry images cannot be pulled here: a Debian bookworm root made with debootstrap (its
#      python3 is 3.11) and loaded with `docker import`. It carries this machine's CA bundle and
#      PIP_CERT so that pip inside `docker build` trusts the same certificates as the host does.
#
# Environment: LETTA_EXPORTER_BASE_IMAGE (default python:3.11-slim-bookworm),
#              DOCKERD_LOG (default /tmp/letta-exporter-dockerd.log).
set -euo pipefail

BASE_IMAGE="${LETTA_EXPORTER_BASE_IMAGE:-python:3.11-slim-bookworm}"
SUITE="${LETTA_EXPORTER_BASE_SUITE:-bookworm}"
DOCKERD_LOG="${DOCKERD_LOG:-/tmp/letta-exporter-dockerd.log}"

log() { printf '[install-docker] %s\n' "$*" >&2; }
die() { printf '[install-docker] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get, dockerd, debootstrap)"

# --- 1. packages --------------------------------------------------------------------------------
need=()
dpkg-query -W -f='${Status}' docker.io 2>/dev/null | grep -q 'install ok installed' || need+=(docker.io)
dpkg-query -W -f='${Status}' debootstrap 2>/dev/null | grep -q 'install ok installed' || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -q || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
        || die "apt-get install ${need[*]} failed"
fi
command -v dockerd >/dev/null || die "dockerd not found after installing docker.io"
command -v docker >/dev/null || die "docker client not found after installing docker.io"
command -v debootstrap >/dev/null || die "debootstrap not found after installing it"

# --- 2. engine ----------------------------------------------------------------------------------
if docker info >/dev/null 2>&1; then
    log "docker engine already answering"
else
    log "starting dockerd (log: $DOCKERD_LOG)"
    setsid nohup dockerd --iptables=false --bridge=none >"$DOCKERD_LOG" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd did not come up within 60 s"
    fi
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] || die "dockerd is up but wrote no /var/run/docker.pid"
    if [ -n "${LETTA_EXPORTER_PID_DIR:-}" ]; then
        echo "$pid" >"$LETTA_EXPORTER_PID_DIR/dockerd.pid"
        log "dockerd is up (pid $pid); scripts/test.sh stops it when it ends"
    else
        log "dockerd is up (pid $pid) and stays running: stop it with 'kill $pid'"
    fi
fi

# --- 3. stand-in base image ---------------------------------------------------------------------
if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE already present"
    exit 0
fi

mirror="$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="$(awk '$1 == "deb" && $3 == "'"$SUITE"'" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$(mktemp -d /tmp/letta-exporter-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
log "debootstrap $SUITE from $mirror into $rootfs (a few minutes)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$rootfs" "$mirror" >"$rootfs.debootstrap.log" 2>&1 \
    || { tail -n 30 "$rootfs.debootstrap.log" >&2; die "debootstrap failed"; }
rm -f "$rootfs.debootstrap.log"

# Make it look like the official image where the Dockerfile cares: `python`/`pip` on PATH,
# pip usable outside a venv, no apt caches. Trust the host's CA bundle (TLS is intercepted here).
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
fi
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
py_version="$(chroot "$rootfs" /usr/bin/python3 -c 'import platform; print(platform.python_version())')" \
    || die "python3 does not run in the debootstrapped root"

log "importing $rootfs as $BASE_IMAGE (python $py_version)"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "ENV PYTHON_VERSION=$py_version" \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'LABEL org.opencontainers.image.description="stand-in for the official python slim image, built by .ci/install-docker.sh"' \
    --change 'CMD ["python3"]' \
    - "$BASE_IMAGE" >/dev/null || die "docker import failed"
docker image inspect "$BASE_IMAGE" >/dev/null || die "$BASE_IMAGE missing after docker import"
log "base image $BASE_IMAGE ready"
