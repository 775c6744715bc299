{{- define "ember.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ember.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ember.labels" -}}
{{ include "ember.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* --threads from the CPU limit: "2" → 2, "1500m" → 1, at least 1; empty without a limit. */}}
{{- define "ember.threads" -}}
{{- $cpu := toString (dig "limits" "cpu" "" .Values.resources) -}}
{{- if $cpu -}}
{{- if hasSuffix "m" $cpu -}}
{{- max 1 (div (atoi (trimSuffix "m" $cpu)) 1000) -}}
{{- else -}}
{{- max 1 (int (floor (float64 $cpu))) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ember.gracePeriod" -}}
{{- add .Values.preStopSleepSeconds .Values.server.drainTimeoutSeconds .Values.graceMarginSeconds -}}
{{- end -}}

{{/* The autoscaling PromQL: deploy/prometheus's recording rules, this release's series only
     (a ServiceMonitor labels them job=<Service name>, namespace=<namespace>). */}}
{{- define "ember.promSelector" -}}
namespace="{{ .Release.Namespace }}",job="{{ include "ember.fullname" . }}"
{{- end -}}
{{- define "ember.waitingQuery" -}}
sum(job_model_name:ember_num_requests_waiting:avg1m{ {{- include "ember.promSelector" . -}} })
{{- end -}}
{{- define "ember.kvQuery" -}}
max(job_model_name:ember_kv_cache_usage_perc:max{ {{- include "ember.promSelector" . -}} })
{{- end -}}

{{- define "ember.checks" -}}
{{- with .Values.autoscaling -}}
{{- if and .hpa.enabled (gt (int .hpa.minReplicas) (int .hpa.maxReplicas)) -}}
{{- fail "autoscaling.hpa.minReplicas must not exceed maxReplicas" -}}
{{- end -}}
{{- if and .keda.enabled (gt (int .keda.minReplicas) (int .keda.maxReplicas)) -}}
{{- fail "autoscaling.keda.minReplicas must not exceed maxReplicas" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.gie.enabled (not .Values.gie.endpointPicker.name) -}}
{{- fail "gie.enabled needs gie.endpointPicker.name (the endpoint picker's Service)" -}}
{{- end -}}
{{- end -}}
