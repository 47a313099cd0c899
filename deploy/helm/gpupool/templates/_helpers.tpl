{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "gpupool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name ("gpupool"). */}}
{{- define "gpupool.fullname" -}}
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

{{- define "gpupool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpupool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gpupool.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpupool.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gpupool
{{- end }}

{{- define "gpupool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gpupool.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gpupool.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The leader Lease's name: config.kubernetes.lease_name, gpupool's default otherwise. */}}
{{- define "gpupool.leaseName" -}}
{{- dig "kubernetes" "lease_name" "gpupool-leader" .Values.config }}
{{- end }}

{{/* Port of config.metrics.listen (host:port), gpupool's default 8080 otherwise. */}}
{{- define "gpupool.metricsPort" -}}
{{- dig "metrics" "listen" "0.0.0.0:8080" .Values.config | splitList ":" | last | int }}
{{- end }}

{{/*
The Lease must be where the Role is. gpupool puts it in the pod's namespace (POD_NAMESPACE)
unless config.kubernetes.lease_namespace names another one than its default kube-system
(src/kube/lease.rs); refuse a config that would put it out of the Role's reach.
*/}}
{{- define "gpupool.checkLeaseNamespace" -}}
{{- $ns := dig "kubernetes" "lease_namespace" "" .Values.config }}
{{- if and $ns (ne $ns "kube-system") (ne $ns .Release.Namespace) }}
{{- fail (printf "config.kubernetes.lease_namespace is %q but the chart grants the Lease Role in the release namespace %q: leave lease_namespace unset" $ns .Release.Namespace) }}
{{- end }}
{{- end }}
