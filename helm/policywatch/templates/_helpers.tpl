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
