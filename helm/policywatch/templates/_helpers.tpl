{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "policywatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already holds the chart name. */}}
{{- define "policywatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "policywatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. helm.sh/chart changes on upgrades, so it never goes into selectors. */}}
{{- define "policywatch.labels" -}}
helm.sh/chart: {{ include "policywatch.chart" . }}
app.kubernetes.io/name: {{ include "policywatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: policywatch
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "policywatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "policywatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "policywatch.collector.fullname" -}}
{{- printf "%s-collector" (include "policywatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "policywatch.evaluator.fullname" -}}
{{- printf "%s-evaluator" (include "policywatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "policywatch.collector.selectorLabels" -}}
{{ include "policywatch.selectorLabels" . }}
app.kubernetes.io/component: collector
{{- end }}

{{- define "policywatch.evaluator.selectorLabels" -}}
{{ include "policywatch.selectorLabels" . }}
app.kubernetes.io/component: evaluator
{{- end }}

{{- define "policywatch.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "policywatch.collector.serviceAccountName" -}}
{{- if .Values.rbac.create }}{{ include "policywatch.collector.fullname" . }}{{ else }}default{{ end }}
{{- end }}

{{- define "policywatch.evaluator.serviceAccountName" -}}
{{- if .Values.rbac.create }}{{ include "policywatch.evaluator.fullname" . }}{{ else }}default{{ end }}
{{- end }}

{{/* Secret with the database URL: the user's, or the one this chart creates. */}}
{{- define "policywatch.evaluator.databaseSecret" -}}
{{- default (printf "%s-database" (include "policywatch.evaluator.fullname" .)) .Values.evaluator.database.existingSecret }}
{{- end }}

{{- define "policywatch.evaluator.databaseSecretKey" -}}
{{- if .Values.evaluator.database.existingSecret }}{{ .Values.evaluator.database.existingSecretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* Secret with the API tokens: the user's, or the one this chart creates. */}}
{{- define "policywatch.evaluator.tokensSecret" -}}
{{- default (printf "%s-tokens" (include "policywatch.evaluator.fullname" .)) .Values.evaluator.auth.existingSecret }}
{{- end }}

{{/* True when the evaluator runs on SQLite in an emptyDir (no database URL anywhere). */}}
{{- define "policywatch.evaluator.sqlite" -}}
{{- if and (not .Values.evaluator.database.url) (not .Values.evaluator.database.existingSecret) }}true{{ end }}
{{- end }}

{{/* "true" when the SQLite file lives on a PersistentVolumeClaim. */}}
{{- define "policywatch.evaluator.persistent" -}}
{{- if and (include "policywatch.evaluator.sqlite" .) .Values.evaluator.persistence.enabled }}true{{ end }}
{{- end }}

{{- define "policywatch.evaluator.claimName" -}}
{{- default (printf "%s-data" (include "policywatch.evaluator.fullname" .)) .Values.evaluator.persistence.existingClaim }}
{{- end }}

{{- define "policywatch.evaluator.scheme" -}}
{{- if .Values.evaluator.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{- define "policywatch.collector.scheme" -}}
{{- if .Values.collector.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/*
"true" when a Prometheus Operator kind may be created: the cluster serves it (.Capabilities.APIVersions, real on
install/upgrade, --api-versions for helm template), or prometheusOperator.force says to create it anyway.
Call with (dict "root" $ "kind" "ServiceMonitor").
*/}}
{{- define "policywatch.prometheusOperator.has" -}}
{{- if or .root.Values.prometheusOperator.force (.root.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind)) }}true{{ end }}
{{- end }}

{{/* The kinds that are enabled but skipped because the cluster does not serve them (for NOTES.txt). */}}
{{- define "policywatch.prometheusOperator.skipped" -}}
{{- $skipped := list }}
{{- range $kind, $on := dict "ServiceMonitor" .Values.serviceMonitor.enabled "PodMonitor" .Values.podMonitor.enabled "PrometheusRule" .Values.prometheusRule.enabled }}
{{- if and $on (not (include "policywatch.prometheusOperator.has" (dict "root" $ "kind" $kind))) }}
{{- $skipped = append $skipped $kind }}
{{- end }}
{{- end }}
{{- join ", " $skipped }}
{{- end }}

{{/* Contradictory values stop the install here, each with what to change. */}}
{{- define "policywatch.validate" -}}
{{- $c := .Values.collector }}
{{- $e := .Values.evaluator }}
{{- if and .Values.podMonitor.enabled .Values.serviceMonitor.enabled }}
{{- fail "enable either serviceMonitor or podMonitor, not both: each would scrape every target again" }}
{{- end }}
{{- if $e.enabled }}
{{- if and (include "policywatch.evaluator.sqlite" .) (gt (int $e.replicas) 1) }}
{{- fail (printf "evaluator.replicas=%d needs a shared database: on SQLite (no evaluator.database.url or existingSecret) only one evaluator may run; set evaluator.database.url (PostgreSQL) or evaluator.replicas=1" (int $e.replicas)) }}
{{- end }}
{{- if and $e.persistence.enabled (not (include "policywatch.evaluator.sqlite" .)) }}
{{- fail "evaluator.persistence keeps the SQLite file; with evaluator.database.url or existingSecret there is no SQLite file: turn evaluator.persistence.enabled off" }}
{{- end }}
{{- if and (eq $e.opensearch.eventStore "opensearch") (not $e.opensearch.url) }}
{{- fail "evaluator.opensearch.eventStore=opensearch needs evaluator.opensearch.url" }}
{{- end }}
{{- if and $e.tls.enabled (not $e.tls.secretName) }}
{{- fail "evaluator.tls.secretName is required when evaluator.tls.enabled is true (a kubernetes.io/tls Secret)" }}
{{- end }}
{{- end }}
{{- if $c.enabled }}
{{- if and $c.tls.clientAuth (not $c.tls.enabled) }}
{{- fail "collector.tls.clientAuth=true needs collector.tls.enabled=true (client certificates are checked in the TLS handshake)" }}
{{- end }}
{{- if $c.tls.clientAuth }}
{{- range $key := list "serviceMonitor" "podMonitor" }}
{{- $m := index $.Values $key }}
{{- if and $m.enabled (or (not $m.tlsConfig.cert) (not $m.tlsConfig.keySecret)) }}
{{- fail (printf "collector.tls.clientAuth=true: Prometheus must present a client certificate to scrape the collector; set %s.tlsConfig.cert and %s.tlsConfig.keySecret (and ca, serverName)" $key $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
