"""Router kind "Service": point the model's Service at the fallback's pods.

A plain Service cannot split traffic, so the shift is all or nothing: the router
Service's `/spec/selector` becomes the fallback Service's selector (the whole map),
and clients of the router Service reach the fallback pods from then on. The
fallback pods must serve the router Service's target ports. Called through
`traffic.get_router("Service")` by `actions.traffic`.
"""

from __future__ import annotations

from typing import Any

from ..fieldpath import ABSENT
from .router import Router, RouterError

SELECTOR = "/spec/selector"


def _selector(service: dict[str, Any]) -> dict[str, str]:
    return dict(service.get("spec", {}).get("selector") or {})


class ServiceRouter(Router):
    kind = "Service"
    splits = False

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        name = router_obj["metadata"]["name"]
        if weight not in (0, 100):
            raise RouterError(
                f"Service {name} cannot split traffic, it sends all of it to one selector: "
                f"use weight 100, or a VirtualService or HTTPRoute router for {weight}%"
            )
        if weight == 0:
            # All back to the model: the router's own selector (ABSENT if it had none).
            own = router_obj.get("spec", {}).get("selector")
            return {SELECTOR: dict(own) if own else ABSENT}
        selector = _selector(fallback_service)
        if not selector:
            raise RouterError(
                f"fallback Service {fallback['service']} has no selector, so there are no pods "
                f"to send Service {name}'s traffic to: give it a selector"
            )
        return {SELECTOR: selector}

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        target = _selector(fallback_service)
        if target and _selector(router_obj) == target:
            return 0, 100
        return 100, 0
