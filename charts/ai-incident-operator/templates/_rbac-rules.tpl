{{/*
The RBAC rules, grouped by what they let the operator do (see rbac.yaml for where each group
is granted). Each rule says which code needs it. Kubernetes RBAC only adds rights, so the
groups are split by verb: the reads and the operator's own objects can be granted widely;
the writes to workloads only where the operator may change something (the chart README, "RBAC").
*/}}

{{- define "aio.rules.own" }}
# Incidents: kopf watches them and keeps its progress and finalizer in annotations and
# metadata (patch); the engine reads one by name; the Alertmanager intake creates
# incidents and folds alerts into open ones (patch).
- apiGroups: [aiincident.io]
  resources: [aiincidents]
  verbs: [get, list, watch, create, patch]
- apiGroups: [aiincident.io]
  resources: [aiincidents/status]
  verbs: [get, patch]
# PrometheusRules of IncreaseMonitoring are owned by their incident.
- apiGroups: [aiincident.io]
  resources: [aiincidents/finalizers]
  verbs: [update]
# Policies: kopf indexes them (list, watch) and keeps its state in annotations (patch);
# the policy check writes Ready into status.
- apiGroups: [aiincident.io]
  resources: [mitigationpolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [aiincident.io]
  resources: [mitigationpolicies/status]
  verbs: [get, patch]
# Events on incidents and on every object changed (kopf's poster); evidence reads the
# targets' recent Events (list).
- apiGroups: [""]
  resources: [events]
  verbs: [list, create, patch]
{{- end }}

{{- define "aio.rules.read" }}
# Targets (by name or selector), evidence (what rolled out, what ran, what the pods say)
# and the repair watches: list and watch only objects labelled aiincident.io/held (a label
# selector; RBAC cannot express it, so list and watch cover the kind).
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
{{- if ne ((.Values.rbac).podLogs) false }}
# Evidence (logs.md): the last lines of the targets' Pods' logs, bounded (get only).
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end }}
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list]
- apiGroups: [""]
  resources: [services, configmaps]
  verbs: [get, list, watch]
# ScaleToZero reads HPAs (autoscaling v1, v2, v2beta2) to report that they stopped.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list]
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch]
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch]
{{- include "aio.rules.serving.read" . }}
{{- end }}

{{- define "aio.rules.serving.read" }}
{{- $on := include "aio.rbac.servingKinds" . | fromJson }}
# Model-serving kinds, each API group switched by rbac.servingKinds (a kind whose CRD is
# absent is never asked for). As Deployments: targets by name and policies' targetSelector
# (get, list), the repair watches on those labelled aiincident.io/held and the undo sweep
# (list, watch).
{{- if $on.statefulSets }}
# rbac.servingKinds.statefulSets:
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch]
{{- end }}
{{- if or $on.statefulSets $on.leaderWorkerSets }}
# Evidence: what a StatefulSet or a LeaderWorkerSet rolled out (its ControllerRevisions).
- apiGroups: [apps]
  resources: [controllerrevisions]
  verbs: [get, list]
{{- end }}
{{- if $on.argoRollouts }}
# rbac.servingKinds.argoRollouts: Argo Rollouts as targets, and as TrafficShift routers.
- apiGroups: [argoproj.io]
  resources: [rollouts]
  verbs: [get, list, watch]
{{- end }}
{{- if $on.leaderWorkerSets }}
# rbac.servingKinds.leaderWorkerSets: multi-node serving.
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [get, list, watch]
{{- end }}
{{- if $on.kserve }}
# rbac.servingKinds.kserve: KServe models as targets; InferenceServices as TrafficShift routers.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices, llminferenceservices]
  verbs: [get, list, watch]
{{- end }}
{{- if $on.inferencePools }}
# rbac.servingKinds.inferencePools: an HTTPRoute's InferencePools, read by name only:
# TrafficShift's fallback pool (and the policy check's), the tenant bounds' trace to the
# target's pods. Never listed, watched or written.
- apiGroups: [inference.networking.k8s.io]
  resources: [inferencepools]
  verbs: [get]
{{- end }}
{{- if $on.aiGateway }}
# rbac.servingKinds.aiGateway: Envoy AI Gateway routes (TrafficShift routers, watched when
# held); their AIServiceBackends (the fallback) and the Envoy Gateway Backends these point
# at (the tenant bounds' trace), by name only.
- apiGroups: [aigateway.envoyproxy.io]
  resources: [aigatewayroutes]
  verbs: [get, list, watch]
- apiGroups: [aigateway.envoyproxy.io]
  resources: [aiservicebackends]
  verbs: [get]
