#!/bin/bash
# After control-plane.sh: kube-controller-manager, kube-scheduler, a private containerd (own socket and root under $RUN),
# a CNI bridge with no traffic off the machine, and a kubelet registered as node "localhost" (called by up.sh).
. "$(dirname "$0")/common.sh"
KC=$KUBECONFIG; mkdir -p "$CD" "$RUN/cni/net.d" "$RUN/kubelet"
# what down.sh may remove or restore: only what did not exist before
{ echo "IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)"
  for p in /var/log/pods /var/log/containers /var/lib/kubelet /run/containerd; do [ -e $p ] || echo "NEW+=($p)"; done
  [ -n "$(ls -d /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods 2>/dev/null)" ] || echo "NEW_KUBEPODS=1"; } >"$RUN/node.before"

start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$KC" --authentication-kubeconfig="$KC" \
  --authorization-kubeconfig="$KC" --bind-address=127.0.0.1 --secure-port=10257 --port=0 --leader-elect=false \
  --service-account-private-key-file="$RUN/pki/sa.key" --root-ca-file="$RUN/pki/serving/apiserver.crt" \
  --use-service-account-credentials=false --controllers='*,-nodeipam'
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$KC" --authentication-kubeconfig="$KC" \
  --authorization-kubeconfig="$KC" --bind-address=127.0.0.1 --secure-port=10259 --port=0 --leader-elect=false

cat >"$CD/config.toml" <<C
version = 2
root = "$CD/root"
state = "$CD/state"
[grpc]
  address = "$CD/containerd.sock"
[ttrpc]
  address = "$CD/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CD/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s-live.local/pause:3.4"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # without CAP_SYS_RESOURCE runc cannot set a negative oom_score_adj ("Permission denied"): clamp to containerd's own
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$RUN/cni/net.d"
C
cat >"$RUN/cni/net.d/10-k8s-live.conflist" <<N
{"cniVersion": "0.4.0", "name": "$CNI_NET", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "dataDir": "$RUN/cni/ipam"}},
  {"type": "loopback"}]}
N
# pods reach each other and this host over the bridge; nothing is forwarded to or from elsewhere
for r in "-i $BRIDGE ! -o $BRIDGE" "-o $BRIDGE ! -i $BRIDGE"; do
  iptables -C FORWARD $r -m comment --comment k8s-live -j DROP 2>/dev/null || iptables -I FORWARD 1 $r -m comment --comment k8s-live -j DROP
done

start containerd containerd --config "$CD/config.toml"
for _ in $(seq 100); do [ -S "$CD/containerd.sock" ] && break; sleep 0.1; done
"$D/load-image.sh" "$BIN/pause.tar" >/dev/null
step "containerd $(containerd --version | cut -d' ' -f3) up, sandbox image loaded"

cat >"$RUN/kubelet/config.yaml" <<K
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
makeIPTablesUtilChains: false
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
K
# --oom-score-adj=0: the kubelet's default -999 is refused here (no CAP_SYS_RESOURCE)
start kubelet "$BIN/kubelet" --config="$RUN/kubelet/config.yaml" --kubeconfig="$KC" --hostname-override=localhost \
  --container-runtime=remote --container-runtime-endpoint="unix://$CD/containerd.sock" \
  --oom-score-adj=0 --root-dir="$RUN/kubelet/root" --cert-dir="$RUN/kubelet/pki"
ready() { [ "$(kubectl get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]; }
for _ in $(seq 240); do ready && break; alive kubelet || break; sleep 0.5; done
ready || { echo "node not Ready:" >&2; tail -20 "$LOG/kubelet.log" >&2; exit 1; }
for _ in $(seq 60); do kubectl get sa default >/dev/null 2>&1 && break; sleep 0.5; done   # pods need it
step "node localhost Ready (pods get $POD_CIDR on bridge $BRIDGE)"
