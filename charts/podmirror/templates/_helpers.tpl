{{/* Names: <release>-podmirror unless overridden, cut to the 63 characters a DNS label allows. */}}
{{- define "podmirror.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "podmirror.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Per-component names; the suffix leaves room inside 63 characters. */}}
{{- define "podmirror.operator.fullname" -}}
{{- printf "%s-operator" (include "podmirror.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
{{- define "podmirror.agent.fullname" -}}
{{- printf "%s-agent" (include "podmirror.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
{{- define "podmirror.collector.fullname" -}}
{{- printf "%s-collector" (include "podmirror.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}
{{- define "podmirror.cleanup.fullname" -}}
{{- printf "%s-cleanup" (include "podmirror.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{- define "podmirror.labels" -}}
app.kubernetes.io/name: {{ include "podmirror.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "podmirror.versionLabels" . }}
{{- end -}}

{{/* The labels that change with the chart; pod templates add them to their selector labels. */}}
{{- define "podmirror.versionLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podmirror
{{- end -}}

{{/* Selector labels: stable across upgrades, so never the chart version. */}}
{{- define "podmirror.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podmirror.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "podmirror.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The Lease name is part of the operator's contract, not a chart choice. */}}
{{- define "podmirror.operator.leaseName" -}}
podmirror-operator
{{- end -}}

{{/* Container hardening shared by every container that needs no capability. */}}
{{- define "podmirror.restrictedSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The agent's container security context (also used by the cleanup hook, which
detaches and unpins what the agent made). Root, because Kubernetes only makes
added capabilities effective for uid 0; everything else is dropped.
*/}}
{{- define "podmirror.agentSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: false
runAsUser: 0
privileged: false
capabilities:
  drop: ["ALL"]
  add:
  {{- range .Values.agent.capabilities }}
    - {{ . }}
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The collector's container security context with its AF_XDP or ring input
(called with that input's capabilities list): root, because Kubernetes only
makes added capabilities effective for uid 0, with exactly those
capabilities; everything else as restricted.
*/}}
{{- define "podmirror.collectorRootSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
privileged: false
capabilities:
  drop: ["ALL"]
  add:
  {{- range . }}
    - {{ . }}
  {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The bpffs of the node, where the agent pins its datapath. */}}
{{- define "podmirror.bpffsVolume" -}}
- name: bpffs
  hostPath:
    path: /sys/fs/bpf
    type: Directory
{{- end -}}
{{- define "podmirror.bpffsMount" -}}
# HostToContainer: a bpffs (re)mounted on the node after the pod started is
# still seen. Bidirectional would need a privileged container and is not needed:
# the agent only creates files inside the existing bpffs mount.
- name: bpffs
  mountPath: /sys/fs/bpf
  mountPropagation: HostToContainer
{{- end -}}