- apiGroups: [gateway.envoyproxy.io]
  resources: [backends]
  verbs: [get]
{{- end }}
{{- end }}

{{- define "aio.rules.write" }}
# What ScaleToZero, ConservativeConfig and GuardrailSidecar change (read-modify-write with
# the ledger: update with the resourceVersion read; GuardrailSidecar's server-side dry run
# is an update too). Never create or delete a workload.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [update]
# TrafficShift routers and fallbacks; GuardrailSidecar's service port.
- apiGroups: [""]
  resources: [services]
  verbs: [update]
# ConservativeConfig's ConfigMap keys (update); the evidence and review ConfigMaps
# (create: their names are per incident, and RBAC cannot limit create by name).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, update]
# ScaleToZero pauses KEDA ScaledObjects at 0.
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [update]
# TrafficShift routers.
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [update]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [update]
# IncreaseMonitoring creates, brings up to date and deletes one rule per incident.
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [get, create, update, delete]
{{- include "aio.rules.serving.write" . }}
{{- end }}

{{- define "aio.rules.serving.write" }}
{{- $on := include "aio.rbac.servingKinds" . | fromJson }}
# Model-serving kinds, as Deployments (update with the resourceVersion read, the ledger in
# annotations; GuardrailSidecar's dry run is an update too), each API group switched by
# rbac.servingKinds: ScaleToZero (replicas 0), ConservativeConfig, GuardrailSidecar.
{{- if $on.statefulSets }}
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [update]
{{- end }}
{{- if $on.argoRollouts }}
# The same on a Rollout; TrafficShift (router kind Rollout) aborts its canary with
# status.abort through the status subresource (a merge patch, as kubectl argo rollouts
# abort), and undo clears it.
- apiGroups: [argoproj.io]
  resources: [rollouts]
  verbs: [update]
- apiGroups: [argoproj.io]
  resources: [rollouts/status]
  verbs: [patch]
{{- end }}
{{- if $on.leaderWorkerSets }}
# The same on a LeaderWorkerSet (its leader and worker templates).
- apiGroups: [leaderworkerset.x-k8s.io]
  resources: [leaderworkersets]
  verbs: [update]
{{- end }}
{{- if $on.kserve }}
# ScaleToZero's stop (the annotation serving.kserve.io/stop), ConservativeConfig and
# GuardrailSidecar on the predictors and templates; TrafficShift on an InferenceService's
# canary traffic.
- apiGroups: [serving.kserve.io]
  resources: [inferenceservices, llminferenceservices]
  verbs: [update]
{{- end }}
{{- if $on.aiGateway }}
# TrafficShift: an AIGatewayRoute's backend weights.
- apiGroups: [aigateway.envoyproxy.io]
  resources: [aigatewayroutes]
  verbs: [update]
{{- end }}
{{- end }}

{{- define "aio.rules.cluster" }}
# ClusterMitigationPolicies: as MitigationPolicies, but cluster-scoped.
- apiGroups: [aiincident.io]
  resources: [clustermitigationpolicies]
  verbs: [get, list, watch, patch]
- apiGroups: [aiincident.io]
  resources: [clustermitigationpolicies/status]
  verbs: [get, patch]
# The namespace index (labels for ClusterMitigationPolicy namespaceSelectors) and
# kopf's namespace patterns.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
# kopf notices CRDs installed after it started (e.g. KEDA's, the Prometheus Operator's).
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{- define "aio.rules.peering.namespaced" }}
# kopf peering, per watched namespace: keep-alives in the KopfPeering's status.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{- define "aio.rules.peering.cluster" }}
# kopf peering, cluster-wide: keep-alives in the ClusterKopfPeering's status.
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}

{{- define "aio.rules.releaseNamespace" }}
# Notify's webhook URLs (urlSecretRef): get only, only the Secrets named in
# rbac.secretNames and the intake's token Secret (which the pod mounts anyway). Never a
# listing, never another Secret: an empty resourceNames would mean every Secret, so the
# token Secret keeps the list from ever being empty.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: {{ include "aio.rbac.secretNames" . }}
  verbs: [get]
# Events about cluster-scoped objects (kopf posts those in its own namespace).
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
# The intake's unmapped incidents (alerts for protected or unwatched namespaces) go here,
# also when the operator does not watch this namespace.
- apiGroups: [aiincident.io]
  resources: [aiincidents]
  verbs: [get, list, create, patch]
{{- end }}

{{/* --- Where the groups are granted: decisions from values, shared by rbac.yaml and NOTES.txt. --- */}}

