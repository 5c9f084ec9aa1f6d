"""The kinds of object the operator reads and writes, and references to them (pure).

`Kind` says where a kind lives in the API (group, version, plural); `Ref` names one
object. The access layer (`kube`) turns them into REST paths; everything else
passes them around without knowing the client library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import GROUP, VERSION

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


KINDS = {
    k.kind: k
    for k in (
        Kind("apps", "v1", "deployments", "Deployment"),
        Kind("apps", "v1", "replicasets", "ReplicaSet"),
        Kind("apps", "v1", "statefulsets", "StatefulSet"),
        Kind("apps", "v1", "controllerrevisions", "ControllerRevision"),
        # Model-serving workloads and routers (CRDs; each may be absent).
        Kind("argoproj.io", "v1alpha1", "rollouts", "Rollout"),
        Kind("leaderworkerset.x-k8s.io", "v1", "leaderworkersets", "LeaderWorkerSet"),
        Kind("serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"),
        Kind("serving.kserve.io", "v1alpha2", "llminferenceservices", "LLMInferenceService"),
        Kind("inference.networking.k8s.io", "v1", "inferencepools", "InferencePool"),
        Kind("aigateway.envoyproxy.io", "v1beta1", "aigatewayroutes", "AIGatewayRoute"),
        # TrafficShift fallbacks of an AIGatewayRoute, and the Envoy Gateway Backends
        # they point at (read by the tenant bounds only).
        Kind("aigateway.envoyproxy.io", "v1beta1", "aiservicebackends", "AIServiceBackend"),
        Kind("gateway.envoyproxy.io", "v1alpha1", "backends", "Backend"),
        Kind("", "v1", "pods", "Pod"),
        Kind("batch", "v1", "jobs", "Job"),
        Kind("batch", "v1", "cronjobs", "CronJob"),  # Kubernetes 1.21 and newer
        Kind("batch", "v1beta1", "cronjobs", "CronJob/v1beta1"),  # up to 1.24
        Kind("", "v1", "services", "Service"),
        Kind("", "v1", "configmaps", "ConfigMap"),
        Kind("", "v1", "secrets", "Secret"),
        Kind("", "v1", "events", "Event"),
        Kind("", "v1", "namespaces", "Namespace", namespaced=False),
        Kind("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
        Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler/v2"),
        Kind(
            "autoscaling", "v2beta2", "horizontalpodautoscalers", "HorizontalPodAutoscaler/v2beta2"
        ),
        Kind("networking.istio.io", "v1beta1", "virtualservices", "VirtualService"),
        Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
        Kind("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
        Kind("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"),
        Kind(GROUP, VERSION, "aiincidents", "AIIncident"),
        Kind(GROUP, VERSION, "mitigationpolicies", "MitigationPolicy"),
        Kind(
            GROUP, VERSION, "clustermitigationpolicies", "ClusterMitigationPolicy", namespaced=False
        ),
    )
}


# The kinds a mitigation may hold (change with a ledger): watched for repair, swept on undo.
HELD_KINDS = (
    "Deployment", "Service", "ConfigMap", "ScaledObject", "VirtualService", "HTTPRoute",
    # TrafficShift routers of model serving.
    "InferenceService", "AIGatewayRoute", "Rollout",
    # Model-serving workloads (ScaleToZero, GuardrailSidecar, ConservativeConfig), besides
    # InferenceService and Rollout above, which are workloads too.
    "StatefulSet", "LeaderWorkerSet", "LLMInferenceService",
)  # fmt: skip


@dataclass(frozen=True)
class Ref:
    """One object: kind (a KINDS key), namespace, name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def parse(cls, namespace: str, kind_name: str) -> Ref:
        """Ref from "Kind/name", as status entries and the ledger name objects."""
        kind, _, name = kind_name.partition("/")
        return cls(kind, namespace, name)


def operator_namespace() -> str:
    """Where the operator's own objects live: AIINCIDENT_NAMESPACE, the SA namespace, else default."""
    env = os.environ.get("AIINCIDENT_NAMESPACE")
    if env:
        return env
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


def owner_reference(owner: dict) -> dict:
    """An ownerReference to OWNER, so that Kubernetes deletes what it owns along with it."""
    return {
        "apiVersion": owner.get("apiVersion") or f"{GROUP}/{VERSION}",
        "kind": owner.get("kind") or "AIIncident",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        # Blocking the owner's deletion would need the finalizers permission on it, and
        # what it owns has nothing to clean up first.
        "blockOwnerDeletion": False,
    }
