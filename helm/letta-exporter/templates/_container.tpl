{{/*
The exporter container, its environment and its volumes. The Deployment renders them with this
chart's own context; a parent chart renders them into its pod through the sidecar templates at the
end of this file. Every template here takes a ctx:

  dict "root" $ "values" <this chart's values> ["sidecar" true]

From a parent chart that lists this chart as a dependency named `letta-exporter`:

  {{- $le := dict "root" $ "values" (index .Values "letta-exporter") }}
  initContainers:            # only needed with sidecar.native (Kubernetes 1.29+)
    {{- include "letta-exporter.sidecar.initContainers" $le | nindent 8 }}
  containers:
    - name: letta
      ...
    {{- include "letta-exporter.sidecar.containers" $le | nindent 8 }}
  volumes:
    {{- include "letta-exporter.sidecar.volumes" $le | nindent 8 }}
*/}}

{{- define "letta-exporter.secretMountPath" -}}/etc/letta-exporter/secrets{{- end }}
{{- define "letta-exporter.webMountPath" -}}/etc/letta-exporter/web{{- end }}

{{/* ctx -> list of EnvVar */}}
{{- define "letta-exporter.env" -}}
{{- $v := .values -}}
{{- $c := $v.config -}}
- name: LETTA_BASE_URL
  value: {{ $v.letta.baseUrl | quote }}
{{- $secret := include "letta-exporter.secretName" . }}
{{- if $secret }}
{{- if eq $v.letta.apiKeyMount "env" }}
- name: LETTA_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $v.letta.secretKey }}
{{- else }}
- name: LETTA_API_KEY_FILE
  value: {{ printf "%s/%s" (include "letta-exporter.secretMountPath" .) $v.letta.secretKey | quote }}
{{- end }}
{{- end }}
- name: LETTA_EXPORTER_LISTEN_ADDRESS
  value: {{ $c.listenAddress | quote }}
- name: LETTA_EXPORTER_PORT
  value: {{ $c.port | int64 | quote }}
- name: LETTA_EXPORTER_POLL_INTERVAL
  value: {{ $c.pollInterval | toString | quote }}
- name: LETTA_EXPORTER_PAGE_SIZE
  value: {{ $c.pageSize | int64 | quote }}
- name: LETTA_EXPORTER_CONCURRENCY
  value: {{ $c.concurrency | int64 | quote }}
- name: LETTA_EXPORTER_REQUEST_TIMEOUT
  value: {{ $c.requestTimeout | toString | quote }}
- name: LETTA_EXPORTER_MAX_RETRIES
  value: {{ $c.maxRetries | int64 | quote }}
{{- if not (kindIs "invalid" $c.maxRequestsPerSecond) }}
- name: LETTA_EXPORTER_MAX_REQUESTS_PER_SECOND
  value: {{ $c.maxRequestsPerSecond | toString | quote }}
{{- end }}
- name: LETTA_EXPORTER_DISCOVERY_OVERLAP
  value: {{ $c.discoveryOverlap | toString | quote }}
- name: LETTA_EXPORTER_ENRICH_USAGE
  value: {{ $c.enrich.usage | toString | quote }}
- name: LETTA_EXPORTER_ENRICH_METRICS
  value: {{ $c.enrich.metrics | toString | quote }}
- name: LETTA_EXPORTER_ENRICH_STEPS
  value: {{ $c.enrich.steps | toString | quote }}
- name: LETTA_EXPORTER_ENRICH_TRACE
  value: {{ $c.enrich.trace | toString | quote }}
- name: LETTA_EXPORTER_STEPS_SOURCE
  value: {{ $c.stepsSource | quote }}
{{- with $c.priceFile }}
- name: LETTA_EXPORTER_PRICE_FILE
  value: {{ . | quote }}
{{- end }}
- name: LETTA_EXPORTER_AGENT_LABEL
  value: {{ $c.agentLabel | toString | quote }}
- name: LETTA_EXPORTER_MAX_AGENTS
  value: {{ $c.maxAgents | int64 | quote }}
- name: LETTA_EXPORTER_AGENT_NAMES
  value: {{ $c.agentNames | toString | quote }}
- name: LETTA_EXPORTER_BACKFILL
  value: {{ $c.backfill | toString | quote }}
