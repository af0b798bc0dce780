#!/bin/bash
# Import image tarballs (docker-archive as from `docker save`, or OCI layout) into the kubelet's containerd
# (namespace k8s.io).  usage: load-image.sh IMAGE.tar...  Pods then need imagePullPolicy IfNotPresent or Never:
# nothing is pulled.
. "$(dirname "$0")/common.sh"
[ $# -gt 0 ] || { echo "usage: $0 IMAGE.tar..." >&2; exit 2; }
[ -S "$CD/containerd.sock" ] || { echo "containerd not running: start the cluster with up.sh" >&2; exit 1; }
for img in "$@"; do ctr --address "$CD/containerd.sock" -n k8s.io images import "$img"; done
