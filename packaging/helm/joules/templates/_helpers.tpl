{{/* The chart's name, cut to what a label value allows. */}}
{{- define "joules.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object's name: the release name, with the chart's name
unless the release name already holds it. Cut at 50 so that suffixes such as
-aggregator-headless stay within 63. */}}
{{- define "joules.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "joules.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "joules.agent.fullname" -}}
{{- printf "%s-agent" (include "joules.fullname" .) }}
{{- end }}

{{- define "joules.aggregator.fullname" -}}
{{- printf "%s-aggregator" (include "joules.fullname" .) }}
{{- end }}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "agent"). */}}
{{- define "joules.labels" -}}
helm.sh/chart: {{ include "joules.chart" .ctx }}
{{ include "joules.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: joules
{{- end }}

{{/* Labels that select a component's pods; they never change on upgrade. */}}
{{- define "joules.selectorLabels" -}}
app.kubernetes.io/name: {{ include "joules.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "joules.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "joules.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "joules.aggregator.serviceAccountName" -}}
{{- if .Values.aggregator.serviceAccount.create }}
{{- default (include "joules.aggregator.fullname" .) .Values.aggregator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.aggregator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret both components read their tokens from. */}}
{{- define "joules.secretName" -}}
{{- default (include "joules.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where the Secret's keys appear in both containers. */}}
{{- define "joules.secretsDir" -}}/etc/joules/secrets{{- end }}

{{/* Where the ConfigMap's configuration appears in both containers. */}}
{{- define "joules.configDir" -}}/etc/joules/config{{- end }}

{{/* The aggregator's volume: spool, dead-letter file, accounting state. */}}
{{- define "joules.aggregator.dataDir" -}}/var/lib/joules/aggregator{{- end }}

{{/* The agent's state volume: counters and the stream's spool. */}}
{{- define "joules.agent.stateDir" -}}/var/lib/joules{{- end }}

{{/* "true" when the aggregator reads an InfluxDB token from the Secret. */}}
{{- define "joules.influxTokenEnabled" -}}
{{- if or .Values.aggregator.influx.tokenFromSecret (and (not .Values.secrets.existingSecret) .Values.secrets.influxToken) }}true{{ end }}
{{- end }}

{{- define "joules.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* The agents' stream URL: the value, else this release's aggregator Service. */}}
{{- define "joules.agent.streamURL" -}}
{{- if .Values.agent.stream.url }}
{{- .Values.agent.stream.url }}
{{- else if .Values.aggregator.enabled }}
{{- printf "http://%s.%s.svc.%s:%v" (include "joules.aggregator.fullname" .) .Release.Namespace .Values.clusterDomain .Values.aggregator.service.port }}
{{- else }}
{{- fail "agent.stream.url is required when aggregator.enabled is false (or set agent.stream.enabled=false)" }}
{{- end }}
{{- end }}

{{/* The agent's configuration: the chart's defaults, agent.config over them,
and agent.workloads as the workloads section. */}}
{{- define "joules.agent.config" -}}
{{- $stateDir := include "joules.agent.stateDir" . }}
{{- $defaults := dict
  "state_dir" (printf "%s/counters" $stateDir)
  "exporters" (dict "prometheus" (dict "enabled" true)) }}
{{- if .Values.agent.stream.enabled }}
{{- $_ := set $defaults.exporters "stream" (dict
  "url" (include "joules.agent.streamURL" .)
  "token_file" (printf "%s/stream-token" (include "joules.secretsDir" .))
  "spool_dir" (printf "%s/spool/stream" $stateDir)) }}
{{- end }}
{{- $cfg := mergeOverwrite $defaults (deepCopy (default (dict) .Values.agent.config)) }}
{{- with .Values.agent.workloads }}
{{- $_ := set $cfg "workloads" (deepCopy .) }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* The aggregator's configuration: the chart's defaults, aggregator.config
over them. The paths that must survive a restart are checked to be on the
volume. */}}
{{- define "joules.aggregator.config" -}}
{{- $data := include "joules.aggregator.dataDir" . }}
{{- $secrets := include "joules.secretsDir" . }}
{{- $influx := dict
  "url" .Values.aggregator.influx.url
  "org" .Values.aggregator.influx.org
  "bucket" .Values.aggregator.influx.bucket
  "spool_dir" (printf "%s/spool" $data)
  "dead_letter_file" (printf "%s/dead-letter.lp" $data) }}
{{- if include "joules.influxTokenEnabled" . }}
{{- $_ := set $influx "token_file" (printf "%s/influx-token" $secrets) }}
{{- end }}
{{- $defaults := dict
  "tokens_file" (printf "%s/tokens" $secrets)
  "influx" $influx
  "accounting" (dict "state_file" (printf "%s/accounting.state" $data)) }}
{{- $cfg := mergeOverwrite $defaults (deepCopy (default (dict) .Values.aggregator.config)) }}
{{- range $key, $path := dict "influx.spool_dir" $cfg.influx.spool_dir "influx.dead_letter_file" $cfg.influx.dead_letter_file "accounting.state_file" $cfg.accounting.state_file }}
{{- if not (hasPrefix (printf "%s/" $data) (toString $path)) }}
{{- fail (printf "aggregator.config.%s (%s) must be under %s, the persistent volume: elsewhere it is lost with the pod" $key $path $data) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}
