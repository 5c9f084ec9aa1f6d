"""Router kind "Rollout" (Argo Rollouts, argoproj.io/v1alpha1): abort the canary in flight.

`kubectl argo rollouts abort` sets `status.abort: true` through the Rollout's status
subresource; the controller then sends all traffic to the stable revision and
scales the canary down, while `spec.template` stays the new version. Undo puts
`status.abort` back as it was (absent, as a fresh rollout has it): the controller
then tries the new version again from its first step, as `kubectl argo rollouts
retry` would. An abort moves all of the traffic or none (weight 100 only). No
fallback object: the stable revision is the fallback. The path is under `/status/`,
so `actions.traffic` writes it through the status subresource while the ledger
stays in the Rollout's annotations. Called through `traffic.get_router("Rollout")`.
"""

from __future__ import annotations

from typing import Any

from ..fieldpath import get
from .router import Router, RouterError

ABORT = "/status/abort"


class RolloutRouter(Router):
    kind = "Rollout"
    splits = False
    fallback_keys = ()
    writes_status = True

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        if weight not in (0, 100):
            raise RouterError(
                f"Rollout {router_obj['metadata']['name']} cannot split traffic: an abort sends "
                "all of it to the stable revision (weight 100)"
            )
        # 0: the abort as it was before any mitigation (ABSENT when there was none).
        return {ABORT: True if weight == 100 else get(router_obj, ABORT)}

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        if get(router_obj, ABORT) is True:
            return 0, 100
        # With traffic routing, Argo reports the split it set; without, the canary in
        # flight counts as taking it all (what an abort takes away).
        stable = get(router_obj, "/status/canary/weights/stable/weight")
        if isinstance(stable, int) and not isinstance(stable, bool) and 0 <= stable <= 100:
            return 100 - stable, stable
        return 100, 0

    def destination(self, router_obj: dict[str, Any], fallback: dict[str, Any]) -> str:
        stable = get(router_obj, "/status/stableRS")
        if isinstance(stable, str) and stable:
            return f"the stable revision (ReplicaSet hash {stable})"
        return "the stable revision"