{{/* Namespaces where RBAC never grants writes, as the operator's code never changes anything there. */}}
{{- define "aio.rbac.protected" -}}
{{- concat (list "kube-system" "kube-public" "kube-node-lease") .Values.protectedNamespaces | uniq | toJson }}
{{- end }}

{{/*
The model-serving switches (rbac.servingKinds) as a map, each on unless set to false (so that a
values file without the key keeps them). Which rules each adds: aio.rules.serving.read and
aio.rules.serving.write.
*/}}
{{- define "aio.rbac.servingKinds" -}}
{{- $given := .Values.rbac.servingKinds | default dict }}
{{- $out := dict }}
{{- range $key := list "statefulSets" "argoRollouts" "leaderWorkerSets" "kserve" "inferencePools" "aiGateway" }}
{{- $_ := set $out $key (dig $key true $given) }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/* The Secret names Notify may read, the token Secret first (never empty). */}}
{{- define "aio.rbac.secretNames" -}}
{{- prepend .Values.rbac.secretNames (include "aio.webhookSecretName" .) | uniq | toJson }}
{{- end }}

{{/*
"roles": the write rules go into per-namespace Roles; "cluster": into the ClusterRole
(rbac.clusterWideWrites, opt-in); "none": nowhere (cluster-wide watching without
rbac.writeNamespaces, the default: the operator reads and records, and changes nothing).
*/}}
{{- define "aio.rbac.writeMode" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) }}
{{- fail "rbac.namespaced: true needs watchNamespaces: the Roles are created in those namespaces" }}
{{- end }}
{{- if and .Values.rbac.clusterWideWrites (or .Values.rbac.namespaced .Values.rbac.writeNamespaces) }}
{{- fail "rbac.clusterWideWrites: true grants the writes in every namespace; it cannot go with rbac.namespaced or rbac.writeNamespaces" }}
{{- end }}
{{- if and .Values.rbac.writeNamespaces .Values.watchNamespaces }}
{{- fail "rbac.writeNamespaces is for cluster-wide watching: with watchNamespaces the writes are granted there (list a watched namespace in protectedNamespaces to keep it read-only)" }}
{{- end }}
{{- if .Values.rbac.clusterWideWrites }}cluster
{{- else if or .Values.watchNamespaces .Values.rbac.writeNamespaces }}roles
{{- else }}none
{{- end }}
{{- end }}

{{/* The namespaces whose Role carries the reads and the operator's own objects: watchNamespaces, unless clusterWideWrites puts all in the ClusterRole. */}}
{{- define "aio.rbac.readNamespaces" -}}
{{- if and .Values.watchNamespaces (not .Values.rbac.clusterWideWrites) }}
{{- .Values.watchNamespaces | uniq | toJson }}
{{- else }}[]
{{- end }}
{{- end }}

{{/*
The namespaces whose Role carries the writes: watchNamespaces, or with cluster-wide watching
rbac.writeNamespaces; never a protected one, and with cluster-wide watching never the release
namespace (the operator's own Deployment). See aio.rbac.skipped for what was left out.
*/}}
{{- define "aio.rbac.writeNamespaces" -}}
{{- $out := list }}
{{- if eq (include "aio.rbac.writeMode" .) "roles" }}
{{- $protected := include "aio.rbac.protected" . | fromJsonArray }}
{{- $candidates := .Values.watchNamespaces | default .Values.rbac.writeNamespaces | uniq }}
{{- range $ns := $candidates }}
{{- if not (or (has $ns $protected) (and (eq $ns $.Release.Namespace) (not (has $ns $.Values.watchNamespaces)))) }}
{{- $out = append $out $ns }}
{{- end }}
{{- end }}
{{- end }}
{{- $out | toJson }}
{{- end }}

{{/* The namespaces asked for (watchNamespaces, rbac.writeNamespaces) where no writes were granted, with why. */}}
{{- define "aio.rbac.skipped" -}}
{{- $out := list }}
{{- if eq (include "aio.rbac.writeMode" .) "roles" }}
{{- $granted := include "aio.rbac.writeNamespaces" . | fromJsonArray }}
{{- $protected := include "aio.rbac.protected" . | fromJsonArray }}
{{- range $ns := .Values.watchNamespaces | default .Values.rbac.writeNamespaces | uniq }}
{{- if not (has $ns $granted) }}
{{- if has $ns $protected }}
{{- $out = append $out (printf "%s (protected)" $ns) }}
{{- else }}
{{- $out = append $out (printf "%s (the operator's own namespace: list it in watchNamespaces to mitigate there)" $ns) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- $out | toJson }}
{{- end }}
