{{- define "webrecord.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "webrecord.labels" -}}
app.kubernetes.io/name: webrecord
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "webrecord.operatorSelector" -}}
app.kubernetes.io/name: webrecord
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "webrecord.adapterSelector" -}}
app.kubernetes.io/name: webrecord
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: adapter
{{- end -}}

{{- define "webrecord.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The namespaces the operator acts in (list). */}}
{{- define "webrecord.namespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{- define "webrecord.storageSecret" -}}
{{- if .Values.storage.existingSecret -}}
{{ .Values.storage.existingSecret }}
{{- else if or .Values.storage.credentials .Values.callback.secret -}}
{{ include "webrecord.fullname" . }}-storage
{{- end -}}
{{- end -}}

{{- define "webrecord.authSecret" -}}
{{- if .Values.adapter.auth.existingSecret -}}
{{ .Values.adapter.auth.existingSecret }}
{{- else -}}
{{ include "webrecord.fullname" . }}-auth
{{- end -}}
{{- end -}}
