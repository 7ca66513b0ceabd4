{{/*
simulator.name is the chart name, or nameOverride.
*/}}
{{- define "simulator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 20 | trimSuffix "-" -}}
{{- end -}}

{{/*
simulator.fullname prefixes every object: fullnameOverride, else the release
name when it contains the chart name, else "<release>-<chart>". At most 20
characters, so "<fullname>-worker-<type>" (type <= 40) stays a DNS label.
*/}}
{{- define "simulator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 20 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "simulator.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 20 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 20 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
simulator.labels are the common labels of every object.
*/}}
{{- define "simulator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "simulator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: simlab
{{- end -}}

{{/*
simulator.selectorLabels select the pods of the release.
*/}}
{{- define "simulator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "simulator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
simulator.image is repository:tag (tag defaults to appVersion), and @digest when a digest is
given: the runtime then pulls exactly that image.
*/}}
{{- define "simulator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/*
simulator.controllerName names the controller's Deployment and Service.
*/}}
{{- define "simulator.controllerName" -}}
{{- printf "%s-controller" (include "simulator.fullname" .) -}}
{{- end -}}

{{/*
simulator.controllerURL is the controller's in-cluster base URL.
*/}}
{{- define "simulator.controllerURL" -}}
{{- printf "http://%s.%s.svc:%d" (include "simulator.controllerName" .) .Release.Namespace (int .Values.controller.service.port) -}}
{{- end -}}

{{/*
simulator.partitions is the partition count of one type's topic; call with
(dict "root" $ "source" $src).
*/}}
{{- define "simulator.partitions" -}}
{{- if eq .root.Values.kafka.partitioning "keyed" -}}
{{- int .root.Values.kafka.keyedPartitions -}}
{{- else -}}
{{- int .source.instances -}}
{{- end -}}
{{- end -}}

{{/*
simulator.maxReplicas is a type's HPA maximum: its maxReplicas (or
workers.maxReplicas), never above its partitions (a worker without a
partition would idle). sftp types too: their workers share a spool on the
dataset claim (simulator.sftpSpool), so whichever worker the type's Service
sends a login to serves every source's files.
*/}}
{{- define "simulator.maxReplicas" -}}
{{- $max := int (default .root.Values.workers.maxReplicas .source.maxReplicas) -}}
{{- min $max (int (include "simulator.partitions" .)) -}}
{{- end -}}

{{/*
simulator.sftpSpoolSubPath is where on the dataset claim the workers of the
release's sftp types share their spool (docs/DATASET.md): one directory per
release, the worker adding <type>/<run>/<instance> below it.
*/}}
{{- define "simulator.sftpSpoolSubPath" -}}
{{- printf ".simulator-sftp/%s" (include "simulator.fullname" .) -}}
{{- end -}}

{{/*
simulator.sftpSpoolMountPath is where sftp workers mount their spool.
*/}}
{{- define "simulator.sftpSpoolMountPath" -}}
/var/lib/simulator/sftp-spool
{{- end -}}

{{/*
simulator.minReplicas is a type's HPA minimum, capped by its maximum.
*/}}
{{- define "simulator.minReplicas" -}}
{{- $min := int (default .root.Values.workers.minReplicas .source.minReplicas) -}}
{{- min $min (int (include "simulator.maxReplicas" .)) -}}
{{- end -}}

{{/*
simulator.validate fails on what values.schema.json cannot express.
*/}}
{{- define "simulator.validate" -}}
{{- $seen := dict -}}
{{- range $i, $src := .Values.sources -}}
{{- if hasKey $seen $src.type -}}
{{- fail (printf "sources[%d].type: %q is also the type of sources[%d]" $i $src.type (get $seen $src.type)) -}}
{{- end -}}
{{- $_ := set $seen $src.type $i -}}
{{- $min := int (default $.Values.workers.minReplicas $src.minReplicas) -}}
{{- $max := int (default $.Values.workers.maxReplicas $src.maxReplicas) -}}
{{- if gt $min $max -}}
{{- fail (printf "sources[%d] (%s): minReplicas %d is above maxReplicas %d (workers.minReplicas/workers.maxReplicas or the type's overrides)" $i $src.type $min $max) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
simulator.podSpecCommon is the part of the pod spec shared by all pods.
*/}}
{{- define "simulator.podSpecCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  fsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/*
simulator.containerSecurityContext hardens every container.
*/}}
{{- define "simulator.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/*
simulator.commonEnv are the settings shared by controller and workers.
*/}}
{{- define "simulator.commonEnv" -}}
- name: SIMULATOR_KAFKA_BROKERS
  value: {{ .Values.kafka.bootstrap | quote }}
- name: SIMULATOR_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: SIMULATOR_LOG_LEVEL
  value: {{ .Values.log.level | default "info" | quote }}
- name: SIMULATOR_LOG_FORMAT
  value: {{ .Values.log.format | default "json" | quote }}
{{- end -}}

{{/*
simulator.probes are the liveness and readiness probes on the named port "http".
*/}}
{{- define "simulator.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 3
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 30
{{- end -}}
