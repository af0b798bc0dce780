#!/usr/bin/env python3
"""Derive CustomResourceDefinitions (apiextensions.k8s.io/v1, structural schemas) for ServiceMonitor,
PodMonitor and PrometheusRule from the pydantic models in PyPI's cloudcoil-models-prometheus-operator.
An approximation of the upstream CRDs (types, enums, patterns, required fields; no defaults), for
when the real YAML can't be downloaded. Writes them to stdout as YAML."""

import sys

import yaml
from cloudcoil.models.prometheus_operator import v1

KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PodMonitor": "podmonitors",
    "PrometheusRule": "prometheusrules",
}


def convert(schema):
    defs = schema.get("$defs", {})

    def conv(s, seen=()):
        if "$ref" in s:
            name = s["$ref"].split("/")[-1]
            if name in seen:
                return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            base = conv(defs[name], (*seen, name))
            extra = {k: v for k, v in s.items() if k in ("description",)}
            return {**base, **extra}
        out = {}
        if "anyOf" in s:
            alts = [a for a in s["anyOf"] if a.get("type") != "null"]
            types = sorted({a.get("type") for a in alts if "type" in a})
            if len(alts) == 1:
                out = conv(alts[0], seen)
            elif set(types) == {"integer", "string"}:
                out = {"x-kubernetes-int-or-string": True}
            else:
                out = {"x-kubernetes-preserve-unknown-fields": True}
            if "description" in s:
                out["description"] = s["description"]
            return out
        t = s.get("type")
        if t == "object" or "properties" in s:
            out["type"] = "object"
            if "properties" in s:
                out["properties"] = {k: conv(v, seen) for k, v in s["properties"].items()}
                req = [r for r in s.get("required", [])]
                if req:
                    out["required"] = req
            elif isinstance(s.get("additionalProperties"), dict):
                out["additionalProperties"] = conv(s["additionalProperties"], seen)
            else:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif t == "array":
            out = {
                "type": "array",
                "items": conv(s.get("items", {}), seen)
                if s.get("items")
                else {"x-kubernetes-preserve-unknown-fields": True},
            }
        elif t in ("string", "integer", "number", "boolean"):
            out["type"] = t
            for k in ("enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "format"):
                if k in s:
                    out[k] = s[k]
            if "const" in s:
                out["enum"] = [s["const"]]
        elif not s:
            out = {"x-kubernetes-preserve-unknown-fields": True}
        if "description" in s:
            out["description"] = s["description"]
        return out

    return conv(schema)


docs = []
for kind, plural in KINDS.items():
    model = getattr(v1, kind)
    root = convert(model.model_json_schema(by_alias=True))
    props = root.get("properties", {})
    for k in ("apiVersion", "kind"):
        props[k] = {"type": "string"}
    props["metadata"] = {"type": "object"}
    root["required"] = [r for r in root.get("required", []) if r not in ("apiVersion", "kind", "metadata")]
    if not root["required"]:
        root.pop("required")
    docs.append(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": f"{plural}.monitoring.coreos.com",
                "annotations": {"letta-exporter.ci/derived-from": "cloudcoil-models-prometheus-operator"},
            },
            "spec": {
                "group": "monitoring.coreos.com",
                "scope": "Namespaced",
                "names": {
                    "kind": kind,
                    "listKind": kind + "List",
                    "plural": plural,
                    "singular": kind.lower(),
                },
                "versions": [
                    {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": root}}
                ],
            },
        }
    )
yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
