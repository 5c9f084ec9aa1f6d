{{/* Names, labels and the derived settings the templates share. */}}

{{- define "aio.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aio.fullname" -}}
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

{{- define "aio.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "aio.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aio.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aio.labels" -}}
helm.sh/chart: {{ include "aio.chart" . }}
{{ include "aio.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ai-incident-operator
{{- end }}

{{- define "aio.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "aio.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "aio.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret that holds the intake's bearer token, and its key. */}}
{{- define "aio.webhookSecretName" -}}
{{- default (printf "%s-webhook" (include "aio.fullname" .)) .Values.webhook.existingSecret }}
{{- end }}

{{/* "true" when kopf peering is on: more than one replica, or asked for. */}}
{{- define "aio.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The port of /metrics when it has its own (metrics.port), else empty: the intake's. */}}
{{- define "aio.metricsPort" -}}
{{- $port := (.Values.metrics).port | default 0 | int }}
{{- if and $port (ne $port (.Values.webhook.port | int)) }}{{ $port }}{{ end }}
{{- end }}

{{/* "true" when /metrics needs the intake's token (webhook.metricsRequireToken: old name). */}}
{{- define "aio.metricsRequireToken" -}}
{{- if or (.Values.metrics).requireToken .Values.webhook.metricsRequireToken }}true{{ end }}
{{- end }}

{{/* Where the RBAC rules are granted: aio.rbac.* in _rbac-rules.tpl. */}}
