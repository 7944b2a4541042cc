{{/* Labels every resource carries; `name` is the component (boifi-control-plane, etcd, ...). */}}
{{- define "boifi.labels" -}}
{{ include "boifi.selectorLabels" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The labels selectors use: stable across upgrades, and the ones manifests/base uses. */}}
{{- define "boifi.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/part-of: boifi
{{- end -}}

{{/* `<service>.<release namespace>.svc.cluster.local` */}}
{{- define "boifi.serviceHost" -}}
{{ .name }}.{{ .root.Release.Namespace }}.svc.cluster.local
{{- end -}}

{{/* The etcd client URLs the control plane is given: the external ones, or the StatefulSet's pods. */}}
{{- define "boifi.etcdEndpoints" -}}
{{- if .Values.store.etcd.endpoints -}}
{{ join "," .Values.store.etcd.endpoints }}
{{- else -}}
{{- $host := include "boifi.serviceHost" (dict "name" "etcd" "root" .) -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $urls = append $urls (printf "http://etcd-%d.%s:2379" $i $host) -}}
{{- end -}}
{{ join "," $urls }}
{{- end -}}
{{- end -}}

{{/* The auth-token Secret's name. */}}
{{- define "boifi.authSecret" -}}
{{ .Values.auth.existingSecret | default "boifi-auth-token" }}
{{- end -}}

{{/* Pod anti-affinity on the component's own pods, required or preferred. */}}
{{- define "boifi.antiAffinity" -}}
podAntiAffinity:
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "boifi.selectorLabels" . | fromYaml)) }}
{{- if eq .mode "required" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    {{- list (dict "weight" 100 "podAffinityTerm" $term) | toYaml | nindent 4 }}
{{- end }}
{{- end -}}

{{/* Pod and container security settings shared by every workload. */}}
{{- define "boifi.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "boifi.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
