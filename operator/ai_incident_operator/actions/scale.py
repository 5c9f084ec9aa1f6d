"""ScaleToZero: take the model offline (the playbook's severity-1 "take the system offline").

Sets the Deployment's replicas to 0. A KEDA ScaledObject on it would scale it back
up, so it is paused at 0 first (`autoscaling.keda.sh/paused-replicas: "0"`); an
HPA stops by itself at 0 replicas, which the action confirms from the HPA's
`ScalingActive=False/ScalingDisabled` condition. Undo, in reverse order: replicas
back as they were, then the ScaledObject's annotations as they were.
"""

from __future__ import annotations

from typing import Any

from .. import ledger
from ..access import Access
from ..fieldpath import ABSENT, escape, get, join
from ..resources import Ref
from .base import ActionContext, Change, FieldAction, Outcome

KEDA_PAUSE = "autoscaling.keda.sh/paused-replicas"
REPLICAS = "/spec/replicas"
HPA_RECHECK = 5.0  # seconds between looks at an HPA that has not reported stopping yet


def _scales(obj: dict[str, Any], deployment: str) -> bool:
    ref = obj.get("spec", {}).get("scaleTargetRef", {})
    return ref.get("name") == deployment and ref.get("kind", "Deployment") == "Deployment"


def scaled_objects(api: Access, namespace: str, deployment: str) -> list[dict]:
    if not api.kind_installed("ScaledObject"):
        return []
    return [o for o in api.list("ScaledObject", namespace) if _scales(o, deployment)]


def hpas(api: Access, namespace: str, deployment: str) -> list[dict]:
    """HPAs on the Deployment, read with their conditions (autoscaling/v2, else v2beta2 on < 1.23)."""
    for kind in ("HorizontalPodAutoscaler/v2", "HorizontalPodAutoscaler/v2beta2"):
        if api.kind_installed(kind):
            return [o for o in api.list(kind, namespace) if _scales(o, deployment)]
    return []


def hpa_state(hpa: dict[str, Any]) -> str:
    """What the HPA says about scaling, e.g. 'ScalingActive=False/ScalingDisabled'."""
    for cond in hpa.get("status", {}).get("conditions") or []:
        if cond.get("type") == "ScalingActive":
            return f"ScalingActive={cond.get('status')}/{cond.get('reason')}"
    return "no ScalingActive condition yet"


class ScaleToZero(FieldAction):
    type = "ScaleToZero"

    def changes(self, ctx: ActionContext) -> list[Change]:
        name = ctx.target["metadata"]["name"]
        pause = join("metadata", "annotations", escape(KEDA_PAUSE))
        result = [
            Change(
                Ref("ScaledObject", ctx.namespace, so["metadata"]["name"]),
                {pause: "0"},
                "paused at 0",
            )
            for so in scaled_objects(ctx.api, ctx.namespace, name)
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
        if not name:
            return []
        paused = scaled_objects(ctx.api, ctx.namespace, name)
        return [Ref("ScaledObject", ctx.namespace, so["metadata"]["name"]) for so in paused] + [
            ctx.target_ref
        ]

    def verify(self, ctx: ActionContext) -> str:
        found = hpas(ctx.api, ctx.namespace, ctx.target["metadata"]["name"])
        return "; ".join(f"HPA {h['metadata']['name']}: {hpa_state(h)}" for h in found)

    def apply(self, ctx: ActionContext) -> Outcome:
        outcome = super().apply(ctx)
        # An HPA reports ScalingDisabled only after its next sync: look again until it does.
        waiting = "HPA " in outcome.message and "ScalingDisabled" not in outcome.message
        if outcome.state == "Applied" and waiting:
            outcome.recheck = HPA_RECHECK
        return outcome
