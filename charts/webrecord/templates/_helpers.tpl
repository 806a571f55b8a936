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

{{/* The egress policy's settings (JSON object of env): recorders judge every connection of the
     page with them, the operator every callback. Empty values are left out. */}}
{{- define "webrecord.egressEnv" -}}
{{- $env := dict -}}
{{- with .Values.egress -}}
{{- if .podCIDRs }}{{ $_ := set $env "WEBRECORD_EGRESS_POD_CIDRS" (toJson .podCIDRs) }}{{ end -}}
{{- if .serviceCIDRs }}{{ $_ := set $env "WEBRECORD_EGRESS_SERVICE_CIDRS" (toJson .serviceCIDRs) }}{{ end -}}
{{- if .denyCIDRs }}{{ $_ := set $env "WEBRECORD_EGRESS_DENY_CIDRS" (toJson .denyCIDRs) }}{{ end -}}
{{- if .allowCIDRs }}{{ $_ := set $env "WEBRECORD_EGRESS_ALLOW_CIDRS" (toJson .allowCIDRs) }}{{ end -}}
{{- if .denyPrivate }}{{ $_ := set $env "WEBRECORD_EGRESS_DENY_PRIVATE" "true" }}{{ end -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{/* Every recorder's env (JSON object): the chart's recorder settings and egress policy, then
     recorder.env (which wins; values as strings). */}}
{{- define "webrecord.recorderEnv" -}}
{{- $env := include "webrecord.egressEnv" . | fromJson -}}
{{- with .Values.recorder -}}
{{- $_ := set $env "WEBRECORD_SEGMENT_SECONDS" (toString .segmentSeconds) -}}
{{- $_ := set $env "WEBRECORD_DELIVERY_RETRY_S" (toString .deliveryRetrySeconds) -}}
{{- with .live -}}
{{- $_ := set $env "WEBRECORD_LIVE_BUFFER_BYTES" (toString (int .bufferBytes)) -}}
{{- $_ := set $env "WEBRECORD_LIVE_RETRY_MAX_SECONDS" (toString .retryMaxSeconds) -}}
{{- end -}}
{{- if .segmentBucket }}{{ $_ := set $env "WEBRECORD_SEGMENT_BUCKET" .segmentBucket }}{{ end -}}
{{- if .blankPageSeconds }}{{ $_ := set $env "WEBRECORD_BLANK_PAGE_SECONDS" (toString .blankPageSeconds) }}{{ end -}}
{{- end -}}
{{- /* env values are strings: `--set recorder.env.X=30` gives a number */ -}}
{{- range $name, $value := .Values.recorder.env }}{{ $_ := set $env $name (toString $value) }}{{ end -}}
{{- toJson $env -}}
{{- end -}}
