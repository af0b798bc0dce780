#!/bin/bash
# Apply Prometheus Operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule) to the running cluster. cc2crd.py
# derives them from the pydantic models of PyPI cloudcoil-models-prometheus-operator (operator v0.80.1), which
# .ci/install-helm.sh installs into the project's venv: an approximation of the upstream CRDs (types, enums,
# patterns, required fields; no defaults, no printer columns). Cached in $H/crds.yaml.
# env: PYTHON (default <repo>/.venv/bin/python)
. "$(dirname "$0")/common.sh"
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
Y=$H/crds.yaml
if [ ! -s "$Y" ]; then "$PYTHON" "$D/cc2crd.py" >"$Y.tmp" && mv "$Y.tmp" "$Y"; fi
kubectl apply -f "$Y"
kubectl wait --for condition=established --timeout=60s \
  crd/servicemonitors.monitoring.coreos.com crd/podmonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com
step "Prometheus Operator CRDs established"