- name: LETTA_EXPORTER_MAX_PENDING
  value: {{ $c.maxPending | int64 | quote }}
{{- with $c.ttftBuckets }}
- name: LETTA_EXPORTER_TTFT_BUCKETS
  value: {{ join "," . | quote }}
{{- end }}
{{- with $c.durationBuckets }}
- name: LETTA_EXPORTER_DURATION_BUCKETS
  value: {{ join "," . | quote }}
{{- end }}
- name: LETTA_EXPORTER_LOG_LEVEL
  value: {{ $c.logLevel | quote }}
- name: LETTA_EXPORTER_LOG_FORMAT
  value: {{ $c.logFormat | quote }}
{{- if $v.state.enabled }}
- name: LETTA_EXPORTER_STATE_FILE
  value: {{ printf "%s/%s" (trimSuffix "/" $v.state.dir) $v.state.fileName | quote }}
{{- end }}
{{- if $v.otlp.enabled }}
- name: LETTA_EXPORTER_TRACES
  value: "true"
{{- end }}
{{- if not (kindIs "invalid" $v.otlp.traceSynthesis) }}
- name: LETTA_EXPORTER_TRACE_SYNTHESIS
  value: {{ $v.otlp.traceSynthesis | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" $v.otlp.reparentOrphans) }}
- name: LETTA_EXPORTER_TRACE_REPARENT_ORPHANS
  value: {{ $v.otlp.reparentOrphans | toString | quote }}
{{- end }}
{{- with $v.otlp.attributeDenylist }}
- name: LETTA_EXPORTER_TRACE_ATTRIBUTE_DENYLIST
  value: {{ . | quote }}
{{- end }}
{{- with $v.otlp.probeInterval }}
- name: LETTA_EXPORTER_TRACE_PROBE_INTERVAL
  value: {{ . | toString | quote }}
{{- end }}
{{- with $v.otlp.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with $v.otlp.protocol }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- if $v.otlp.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ $v.otlp.headersSecret.name }}
      key: {{ $v.otlp.headersSecret.key }}
{{- end }}
{{- if $v.web.configSecret }}
- name: LETTA_EXPORTER_WEB_CONFIG_FILE
  value: {{ printf "%s/%s" (include "letta-exporter.webMountPath" .) $v.web.configKey | quote }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* (ctx, probe values) -> probe body */}}
{{- define "letta-exporter.probe" -}}
{{- $v := .ctx.values -}}
httpGet:
  path: {{ .probe.path }}
  port: {{ $v.containerPortName }}
  scheme: {{ ternary "HTTPS" "HTTP" (eq (toString $v.web.tls) "true") }}
  {{- with $v.probes.httpHeaders }}
  httpHeaders:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- if hasKey .probe "initialDelaySeconds" }}
initialDelaySeconds: {{ .probe.initialDelaySeconds | int64 }}
{{- end }}
periodSeconds: {{ .probe.periodSeconds | int64 }}
timeoutSeconds: {{ .probe.timeoutSeconds | int64 }}
failureThreshold: {{ .probe.failureThreshold | int64 }}
{{- end }}

