#!/usr/bin/env bash
# Prepare a real Kubernetes cluster for tests/test_k8s_live.py (marker `k8s`): Debian packages and
# the cluster binaries, built once per machine and cached. Starts nothing: the test brings the
# cluster up (.ci/k8s/up.sh) and down (.ci/k8s/down.sh) itself.
#
# Idempotent; every failure exits non-zero:
#   1. apt-get install what is missing: etcd, containerd, runc, CNI plugins, iptables, iproute2, jq,
#      and (only while something is left to build) Go, make, gcc, libc6-dev, Debian's reflect2;
#   2. build what $LETTA_EXPORTER_K8S_HOME/bin lacks (default /var/tmp/letta-exporter-k8s/bin):
#      kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl v1.20.2 from
#      Debian bookworm's `kubernetes` source package, and the pod sandbox (pause) image. From an empty
#      cache this took 8.4 min on 2 shared cores (about 4 idle); after that it returns at once.
#
# Needs root, amd64, bookworm apt sources, cgroup v1. Disk: ~3.5 GB ($HOME/build: source + Go cache,
# removable once bin/ is complete; bin/ ~0.5 GB).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/k8s/common.sh"

log() { printf '[install-k8s] %s\n' "$*" >&2; }
die() { printf '[install-k8s] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (apt-get; the kubelet and containerd need root too)"
[ "$(uname -m)" = x86_64 ] || die "amd64 only"
mkdir -p "$BIN" "$LOG"

missing=(); for b in "${COMPONENTS[@]}" pause.tar; do [ -s "$BIN/$b" ] || missing+=("$b"); done

# --- 1. packages --------------------------------------------------------------------------------
read -r -a pkgs <<<"$(runtime_packages)"
if [ "${#missing[@]}" -gt 0 ]; then
  [ -x /usr/lib/go/bin/go ] || pkgs+=(golang-go)
  command -v make >/dev/null || pkgs+=(make)
  command -v gcc >/dev/null || pkgs+=(gcc)
  command -v rsync >/dev/null || pkgs+=(rsync)
  [ -f /usr/lib/x86_64-linux-gnu/libc.a ] || pkgs+=(libc6-dev)
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || pkgs+=(golang-github-modern-go-reflect2-dev)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
  log "installing ${pkgs[*]}"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$LOG/apt.log" \
    || { tail -n 20 "$LOG/apt.log" >&2; die "apt-get install ${pkgs[*]} failed"; }
fi

# --- 2. binaries --------------------------------------------------------------------------------
if [ "${#missing[@]}" -gt 0 ]; then
  log "building ${missing[*]} into $BIN (cold: 4-9 minutes)"
  started=$(date +%s)
  "$D/build.sh" "${missing[@]}" || die "cluster build failed (log: $LOG/build.log)"
  log "built in $(( $(date +%s) - started )) s"
fi
for b in "${COMPONENTS[@]}" pause.tar; do [ -s "$BIN/$b" ] || die "$BIN/$b missing after the build"; done
log "cached: $("$BIN/kube-apiserver" --version), kubectl $("$BIN/kubectl" version --client --short 2>/dev/null \
  || "$BIN/kubectl" version --client | head -1) in $BIN"
