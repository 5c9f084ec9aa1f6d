"""Router kind "InferenceService" (KServe, serving.kserve.io/v1beta1): back to the previous revision.

KServe's own canary rollout: `spec.predictor.canaryTrafficPercent` is the share of
the latest revision, the rest goes to the last revision rolled out with all of the
traffic (`status.components.predictor.latestRolledoutRevision`); KServe's documented
rollback sets it to 0. In RawDeployment mode the `spec.canary[]` list (a second
predictor per entry, each with `trafficPercent`) does the same, the main predictor
taking what the entries leave. The router moves those shares toward 0: weight 100
pins every request to the previous revision; an intermediate weight (stepped undo)
gives the canary that part of its original share back (20% canary, weight 75: 5%).
No fallback object: the previous revision is the fallback. An InferenceService with
no canary in flight has no previous revision taking traffic, and that is an error.
Called through `traffic.get_router("InferenceService")` by `actions.traffic`.
"""

from __future__ import annotations

from typing import Any

from ..fieldpath import get
from .router import Router, RouterError, scale

CANARY_PERCENT = "/spec/predictor/canaryTrafficPercent"
CANARY_LIST = "/spec/canary"


def _percent(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list_shares(obj: dict[str, Any]) -> list[int] | None:
    """The RawDeployment canaries' trafficPercent, in order; None without that list."""
    items = get(obj, CANARY_LIST)
    if not isinstance(items, list) or not items:
        return None
    return [(_percent(i.get("trafficPercent")) or 0) if isinstance(i, dict) else 0 for i in items]


class InferenceServiceRouter(Router):
    kind = "InferenceService"
    fallback_keys = ()

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        share = _percent(get(router_obj, CANARY_PERCENT))
        if share is not None:
            values[CANARY_PERCENT] = scale(share, weight)
        shares = _list_shares(router_obj)
        if shares is not None:
            # Each canary keeps that part of its own share (never more than it had); the
            # main predictor takes the rest, so what a shift takes goes back to it.
            for i, share in enumerate(shares):
                values[f"{CANARY_LIST}[{i}]/trafficPercent"] = scale(share, weight)
        if not values:
            raise RouterError(
                f"InferenceService {router_obj['metadata']['name']} has no canary in flight "
                "(neither spec.predictor.canaryTrafficPercent nor spec.canary[]): all of its "
                "traffic is on its latest revision and there is no previous one to send it "
                "back to; use ScaleToZero, or a router with a fallback (an HTTPRoute, a "
                "VirtualService) in front of it"
            )
        return values

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        # (canary, previous revision); with both forms, the larger canary share counts.
        # No canary at all: everything is on the latest revision.
        shares = _list_shares(router_obj)
        canary = [_percent(get(router_obj, CANARY_PERCENT))]
        canary += [sum(shares)] if shares is not None else []
        found = [c for c in canary if c is not None]
        if not found:
            return 100, 0
        share = min(max(max(found), 0), 100)
        return share, 100 - share

    def destination(self, router_obj: dict[str, Any], fallback: dict[str, Any]) -> str:
        revision = get(router_obj, "/status/components/predictor/latestRolledoutRevision")
        if isinstance(revision, str) and revision:
            return f"the previous revision ({revision})"
        return "the previous revision"
