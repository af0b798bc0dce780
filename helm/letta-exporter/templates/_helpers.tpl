{{/*
Helpers. Those that the container and sidecar templates use take a context
`dict "root" <top-level context> "values" <this chart's values>` instead of `.`, so that a parent
chart can call them with its own top-level context and this chart's values
(`index .Values "letta-exporter"`). The chart name is fixed here (not `.Chart.Name`), because in a
parent chart `.Chart` is the parent's.
*/}}

{{- define "letta-exporter.name" -}}
{{- default "letta-exporter" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name from a ctx (dict "root" "values"). */}}
{{- define "letta-exporter.fullnameFor" -}}
{{- $v := .values -}}
{{- if $v.fullnameOverride }}
{{- $v.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "letta-exporter" $v.nameOverride }}
{{- if contains $name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "letta-exporter.fullname" -}}
{{- include "letta-exporter.fullnameFor" (dict "root" . "values" .Values) }}
{{- end }}

{{- define "letta-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "letta-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "letta-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "letta-exporter.labels" -}}
helm.sh/chart: {{ include "letta-exporter.chart" . }}
{{ include "letta-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: letta-exporter
{{- end }}

{{- define "letta-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "letta-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The exporter version this chart release deploys by default. Equal to appVersion in Chart.yaml
(a test keeps them equal); needed because a parent chart rendering the sidecar templates has its
own .Chart.
*/}}
{{- define "letta-exporter.appVersion" -}}0.1.0{{- end }}

{{/* ctx -> image reference */}}
{{- define "letta-exporter.image" -}}
{{- $img := .values.image -}}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository (default (include "letta-exporter.appVersion" .) $img.tag | toString) }}
{{- end }}
{{- end }}

{{/* ctx -> name of the Secret holding the API key ("" when there is none) */}}
{{- define "letta-exporter.secretName" -}}
{{- if .values.letta.existingSecret }}
{{- .values.letta.existingSecret }}
{{- else if .values.letta.apiKey }}
{{- include "letta-exporter.fullnameFor" . }}
{{- end }}
{{- end }}

{{/* ctx -> name of the state PersistentVolumeClaim */}}
{{- define "letta-exporter.claimName" -}}
{{- default (printf "%s-state" (include "letta-exporter.fullnameFor" .)) .values.state.persistence.existingClaim }}
{{- end }}

{{/*
Whether a prometheus-operator object is rendered: (list <enabled setting> <root> <kind>).
"auto" renders when the cluster serves monitoring.coreos.com/v1/<kind>; true always; false never.
Outputs "true" or nothing.
*/}}
{{- define "letta-exporter.monitoringEnabled" -}}
{{- $setting := index . 0 -}}
{{- $root := index . 1 -}}
{{- $kind := index . 2 -}}
{{- if eq (toString $setting) "auto" -}}
{{- if $root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) }}true{{ end -}}
{{- else if eq (toString $setting) "true" -}}
true
{{- end -}}
{{- end }}

{{/* Checks that fail the render with a message naming the values to fix. */}}
{{- define "letta-exporter.validate" -}}
{{- if and .Values.letta.apiKey .Values.letta.existingSecret }}
{{- fail "letta.apiKey and letta.existingSecret are mutually exclusive: set one of them" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (include "letta-exporter.monitoringEnabled" (list .Values.podMonitor.enabled . "PodMonitor")) (not .Values.sidecar.podSelector) }}
{{- fail "mode=sidecar with podMonitor enabled needs sidecar.podSelector: the labels of the pod the exporter runs in" }}
{{- end }}
{{- if and (eq .Values.mode "deployment") .Values.sidecar.native }}
{{- fail "sidecar.native applies to mode=sidecar only" }}
{{- end }}
{{- if and .Values.state.persistence.enabled (gt (int .Values.replicaCount) 1) (not .Values.state.persistence.existingClaim) }}
{{- fail "state.persistence with replicaCount > 1: each replica needs its own state; keep replicaCount at 1" }}
{{- end }}
{{- end }}

{{/*
Name of a dashboard ConfigMap: (list <root> <dashboard slug>). Unique per release AND namespace:
when dashboards.namespace gathers them from several namespaces, the release's namespace is part of
the name, so same-named releases in two namespaces do not claim each other's ConfigMaps. A name
longer than 63 characters is cut and ends in a hash of the full one, which keeps it unique.
*/}}
{{- define "letta-exporter.dashboardName" -}}
{{- $root := index . 0 -}}
{{- $prefix := include "letta-exporter.fullname" $root -}}
{{- $ns := $root.Values.dashboards.namespace -}}
{{- if and $ns (ne $ns $root.Release.Namespace) -}}
{{- $prefix = printf "%s-%s" $prefix $root.Release.Namespace -}}
{{- end -}}
{{- $name := printf "%s-dashboard-%s" $prefix (index . 1) -}}
{{- if gt (len $name) 63 -}}
{{- $name = printf "%s-%s" ($name | trunc 54 | trimSuffix "-") ($name | sha256sum | trunc 8) -}}
{{- end -}}
{{- $name -}}
{{- end }}