{{/* ctx (+ "native") -> one container, as a list item */}}
{{- define "letta-exporter.container" -}}
{{- $v := .values -}}
- name: {{ ternary $v.sidecar.containerName "letta-exporter" (eq (toString .sidecar) "true") }}
  image: {{ include "letta-exporter.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if eq (toString .native) "true" }}
  restartPolicy: Always
  {{- end }}
  {{- with $v.extraArgs }}
  args:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    - name: {{ $v.containerPortName }}
      containerPort: {{ $v.config.port | int64 }}
      protocol: TCP
  env:
    {{- include "letta-exporter.env" . | nindent 4 }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $v.probes.startup.enabled }}
  startupProbe:
    {{- include "letta-exporter.probe" (dict "ctx" . "probe" $v.probes.startup) | nindent 4 }}
  {{- end }}
  {{- if $v.probes.liveness.enabled }}
  livenessProbe:
    {{- include "letta-exporter.probe" (dict "ctx" . "probe" $v.probes.liveness) | nindent 4 }}
  {{- end }}
  {{- if and $v.probes.readiness.enabled (or (ne (toString .sidecar) "true") $v.sidecar.readinessProbe) }}
  readinessProbe:
    {{- include "letta-exporter.probe" (dict "ctx" . "probe" $v.probes.readiness) | nindent 4 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    - name: letta-exporter-tmp
      mountPath: /tmp
    {{- if $v.state.enabled }}
    - name: letta-exporter-state
      mountPath: {{ $v.state.dir }}
    {{- end }}
    {{- if and (include "letta-exporter.secretName" .) (ne $v.letta.apiKeyMount "env") }}
    - name: letta-exporter-api-key
      mountPath: {{ include "letta-exporter.secretMountPath" . }}
      readOnly: true
    {{- end }}
    {{- if $v.web.configSecret }}
    - name: letta-exporter-web
      mountPath: {{ include "letta-exporter.webMountPath" . }}
      readOnly: true
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* ctx -> the pod volumes the container mounts, as list items */}}
{{- define "letta-exporter.volumes" -}}
{{- $v := .values -}}
- name: letta-exporter-tmp
  emptyDir:
    sizeLimit: 32Mi
{{- if $v.state.enabled }}
- name: letta-exporter-state
  {{- if and $v.state.persistence.enabled (ne (toString .sidecar) "true") }}
  persistentVolumeClaim:
    claimName: {{ include "letta-exporter.claimName" . }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ $v.state.emptyDirSizeLimit }}
  {{- end }}
{{- end }}
{{- $secret := include "letta-exporter.secretName" . }}
{{- if and $secret (ne $v.letta.apiKeyMount "env") }}
- name: letta-exporter-api-key
  secret:
    secretName: {{ $secret }}
    {{- /* 0440 (288) with an fsGroup to grant the group; else 0444 (292): owner is root */}}
    defaultMode: {{ ternary 288 292 (and (ne (toString .sidecar) "true") (not (empty (dig "fsGroup" "" (default dict $v.podSecurityContext))))) }}
    items:
      - key: {{ $v.letta.secretKey }}
        path: {{ $v.letta.secretKey }}
{{- end }}
{{- if $v.web.configSecret }}
- name: letta-exporter-web
  secret:
    secretName: {{ $v.web.configSecret }}
    defaultMode: {{ ternary 288 292 (and (ne (toString .sidecar) "true") (not (empty (dig "fsGroup" "" (default dict $v.podSecurityContext))))) }}
{{- end }}
{{- end }}

{{/*
Sidecar templates for a parent chart. Call with
`dict "root" $ "values" (index .Values "letta-exporter")`.
- letta-exporter.sidecar.containers: the exporter container for `containers:` (nothing when it
  runs as a native sidecar);
- letta-exporter.sidecar.initContainers: the exporter as a native sidecar for `initContainers:`
  (nothing unless sidecar.native is true AND the cluster is Kubernetes 1.29+: on an older server
  the exporter stays a regular container, because such a server drops `restartPolicy` from an
  init container, which would then block the pod from ever starting);
- letta-exporter.sidecar.volumes: the volumes it mounts, for `volumes:`. With state persistence the
  state is still an emptyDir here: a parent pod that needs it across rescheduling passes its own
  volume named `letta-exporter-state` instead (state.enabled false + extraVolumeMounts).
*/}}
{{/* ctx -> "true" when the sidecar runs natively: asked for, and the cluster has native sidecars */}}
{{- define "letta-exporter.sidecar.native" -}}
{{- if and (eq (toString .values.sidecar.native) "true") (semverCompare ">=1.29.0-0" .root.Capabilities.KubeVersion.Version) -}}
true
{{- end -}}
{{- end }}

{{- define "letta-exporter.sidecar.containers" -}}
{{- if not (include "letta-exporter.sidecar.native" .) }}
{{- include "letta-exporter.container" (merge (dict "sidecar" true "native" false) .) }}
{{- end }}
{{- end }}

{{- define "letta-exporter.sidecar.initContainers" -}}
{{- if include "letta-exporter.sidecar.native" . }}
{{- include "letta-exporter.container" (merge (dict "sidecar" true "native" true) .) }}
{{- end }}
{{- end }}

{{- define "letta-exporter.sidecar.volumes" -}}
{{- include "letta-exporter.volumes" (merge (dict "sidecar" true) .) }}
{{- end }}
