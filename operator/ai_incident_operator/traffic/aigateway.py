"""Router kind "AIGatewayRoute" (Envoy AI Gateway, aigateway.envoyproxy.io/v1beta1): backend weights.

An AIGatewayRoute's rules route to AIServiceBackends (`spec.rules[].backendRefs[]`,
each with a relative `weight`, default 1, as Gateway API's, and a `priority`, default
0). For each rule that routes to AIServiceBackends, the fallback AIServiceBackend
(`fallback: {backend: NAME}`) gets the policy's weight and the other backends share
the rest in the proportions they had; every other field of every backendRef
(`modelNameOverride`, header and body mutations, ...) is kept, and a backendRef
already on the fallback is reused rather than added twice.

Envoy sends traffic to a lower priority (a higher number) only when the higher one
fails, so weights split traffic only within one priority: the fallback is given the
priority of the backends it shares with (the highest among those that had traffic),
and undo puts its own back. A rule whose backend is an InferencePool is left as it is:
AI Gateway allows one InferencePool per rule and no AIServiceBackend beside it (shift
that traffic with an HTTPRoute over InferencePools). An added backendRef carries no
`modelNameOverride`: list the fallback in the route beforehand (weight 0) with the
model name it serves. Called through `traffic.get_router("AIGatewayRoute")` by
`actions.traffic`.
"""

from __future__ import annotations

import copy
from typing import Any

from .gateway import POOL_GROUP
from .router import Router, RouterError, percent, reweigh, route_path

BACKEND_KIND = "AIServiceBackend"


def is_pool_ref(ref: dict[str, Any]) -> bool:
    return ref.get("group") == POOL_GROUP


def _is_fallback(ref: dict[str, Any], backend: str, namespace: str | None) -> bool:
    return (
        not is_pool_ref(ref)
        and ref.get("kind", BACKEND_KIND) == BACKEND_KIND
        and ref.get("name") == backend
        # An empty namespace is the route's own, as AI Gateway reads it.
        and (ref.get("namespace") or namespace) == namespace
    )


def _weights(refs: list[dict[str, Any]]) -> list[int]:
    return [int(1 if r.get("weight") is None else r["weight"]) for r in refs]


def _priority(ref: dict[str, Any]) -> int:
    return int(ref.get("priority") or 0)


def _served(refs: list[dict[str, Any]]) -> list[int]:
    """The weights that take traffic while all is well: those of the highest priority that
    has any weight (a lower priority is a failover, idle until that one fails)."""
    weights = _weights(refs)
    level = min((_priority(r) for r, w in zip(refs, weights, strict=True) if w), default=0)
    return [w if _priority(r) == level else 0 for r, w in zip(refs, weights, strict=True)]


def _shiftable(rule: Any) -> bool:
    refs = rule.get("backendRefs") if isinstance(rule, dict) else None
    return bool(refs) and not any(is_pool_ref(r) for r in refs if isinstance(r, dict))


class AIGatewayRouteRouter(Router):
    kind = "AIGatewayRoute"
    fallback_keys = ("backend",)

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        rules = router_obj.get("spec", {}).get("rules") or []
        namespace = router_obj["metadata"].get("namespace")
        values = {
            route_path("/spec/rules", rules, i, "backendRefs"): self._refs(
                rule["backendRefs"], fallback["backend"], namespace, weight
            )
            for i, rule in enumerate(rules)
            if _shiftable(rule)
        }
        if not values:
            raise RouterError(
                f"AIGatewayRoute {router_obj['metadata']['name']} has no rule with "
                "AIServiceBackend backendRefs to shift (a rule over an InferencePool takes no "
                "other backend): add one, or shift the pool's traffic with an HTTPRoute router"
            )
        return values

    def _refs(
        self, refs: list[dict[str, Any]], backend: str, namespace: str | None, weight: int
    ) -> list[dict[str, Any]]:
        refs = copy.deepcopy(refs)
        base = _weights(refs)
        is_fallback = [_is_fallback(r, backend, namespace) for r in refs]
        serving = [r for r, w, fb in zip(refs, base, is_fallback, strict=True) if w and not fb]
        others = serving or [r for r, fb in zip(refs, is_fallback, strict=True) if not fb]
        level = min((_priority(r) for r in others), default=0)
        if not any(is_fallback):
            # weight and priority written out: the apiserver would default them, and the
            # ledger would then read the stored ref as changed (contested).
            refs.append({"name": backend, "priority": level})
            base.append(0)
            is_fallback.append(True)
        for ref, share, fb in zip(
            refs, reweigh(base, is_fallback, weight), is_fallback, strict=True
        ):
            ref["weight"] = share
            if fb and _priority(ref) != level:
                ref["priority"] = level
        return refs

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        # The smallest fallback share over the rules: 100 means every rule is shifted.
        namespace = router_obj["metadata"].get("namespace")
        backend = fallback.get("backend", "")
        shares = [
            percent(
                _served(rule["backendRefs"]),
                [_is_fallback(r, backend, namespace) for r in rule["backendRefs"]],
            )
            for rule in router_obj.get("spec", {}).get("rules") or []
            if _shiftable(rule)
        ]
        to_fallback = min(shares, default=0)
        return 100 - to_fallback, to_fallback
