{{/*
Egress NetworkPolicies (networkPolicy.egress.enabled), for clusters that deny egress by
default: every pod of the release may resolve names; each component may reach only what it
talks to.
*/}}
{{- define "prefect-dlt.egressPolicy" -}}
{{- $ctx := .ctx -}}
{{- $eg := $ctx.Values.networkPolicy.egress }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "prefect-dlt.fullname" $ctx }}-egress-{{ .name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "prefect-dlt.labels" (dict "ctx" $ctx "component" (index .components 0)) | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  podSelector:
    matchExpressions:
      - key: app.kubernetes.io/instance
        operator: In
        values: [{{ $ctx.Release.Name | quote }}]
      - key: app.kubernetes.io/component
        operator: In
        values: {{ toJson .components }}
  policyTypes:
    - Egress
  egress:
    - to:
        {{- toYaml $eg.dns.to | nindent 8 }}
      ports:
        - {protocol: UDP, port: 53}
        - {protocol: TCP, port: 53}
    {{- with .rules }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* The egress rule to the server's PostgreSQL (bundled, or externalDatabase and its peers). */}}
{{- define "prefect-dlt.egressToDatabase" -}}
{{- $database := dict "ports" (list (dict "protocol" "TCP" "port" (int (include "prefect-dlt.databasePort" .)))) -}}
{{- if .Values.postgresql.enabled -}}
{{- $_ := set $database "to" (include "prefect-dlt.toComponent" (dict "ctx" . "component" "postgresql") | fromYamlArray) -}}
{{- else -}}
{{- with .Values.networkPolicy.egress.database.to }}{{ $_ := set $database "to" . }}{{ end -}}
{{- end -}}
{{- toYaml $database -}}
{{- end -}}

{{- define "prefect-dlt.toComponent" -}}
- podSelector:
    matchLabels:
      {{- include "prefect-dlt.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end -}}

{{- define "prefect-dlt.egressPolicies" -}}
{{- $eg := .Values.networkPolicy.egress -}}
{{- $toServer := dict "to" (include "prefect-dlt.toComponent" (dict "ctx" . "component" "server") | fromYamlArray) "ports" (list (dict "protocol" "TCP" "port" 4200)) -}}
{{- $stateStore := dict "ports" (list (dict "protocol" "TCP" "port" 443)) -}}
{{- if .Values.storage.bundled.enabled -}}
{{- $stateStore = dict "to" (include "prefect-dlt.toComponent" (dict "ctx" . "component" "storage") | fromYamlArray) "ports" (list (dict "protocol" "TCP" "port" 8333)) -}}
{{- else -}}
{{- with $eg.stateStore.to }}{{ $_ := set $stateStore "to" . }}{{ end -}}
{{- with $eg.stateStore.ports }}{{ $_ := set $stateStore "ports" . }}{{ end -}}
{{- end -}}
{{- $database := include "prefect-dlt.egressToDatabase" . | fromYaml -}}
{{- $kubeApi := dict "ports" $eg.kubernetesApi.ports -}}
{{- with $eg.kubernetesApi.cidrs -}}
{{- $peers := list }}{{ range . }}{{ $peers = append $peers (dict "ipBlock" (dict "cidr" .)) }}{{ end -}}
{{- $_ := set $kubeApi "to" $peers -}}
{{- end -}}
{{- $serverRules := list $database -}}
{{- if .Values.server.ha.enabled -}}
{{- $redis := dict "ports" (list (dict "protocol" "TCP" "port" 6379)) -}}
{{- if .Values.redis.bundled.enabled -}}
{{- $_ := set $redis "to" (include "prefect-dlt.toComponent" (dict "ctx" . "component" "redis") | fromYamlArray) -}}
{{- end -}}
{{- $serverRules = append $serverRules $redis -}}
{{- end -}}
{{- if $eg.alertWebhook.enabled -}}
{{- $webhook := dict "ports" $eg.alertWebhook.ports -}}
{{- with $eg.alertWebhook.to }}{{ $_ := set $webhook "to" . }}{{ end -}}
{{- $serverRules = append $serverRules $webhook -}}
{{- end -}}
{{- $np := .Values.networkPolicy -}}
{{- $serverRules = concat $serverRules $np.server.extraEgress -}}
{{- /* the migration hook has its own policy (templates/server/migrate-job.yaml) */ -}}
{{- include "prefect-dlt.egressPolicy" (dict "ctx" . "name" "server" "components" (list "server" "server-services" "rollback-check") "rules" $serverRules) }}
{{- include "prefect-dlt.egressPolicy" (dict "ctx" . "name" "worker" "components" (list "worker") "rules" (concat (list $toServer $kubeApi) $np.worker.extraEgress)) }}
{{- include "prefect-dlt.egressPolicy" (dict "ctx" . "name" "hooks" "components" (list "deploy-flows" "create-bucket" "pause-pool" "test") "rules" (concat (list $toServer $stateStore) $np.hooks.extraEgress)) }}
{{- include "prefect-dlt.egressPolicy" (dict "ctx" . "name" "flow-run" "components" (list "flow-run") "rules" (concat (list $toServer $stateStore) $eg.flowRuns)) }}
{{- include "prefect-dlt.egressPolicy" (dict "ctx" . "name" "data" "components" (list "postgresql" "storage" "redis") "rules" (list)) }}
{{- end -}}
