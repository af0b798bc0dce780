# Shared settings for the .ci/k8s scripts (sourced, not run). Adapted from a recipe that builds a
# real Kubernetes v1.20.2 (the only Kubernetes source any reachable registry carries: Debian
# bookworm's `kubernetes` source package) and runs it on 127.0.0.1 with a one-node kubelet.
set -euo pipefail
D=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)                # this directory
REPO=$(cd "$D/../.." && pwd)
H=${LETTA_EXPORTER_K8S_HOME:-/var/tmp/letta-exporter-k8s}     # all state lives here
BIN=$H/bin          # cached binaries: kube-*, kubelet, kubectl, pause.tar (kept between runs)
RUN=$H/run          # one cluster's state: pki, etcd, kubeconfig, pids, containerd and kubelet roots
LOG=$H/log          # daemon logs (kept after down.sh)
CD=$RUN/containerd
K8S_VERSION=v1.20.2
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
BRIDGE=k8slive0 POD_CIDR=10.244.77.0/24 CNI_NET=k8s-live
export KUBECONFIG=$RUN/kubeconfig PATH=$BIN:$PATH
T0=${T0:-$(date +%s%N)}; export T0
step() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[k8s %4d.%ds] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"; }
# running PID: exists and is not a zombie
running() { local s; s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${s:0:1}" != Z ]; }
alive() { [ -f "$RUN/$1.pid" ] && running "$(cat "$RUN/$1.pid")"; }
# stop NAME: TERM the pid recorded in $RUN/NAME.pid, KILL after 5s
stop() {
  local f=$RUN/$1.pid pid; [ -f "$f" ] || return 0; pid=$(cat "$f")
  if running "$pid"; then
    kill "$pid"; for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    if running "$pid"; then kill -9 "$pid"; echo "killed $1 ($pid)"; else echo "stopped $1 ($pid)"; fi
  fi
  rm -f "$f"
}
# start NAME CMD...: run a daemon in the background, log to $LOG/NAME.log, record its pid
start() { local n=$1; shift; "$@" >"$LOG/$n.log" 2>&1 & echo $! >"$RUN/$n.pid"; }
# the Debian packages the cluster needs at run time (command or file -> package)
runtime_packages() {
  local p=()
  has() { command -v "$1" >/dev/null || [ -e "$1" ] || p+=("$2"); }
  has etcd etcd-server; has openssl openssl; has curl curl; has containerd containerd; has runc runc
  has /usr/lib/cni/bridge containernetworking-plugins; has iptables iptables; has ip iproute2; has jq jq
  echo "${p[@]}"
}
