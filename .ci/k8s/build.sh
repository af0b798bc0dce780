#!/bin/bash
# Build what is missing from $BIN (called by install.sh).   usage: build.sh NAME...
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl: Kubernetes v1.20.2 from Debian
#     bookworm's `kubernetes` SOURCE package (its orig tarball carries vendor/), Debian's Go 1.19, upstream make rules
#   pause.tar: the pod sandbox image, pause.c from the same source, static, packed by mkimage.py
. "$(dirname "$0")/common.sh"
B=$H/build SRC=$H/build/src; mkdir -p "$B" "$BIN" "$LOG"
WANT=" $* "
want() { for w in "$@"; do case "$WANT" in *" $w "*) return 0;; esac; done; return 1; }

if [ ! -f "$SRC/.unpacked" ]; then
  # the machine's own Debian mirror (as its apt sources name it); deb-src goes to a private apt state dir
  URIS=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -E '^[[:space:]]*(deb|URIs:)' | grep -oE '[a-z]+://[^] ]+' || true)
  MIRROR=${DEBIAN_MIRROR:-$(echo "$URIS" | grep -E '/debian/?$' | head -1)}; MIRROR=${MIRROR:-$(echo "$URIS" | head -1)}
  [ -n "$MIRROR" ] || { echo "no Debian mirror found in apt sources; set DEBIAN_MIRROR" >&2; exit 1; }
  A=$B/apt; mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
  KR=/usr/share/keyrings/debian-archive-keyring.gpg; [ -f $KR ] && SB="[signed-by=$KR] " || SB=""
  echo "deb-src $SB$MIRROR bookworm main" >"$A/sources.list"
  APTO=(-o APT::Sandbox::User=root -o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts=/nonexistent
        -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache")
  apt-get "${APTO[@]}" update -qq
  (cd "$B" && rm -f kubernetes_* && apt-get "${APTO[@]}" source --download-only -qq kubernetes)
  ls "$B"/kubernetes_*really1.20.2.orig.tar.gz >/dev/null   # Debian's "1.20.5+really1.20.2"
  rm -rf "$SRC"; mkdir -p "$SRC"; tar -xzf "$B"/kubernetes_*.orig.tar.gz -C "$SRC" --strip-components=1
  # vendored reflect2 1.0.1 segfaults when built with Go >= 1.18: use Debian's API-compatible 1.0.2
  R=$SRC/vendor/github.com/modern-go/reflect2 S=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -f "$R"/*.go "$R"/*.s; for f in "$S"/*.go "$S"/*.s; do case $f in *_test.go) ;; *) cp "$f" "$R/";; esac; done
  touch "$SRC/.unpacked"; step "source $(basename "$B"/kubernetes_*.orig.tar.gz) unpacked and patched"
fi

WHAT=""; for c in "${COMPONENTS[@]}"; do want "$c" && WHAT="$WHAT cmd/$c"; done
if [ -n "$WHAT" ]; then
  printf "KUBE_GIT_VERSION='%s'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\nKUBE_GIT_TREE_STATE='clean'\nKUBE_GIT_COMMIT='faecb196815e248d3ecfb03c680a4507229c2a56'\n" "$K8S_VERSION" >"$B/version.env"
  mkdir -p "$B/home"; step "building$WHAT (cold: several minutes; log $LOG/build.log)"
  # the make rules run the code generators, then a GOPATH-mode build against vendor/; Go cache under $SRC/_output
  (cd "$SRC" && env PATH="/usr/lib/go/bin:$PATH" KUBE_GIT_VERSION_FILE="$B/version.env" CGO_ENABLED=0 GOPROXY=off \
     HOME="$B/home" make WHAT="${WHAT# }") >"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
  for c in $WHAT; do cp "$SRC/_output/bin/${c#cmd/}" "$BIN/"; done
  step "built $("$BIN/${WHAT##*/}" --version 2>/dev/null || "$BIN/${WHAT##*/}" version --client 2>/dev/null | head -1)"
fi

if want pause.tar; then
  P=$B/pause-rootfs; mkdir -p "$P"
  gcc -Os -Wall -static -DVERSION=v3.4 -o "$P/pause" "$SRC/build/pause/linux/pause.c"
  python3 "$D/mkimage.py" "$P" "$BIN/pause.tar.tmp" k8s-live.local/pause:3.4 --entrypoint '["/pause"]' >/dev/null
  mv "$BIN/pause.tar.tmp" "$BIN/pause.tar"
  step "sandbox image k8s-live.local/pause:3.4 -> $BIN/pause.tar"
fi
