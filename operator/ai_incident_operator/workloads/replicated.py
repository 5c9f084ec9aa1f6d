"""Workloads that a replica count takes offline: Deployment, StatefulSet, Argo Rollout.

Ready follows `kubectl rollout status` (and `kubectl argo rollouts status`): the
controller has seen the latest spec, every wanted replica runs the current template,
and every wanted replica is ready.
"""

from __future__ import annotations

from .. import readiness
from .base import Body, Workload, generation_seen, name_of, replicas_wanted


class Deployment(Workload):
    kind = "Deployment"
    scale_kind = "Deployment"

    def ready(self, obj: Body) -> tuple[bool, str]:
        return readiness.replicas_ready({"kind": self.kind, **obj})


class StatefulSet(Workload):
    kind = "StatefulSet"
    scale_kind = "StatefulSet"

    def ready(self, obj: Body) -> tuple[bool, str]:
        name, status = name_of({"kind": self.kind, **obj}), obj.get("status") or {}
        if not generation_seen(obj):
            return False, f"{name}: its controller has not yet seen the latest change"
        wanted = replicas_wanted(obj)
        if wanted == 0:
            return True, f"{name}: 0 replicas wanted"
        strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
        if strategy != "OnDelete" and status.get("updateRevision") != status.get(
            "currentRevision", status.get("updateRevision")
        ):
            updated = status.get("updatedReplicas") or 0
            return False, f"{name}: {updated} of {wanted} replicas run the current revision"
        ready = status.get("readyReplicas") or 0
        if ready < wanted:
            return False, f"{name}: {ready} of {wanted} replicas ready"
        return True, f"{name}: {ready} of {wanted} replicas ready"


class Rollout(Workload):
    """An Argo Rollout (argoproj.io/v1alpha1). Its pod template may live in a
    Deployment it references (`spec.workloadRef`); the operator changes only the
    Rollout's own template."""

    kind = "Rollout"
    scale_kind = "Rollout"

    def ready(self, obj: Body) -> tuple[bool, str]:
        name, status = name_of({"kind": self.kind, **obj}), obj.get("status") or {}
        if not generation_seen(obj):
            return False, f"{name}: its controller has not yet seen the latest change"
        wanted = replicas_wanted(obj)
        phase = status.get("phase")
        # Paused (at a canary step) serves; Degraded does not, unless it is an abort
        # (the operator's TrafficShift, or a person's): then the stable revision serves.
        if phase == "Degraded" and wanted and status.get("abort") is not True:
            why = status.get("message") or "Degraded"
            return False, f"{name}: phase {phase}: {why}"
        if wanted == 0:
            return True, f"{name}: 0 replicas wanted"
        available = status.get("availableReplicas") or 0
        if available < wanted:
            return False, f"{name}: {available} of {wanted} replicas available"
        return True, f"{name}: {available} of {wanted} replicas available"
