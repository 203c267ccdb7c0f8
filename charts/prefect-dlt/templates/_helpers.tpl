{{/* ---------- names ---------- */}}

{{/* Chart name, or nameOverride. */}}
{{- define "prefect-dlt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object name: fullnameOverride, or "<release>-<chart>" (the release name alone
when it already contains the chart name). Truncated so that suffixes still fit in 63 chars.
*/}}
{{- define "prefect-dlt.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<name>-<version>" for the helm.sh/chart label. */}}
{{- define "prefect-dlt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "prefect-dlt.serverName" -}}{{ include "prefect-dlt.fullname" . }}-server{{- end -}}
{{- define "prefect-dlt.postgresqlName" -}}{{ include "prefect-dlt.fullname" . }}-postgresql{{- end -}}
{{- define "prefect-dlt.storageName" -}}{{ include "prefect-dlt.fullname" . }}-storage{{- end -}}
{{- define "prefect-dlt.workerName" -}}{{ include "prefect-dlt.fullname" . }}-worker{{- end -}}
{{- define "prefect-dlt.flowRunServiceAccountName" -}}{{ include "prefect-dlt.fullname" . }}-flow-run{{- end -}}
{{- define "prefect-dlt.baseJobTemplateConfigMapName" -}}{{ include "prefect-dlt.fullname" . }}-base-job-template{{- end -}}

{{/* ---------- labels ---------- */}}

{{/* Labels of every object; call with (dict "ctx" $ "component" "server"). */}}
{{- define "prefect-dlt.labels" -}}
helm.sh/chart: {{ include "prefect-dlt.chart" .ctx }}
{{ include "prefect-dlt.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "prefect-dlt.name" .ctx }}
{{- end -}}

{{/* Immutable subset used by selectors; call with (dict "ctx" $ "component" "server"). */}}
{{- define "prefect-dlt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "prefect-dlt.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ---------- images ---------- */}}

{{/*
"repository:tag", or "repository@digest" when the block has a digest (pinned: a tag can be
moved, a digest cannot); call with (dict "image" .Values.server.image).
*/}}
{{- define "prefect-dlt.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString .image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The platform image (worker, hooks, test pod, flow runs); its tag defaults to the chart's
appVersion. No default repository: nobody can pull an image the chart would invent.
*/}}
{{- define "prefect-dlt.platformImage" -}}
{{- $repository := required "image.repository is required: build the platform image (docker build -f docker/Dockerfile -t REGISTRY/prefect-dlt:0.1.0 . && docker push REGISTRY/prefect-dlt:0.1.0), then --set image.repository=REGISTRY/prefect-dlt (on kind: kind load docker-image prefect-dlt:0.1.0 and --set image.repository=prefect-dlt)" .Values.image.repository -}}
{{- include "prefect-dlt.imageRef" (dict "image" (dict "repository" $repository "tag" (default .Chart.AppVersion .Values.image.tag) "digest" .Values.image.digest)) -}}
{{- end -}}

{{/*
The server's image: prefecthq/prefect, or with server.ha.enabled the platform image, which
has prefect-redis (pinned in requirements.lock) for messaging and cache on Redis.
*/}}
{{- define "prefect-dlt.serverImage" -}}
{{- if .Values.server.ha.enabled -}}
{{- include "prefect-dlt.platformImage" . -}}
{{- else -}}
{{- include "prefect-dlt.imageRef" (dict "image" .Values.server.image) -}}
{{- end -}}
{{- end -}}

{{/* The image of the deploy hook: the user's project image, or the platform image. */}}
{{- define "prefect-dlt.projectImage" -}}
{{- with .Values.deployFlows.image.repository -}}
{{- include "prefect-dlt.imageRef" (dict "image" (dict "repository" . "tag" (default $.Chart.AppVersion $.Values.deployFlows.image.tag) "digest" $.Values.deployFlows.image.digest)) -}}
{{- else -}}
{{- include "prefect-dlt.platformImage" . -}}
{{- end -}}
{{- end -}}

{{/*
Pod placement: nodeSelector, tolerations, affinity, priorityClassName of a block; call with
(dict "block" .Values.worker "indent" 6).
*/}}
{{- define "prefect-dlt.placement" -}}
{{- $out := dict -}}
{{- range $key := list "nodeSelector" "tolerations" "affinity" "priorityClassName" -}}
{{- with index $.block $key }}{{ $_ := set $out $key . }}{{ end -}}
{{- end -}}
{{- with $out }}{{ toYaml . | nindent $.indent }}{{ end -}}
{{- end -}}

{{/* imagePullSecrets of a pod spec, if any; call with (dict "ctx" $ "indent" 6). */}}
{{- define "prefect-dlt.imagePullSecrets" -}}
{{- with .ctx.Values.imagePullSecrets }}
{{- $secrets := list }}
{{- range . }}{{ $secrets = append $secrets (dict "name" .) }}{{ end }}
{{- dict "imagePullSecrets" $secrets | toYaml | nindent $.indent }}
{{- end }}
{{- end -}}

{{/* ---------- security (Pod Security Standard "restricted") ---------- */}}

{{/* Pod securityContext from a component's {runAsUser, runAsGroup, fsGroup}. */}}
{{- define "prefect-dlt.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .runAsUser }}
runAsGroup: {{ .runAsGroup }}
fsGroup: {{ .fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: no privilege, no capability, read-only root filesystem. */}}
{{- define "prefect-dlt.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* resources of a container, if any; call with (dict "resources" <block> "indent" 10). */}}
{{- define "prefect-dlt.resources" -}}
{{- with .resources }}
{{- dict "resources" . | toYaml | nindent $.indent }}
{{- end }}
{{- end -}}

{{/* Timings of a probe from its values block (only the keys that are set). */}}
{{- define "prefect-dlt.probeTimings" -}}
{{- $out := dict -}}
{{- range $key := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" -}}
{{- if hasKey $ $key }}{{ $_ := set $out $key (int (index $ $key)) }}{{ end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/* ---------- secrets ---------- */}}

{{/*
The value of a key of a Secret the chart generates, kept across upgrades: the live Secret's
value when the release already has one (lookup), otherwise "<prefix><random>".
Call with (dict "ctx" $ "secret" "<name>" "key" "<key>" "length" 32 ["prefix" "admin:"]).
Without a cluster (helm template, --dry-run=client, Argo CD, Flux's post-renderers) lookup
finds nothing and a new value would replace the live one on every render, so the render
fails instead, unless generatedSecrets.allowEphemeral says the values are throwaway. A
list of the namespace's Secrets is an object even when the namespace is new; without a
cluster it is empty.
*/}}
{{- define "prefect-dlt.generatedSecretValue" -}}
{{- if not (or .ctx.Values.generatedSecrets.allowEphemeral (lookup "v1" "Secret" .ctx.Release.Namespace "")) -}}
{{- fail (printf "Secret %s: the chart generates %s, but this render cannot read the live Secret (helm template, --dry-run, GitOps): every render would change it and the server would lose its database. Create the Secrets yourself and set auth.existingSecret, postgresql.auth.existingSecret (or externalDatabase.existingSecret) and storage.existingSecret (chart README, GitOps), or --set generatedSecrets.allowEphemeral=true for a throwaway render." .secret .key) -}}
{{- end -}}
{{- /* one value per render: the Secret and the checksum annotations that include it agree */ -}}
{{- $memo := .ctx.Values.generatedSecrets -}}
{{- $memoKey := printf "_generated/%s/%s" .secret .key -}}
{{- if not (hasKey $memo $memoKey) -}}
{{- $live := lookup "v1" "Secret" .ctx.Release.Namespace .secret -}}
{{- $data := dig "data" (dict) $live -}}
{{- if hasKey $data .key -}}
{{- $_ := set $memo $memoKey (index $data .key | b64dec) -}}
{{- else -}}
{{- $_ := set $memo $memoKey (printf "%s%s" (default "" .prefix) (randAlphaNum (int .length))) -}}
{{- end -}}
{{- end -}}
{{- index $memo $memoKey -}}
{{- end -}}

{{/* Secret with PREFECT_API_AUTH_STRING: auth.existingSecret or the chart's <fullname>-api. */}}
{{- define "prefect-dlt.apiSecretName" -}}
{{- default (printf "%s-api" (include "prefect-dlt.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* Secret with the four AWS_* keys: storage.existingSecret or the chart's <fullname>-storage. */}}
{{- define "prefect-dlt.storageSecretName" -}}
{{- default (include "prefect-dlt.storageName" .) .Values.storage.existingSecret -}}
{{- end -}}

{{/* The chart's database Secret: key connection-url, and password unless an existing Secret has it. */}}
{{- define "prefect-dlt.databaseSecretName" -}}
{{- printf "%s-database" (include "prefect-dlt.fullname" .) -}}
{{- end -}}

{{/* Secret with the database password (key "password"). */}}
{{- define "prefect-dlt.databasePasswordSecretName" -}}
{{- $existing := ternary .Values.postgresql.auth.existingSecret .Values.externalDatabase.existingSecret .Values.postgresql.enabled -}}
{{- default (include "prefect-dlt.databaseSecretName" .) $existing -}}
{{- end -}}

{{/* ---------- connections ---------- */}}

{{/* "<service>.<namespace>.svc.<clusterDomain>"; call with (dict "ctx" $ "service" "<name>"). */}}
{{- define "prefect-dlt.serviceHost" -}}
{{- printf "%s.%s.svc.%s" .service .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{- define "prefect-dlt.serverUrl" -}}
{{- printf "http://%s:%d" (include "prefect-dlt.serviceHost" (dict "ctx" . "service" (include "prefect-dlt.serverName" .))) (int .Values.server.service.port) -}}
{{- end -}}

{{/* PREFECT_API_URL of every client in the cluster. */}}
{{- define "prefect-dlt.apiUrl" -}}
{{- printf "%s/api" (include "prefect-dlt.serverUrl" .) -}}
{{- end -}}

{{/* PREFECT_UI_API_URL: server.uiApiUrl, the ingress host, or the port-forward address. */}}
{{- define "prefect-dlt.uiApiUrl" -}}
{{- if .Values.server.uiApiUrl -}}
{{- .Values.server.uiApiUrl -}}
{{- else if .Values.server.ingress.enabled -}}
{{- printf "%s://%s/api" (ternary "https" "http" .Values.server.ingress.tls.enabled) .Values.server.ingress.host -}}
{{- else -}}
http://localhost:4200/api
{{- end -}}
{{- end -}}

{{/*
The server's database URL. The password stays in its own Secret: Prefect replaces
${PREFECT_SERVER_DATABASE_PASSWORD} with that setting when it reads the URL.
*/}}
{{- define "prefect-dlt.databaseUrl" -}}
{{- $v := .Values -}}
{{- if $v.postgresql.enabled -}}
{{- printf "postgresql+asyncpg://%s:${PREFECT_SERVER_DATABASE_PASSWORD}@%s:5432/%s" $v.postgresql.auth.username (include "prefect-dlt.databaseHost" .) $v.postgresql.auth.database -}}
{{- else -}}
{{- $host := required "externalDatabase.host is required when postgresql.enabled is false" $v.externalDatabase.host -}}
{{- printf "postgresql+asyncpg://%s:${PREFECT_SERVER_DATABASE_PASSWORD}@%s:%d/%s" $v.externalDatabase.user $host (int $v.externalDatabase.port) $v.externalDatabase.database -}}
{{- end -}}
{{- end -}}

{{/* Host and port of the server's PostgreSQL. */}}
{{- define "prefect-dlt.databaseHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "prefect-dlt.serviceHost" (dict "ctx" . "service" (include "prefect-dlt.postgresqlName" .)) -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}
{{- define "prefect-dlt.databasePort" -}}
{{- ternary 5432 (int .Values.externalDatabase.port) .Values.postgresql.enabled -}}
{{- end -}}

{{/* The bucket of the state store. */}}
{{- define "prefect-dlt.bucket" -}}
{{- if .Values.storage.bundled.enabled -}}
{{- .Values.storage.bundled.bucket -}}
{{- else -}}
{{- required "storage.external.bucket is required when storage.bundled.enabled is false" .Values.storage.external.bucket -}}
{{- end -}}
{{- end -}}

{{/* STATE__URL of the flow runs. */}}
{{- define "prefect-dlt.stateUrl" -}}
{{- printf "s3://%s/%s" (include "prefect-dlt.bucket" .) (trimAll "/" .Values.storage.statePrefix) -}}
{{- end -}}

{{/* ---------- shared container parts ---------- */}}

{{/* env of a Prefect client: API URL and, with auth on, the auth string from its Secret. */}}
{{- define "prefect-dlt.apiClientEnv" -}}
- name: PREFECT_API_URL
  value: {{ include "prefect-dlt.apiUrl" . | quote }}
{{- if .Values.auth.enabled }}
- name: PREFECT_API_AUTH_STRING
  valueFrom:
    secretKeyRef:
      name: {{ include "prefect-dlt.apiSecretName" . }}
      key: PREFECT_API_AUTH_STRING
{{- end }}
{{- end -}}

{{/*
Init container of a platform-image pod that waits until the server answers /api/ready.
Call with (dict "ctx" $ "resources" <resources block> "timeout" <seconds>).
*/}}
{{- define "prefect-dlt.waitForServerContainer" -}}
- name: wait-for-server
  image: {{ include "prefect-dlt.platformImage" .ctx | quote }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  command: ["flows", "wait-for-server", "--timeout", {{ .timeout | quote }}]
  env:
    {{- include "prefect-dlt.apiClientEnv" .ctx | nindent 4 }}
    - name: HOME
      value: /tmp
  securityContext:
    {{- include "prefect-dlt.containerSecurityContext" .ctx | nindent 4 }}
  {{- include "prefect-dlt.resources" (dict "resources" .resources "indent" 2) }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* ---------- HA server ---------- */}}

{{- define "prefect-dlt.redisName" -}}{{ include "prefect-dlt.fullname" . }}-redis{{- end -}}

{{/*
Call with (dict "ctx" $ ["passwordSecret" <Secret with the database password>]).
env of every HA server process (API replicas, services, migrations): PostgreSQL, and
messaging, cache, event ordering, concurrency leases and background tasks on Redis
(prefect-redis). Migrations and block registration run once, in the migration Job.
*/}}
{{- define "prefect-dlt.serverEnv" -}}
{{- $ctx := .ctx -}}
- name: HOME
  value: /home/prefect
- name: PREFECT_SERVER_ANALYTICS_ENABLED
  value: "false"
- name: PREFECT_SERVER_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "prefect-dlt.databasePasswordSecretName" $ctx) .passwordSecret }}
      key: password
- name: PREFECT_SERVER_DATABASE_CONNECTION_URL
  {{- if $ctx.Values.server.ha.enabled }}
  # no password in it (a placeholder): a literal, so the pre-install migration Job needs no
  # Secret of the release
  value: {{ include "prefect-dlt.databaseUrl" $ctx | quote }}
  {{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "prefect-dlt.databaseSecretName" $ctx }}
      key: connection-url
  {{- end }}
{{- if $ctx.Values.server.ha.enabled }}
- name: PREFECT_SERVER_DATABASE_MIGRATE_ON_START
  value: "false"
- name: PREFECT_SERVER_REGISTER_BLOCKS_ON_START
  value: "false"
- name: PREFECT_MESSAGING_BROKER
  value: prefect_redis.messaging
- name: PREFECT_MESSAGING_CACHE
  value: prefect_redis.messaging
- name: PREFECT_SERVER_EVENTS_CAUSAL_ORDERING
  value: prefect_redis.ordering
- name: PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE
  value: prefect_redis.lease_storage
{{- if $ctx.Values.redis.bundled.enabled }}
- name: PREFECT_REDIS_MESSAGING_URL
  value: {{ printf "redis://%s:6379/0" (include "prefect-dlt.serviceHost" (dict "ctx" $ctx "service" (include "prefect-dlt.redisName" $ctx))) | quote }}
- name: PREFECT_SERVER_DOCKET_URL
  value: {{ printf "redis://%s:6379/1" (include "prefect-dlt.serviceHost" (dict "ctx" $ctx "service" (include "prefect-dlt.redisName" $ctx))) | quote }}
{{- else }}
- name: PREFECT_REDIS_MESSAGING_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "redis.external.existingSecret is required with server.ha.enabled and redis.bundled.enabled=false" $ctx.Values.redis.external.existingSecret }}
      key: url
- name: PREFECT_SERVER_DOCKET_URL
  valueFrom:
    secretKeyRef:
      name: {{ $ctx.Values.redis.external.existingSecret }}
      key: docket-url
{{- end }}
{{- end }}
{{- end -}}

{{/* ---------- rolling pods on Secret changes ---------- */}}

{{/*
Annotations that roll a pod when a Secret it reads changes: checksum/secret-<name> for each
of "api", "database", "storage", "redis" in .secrets. A Secret the chart writes is hashed
as rendered; a Secret the chart only names (an existingSecret value) cannot be read
without a cluster, so its name and secrets.revision are hashed instead: bump the revision
after rotating it. Call with (dict "ctx" $ "secrets" (list "api" "database") "indent" 8).
*/}}
{{- define "prefect-dlt.secretChecksums" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $revision := toString $v.secrets.revision -}}
{{- $out := dict -}}
{{- if and (has "api" .secrets) $v.auth.enabled -}}
{{- if $v.auth.existingSecret -}}
{{- $_ := set $out "checksum/secret-api" (printf "existing %s revision %s" $v.auth.existingSecret $revision | sha256sum) -}}
{{- else -}}
{{- $_ := set $out "checksum/secret-api" (include (print $ctx.Template.BasePath "/secrets/api-secret.yaml") $ctx | sha256sum) -}}
{{- end -}}
{{- end -}}
{{- if has "database" .secrets -}}
{{- $text := include (print $ctx.Template.BasePath "/secrets/database-secret.yaml") $ctx -}}
{{- $passwordSecret := include "prefect-dlt.databasePasswordSecretName" $ctx -}}
{{- if ne $passwordSecret (include "prefect-dlt.databaseSecretName" $ctx) -}}
{{- $text = printf "%s\nexisting %s revision %s" $text $passwordSecret $revision -}}
{{- end -}}
{{- $_ := set $out "checksum/secret-database" ($text | sha256sum) -}}
{{- end -}}
{{- if has "storage" .secrets -}}
{{- if $v.storage.existingSecret -}}
{{- $_ := set $out "checksum/secret-storage" (printf "existing %s revision %s" $v.storage.existingSecret $revision | sha256sum) -}}
{{- else -}}
{{- $_ := set $out "checksum/secret-storage" (include (print $ctx.Template.BasePath "/secrets/storage-secret.yaml") $ctx | sha256sum) -}}
{{- end -}}
{{- end -}}
{{- if and (has "redis" .secrets) $v.server.ha.enabled (not $v.redis.bundled.enabled) -}}
{{- $_ := set $out "checksum/secret-redis" (printf "existing %s revision %s" $v.redis.external.existingSecret $revision | sha256sum) -}}
{{- end -}}
{{- with $out }}{{ toYaml . | nindent $.indent }}{{ end -}}
{{- end -}}
