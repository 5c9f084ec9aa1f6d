{{/* The RBAC rules, grouped by where they are granted (see rbac.yaml). Each rule says which code needs it. */}}

{{- define "aio.rules.namespaced" }}
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
# Targets (by name or selector) and what ScaleToZero, ConservativeConfig and
# GuardrailSidecar change (read-modify-write with the ledger: get, then update with the
# resourceVersion read; GuardrailSidecar's server-side dry run is an update too). Watch:
# only objects labelled aiincident.io/held (a label selector), to repair a reverted mitigation.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, update]
# Evidence: what rolled out, what ran, what the pods say.
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [batch]
  resources: [jobs, cronjobs]
  verbs: [get, list]
# TrafficShift routers and fallbacks; GuardrailSidecar's service port (list and watch:
# only the held ones, by label selector, for repair).
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, update]
# ConservativeConfig's ConfigMap keys; the evidence and review ConfigMaps (list, watch:
# the held ones, for repair).
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, update]
# Events on incidents and on every object changed (kopf's poster); evidence reads the
# targets' recent Events (list).
- apiGroups: [""]
  resources: [events]
  verbs: [list, create, patch]
# ScaleToZero reads HPAs (autoscaling v1, v2, v2beta2) to report that they stopped.
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list]
# ScaleToZero pauses KEDA ScaledObjects at 0 (watch: the held ones, for repair).
- apiGroups: [keda.sh]
  resources: [scaledobjects]
  verbs: [get, list, watch, update]
# TrafficShift routers (list, watch: the held ones, by label selector, for repair).
- apiGroups: [networking.istio.io]
  resources: [virtualservices]
  verbs: [get, list, watch, update]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, list, watch, update]
# IncreaseMonitoring creates, brings up to date and deletes one rule per incident.
- apiGroups: [monitoring.coreos.com]
  resources: [prometheusrules]
  verbs: [get, create, update, delete]
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
