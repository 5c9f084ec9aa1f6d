"""Whether a workload serves again, by the rules `kubectl rollout status` uses.

Resolution gives traffic back only to a model that is ready: its controller has seen
the latest change (observedGeneration), every wanted replica runs the current
template, no old replica is still terminating, and every wanted replica is
available (its Pods Ready: the model has loaded). Pure: it reads the object only.
"""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]


def ready(obj: Body) -> tuple[bool, str]:
    """(ready, why not / what is) for the workload OBJ of any kind, by its adapter's rules."""
    from . import workloads  # the adapters use replicas_ready below

    return workloads.adapter(obj.get("kind")).ready(obj)


def replicas_ready(obj: Body) -> tuple[bool, str]:
    """(ready, why not / what is): the Deployment OBJ has all its wanted replicas available."""
    kind = obj.get("kind") or "Deployment"
    name = f"{kind}/{(obj.get('metadata') or {}).get('name', '?')}"
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    if status.get("observedGeneration", 0) < meta.get("generation", 0):
        return False, f"{name}: its controller has not yet seen the latest change"
    wanted = spec.get("replicas", 1)
    if wanted == 0:
        return True, f"{name}: 0 replicas wanted"
    updated = status.get("updatedReplicas", status.get("currentReplicas", 0)) or 0
    if updated < wanted:
        return False, f"{name}: {updated} of {wanted} replicas run the current version"
    if kind == "Deployment" and (status.get("replicas") or 0) > updated:
        old = status["replicas"] - updated
        return False, f"{name}: {old} old replica(s) still terminating"
    key = "availableReplicas" if kind == "Deployment" else "readyReplicas"
    available = status.get(key) or 0
    if available < wanted:
        return False, f"{name}: {available} of {wanted} replicas ready"
    return True, f"{name}: {available} of {wanted} replicas ready"
