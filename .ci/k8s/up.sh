#!/bin/bash
# Start the cluster: etcd + kube-apiserver on 127.0.0.1, then controller-manager, scheduler, a private
# containerd, a CNI bridge and a kubelet (node "localhost"); returns once the node is Ready.
# The binaries come from .ci/install-k8s.sh (run it first). Warm start: about 20 s.
# Afterwards:  export KUBECONFIG=$LETTA_EXPORTER_K8S_HOME/run/kubeconfig PATH=$LETTA_EXPORTER_K8S_HOME/bin:$PATH
. "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || { echo "up.sh: run as root" >&2; exit 1; }
alive kube-apiserver && { echo "already running (KUBECONFIG=$KUBECONFIG); run down.sh first" >&2; exit 1; }
[ -d "$RUN" ] && "$D/down.sh" >/dev/null   # leftovers of a run that was not taken down
for b in "${COMPONENTS[@]}" pause.tar; do
  [ -s "$BIN/$b" ] || { echo "up.sh: $BIN/$b missing: run .ci/install-k8s.sh" >&2; exit 1; }
done
read -r -a pkgs <<<"$(runtime_packages)"
[ "${#pkgs[@]}" = 0 ] || { echo "up.sh: packages missing (${pkgs[*]}): run .ci/install-k8s.sh" >&2; exit 1; }
mkdir -p "$RUN" "$LOG"; : >"$RUN/started"
"$D/control-plane.sh"
"$D/node.sh"
step "up: export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH"
