"""ScaleToZero: take the model offline (the playbook's severity-1 "take the system offline").

Sets the workload's replicas to 0 (Deployment, StatefulSet, Argo Rollout,
LeaderWorkerSet). A KEDA ScaledObject on it would scale it back up, so it is paused
at 0 first (`autoscaling.keda.sh/paused-replicas: "0"`); an HPA stops by itself at 0
replicas, which the action confirms from the HPA's `ScalingActive=False/ScalingDisabled`
condition. Both are found by their `scaleTargetRef` kind and name. A KServe
InferenceService or LLMInferenceService is stopped with KServe's own annotation
`serving.kserve.io/stop: "true"` instead (KServe autoscales its own Deployments, and
would undo a change to them). Undo, in reverse order: the fields back as they were,
then the ScaledObject's annotations as they were.
"""

from __future__ import annotations

from typing import Any

from .. import ledger, workloads
from ..access import Access
from ..fieldpath import ABSENT, escape, get, join
from ..resources import Ref
from .base import ActionContext, Change, FieldAction, Outcome

KEDA_PAUSE = "autoscaling.keda.sh/paused-replicas"
REPLICAS = "/spec/replicas"
HPA_RECHECK = 5.0  # seconds between looks at an HPA that has not reported stopping yet


def _scales(obj: dict[str, Any], name: str, kind: str) -> bool:
    ref = obj.get("spec", {}).get("scaleTargetRef", {})
    return ref.get("name") == name and ref.get("kind", "Deployment") == kind


def scaled_objects(api: Access, namespace: str, name: str, kind: str = "Deployment") -> list[dict]:
    """KEDA ScaledObjects scaling the workload KIND/NAME."""
    if not api.kind_installed("ScaledObject"):
        return []
    return [o for o in api.list("ScaledObject", namespace) if _scales(o, name, kind)]


def hpas(api: Access, namespace: str, name: str, kind: str = "Deployment") -> list[dict]:
    """HPAs on the workload KIND/NAME, read with their conditions (autoscaling/v2, else
    v2beta2 on < 1.23)."""
    for version in ("HorizontalPodAutoscaler/v2", "HorizontalPodAutoscaler/v2beta2"):
        if api.kind_installed(version):
            return [o for o in api.list(version, namespace) if _scales(o, name, kind)]
    return []


def _workload(ctx: ActionContext) -> workloads.Workload:
    return workloads.adapter(ctx.target.get("kind"))


def hpa_state(hpa: dict[str, Any]) -> str:
    """What the HPA says about scaling, e.g. 'ScalingActive=False/ScalingDisabled'."""
    for cond in hpa.get("status", {}).get("conditions") or []:
        if cond.get("type") == "ScalingActive":
            return f"ScalingActive={cond.get('status')}/{cond.get('reason')}"
    return "no ScalingActive condition yet"


class ScaleToZero(FieldAction):
    type = "ScaleToZero"

    def changes(self, ctx: ActionContext) -> list[Change]:
        workload = _workload(ctx)
        if workload.scale_kind is None:  # KServe: its own stop
            offline = workload.offline(ctx.target)
            said = ", ".join(f"{path.rpartition('/')[2].replace('~1', '/')}: {v}" for path, v in offline.items())  # fmt: skip
            return [Change(ctx.target_ref, offline, f"stopped ({said})")]
        name = ctx.target["metadata"]["name"]
        pause = join("metadata", "annotations", escape(KEDA_PAUSE))
        result = [
            Change(
                Ref("ScaledObject", ctx.namespace, so["metadata"]["name"]),
                {pause: "0"},
                "paused at 0",
            )
            for so in scaled_objects(ctx.api, ctx.namespace, name, workload.scale_kind)
        ]
        # Once held, the count to report is the original, not the 0 now in force.
        known = ctx.known_originals.get(str(ctx.target_ref)) or {}
        original = (
            ledger.decode(known[REPLICAS]) if REPLICAS in known else get(ctx.target, REPLICAS)
        )
        replicas = ledger.originals(ctx.target).get(REPLICAS, original)
        before = 1 if replicas is ABSENT else replicas
        result.append(Change(ctx.target_ref, {REPLICAS: 0}, f"replicas {before} -> 0"))
        return result

    def touches(self, ctx: ActionContext) -> list[Ref]:
        name = ctx.target.get("metadata", {}).get("name")
        workload = _workload(ctx)
        if not name or workload.scale_kind is None:
            return [ctx.target_ref] if name else []
        paused = scaled_objects(ctx.api, ctx.namespace, name, workload.scale_kind)
        return [Ref("ScaledObject", ctx.namespace, so["metadata"]["name"]) for so in paused] + [
            ctx.target_ref
        ]

    def verify(self, ctx: ActionContext) -> str:
        workload = _workload(ctx)
        if workload.scale_kind is None:
            return ""
        found = hpas(ctx.api, ctx.namespace, ctx.target["metadata"]["name"], workload.scale_kind)
        return "; ".join(f"HPA {h['metadata']['name']}: {hpa_state(h)}" for h in found)

    def apply(self, ctx: ActionContext) -> Outcome:
        outcome = super().apply(ctx)
        # An HPA reports ScalingDisabled only after its next sync: look again until it does.
        waiting = "HPA " in outcome.message and "ScalingDisabled" not in outcome.message
        if outcome.state == "Applied" and waiting:
            outcome.recheck = HPA_RECHECK
        return outcome
