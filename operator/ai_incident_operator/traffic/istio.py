"""Router kind "VirtualService" (Istio, networking.istio.io): weighted HTTP routes.

For each `spec.http` entry that routes to a destination, the route list gets the
fallback destination at the policy's weight, and the other destinations share
the rest in the proportions they had; every other field of every destination
(subset, headers, port, ...) is kept. A destination already on the fallback host
is reused rather than added twice. Only HTTP routes are shifted: TCP and TLS
routes carry no model traffic the playbook knows of. Called through
`traffic.get_router("VirtualService")` by `actions.traffic`.
"""

from __future__ import annotations

import copy
from typing import Any

from .router import Router, RouterError, percent, reweigh, route_path


def _is_fallback(dest: dict[str, Any], service: str) -> bool:
    host = (dest.get("destination") or {}).get("host") or ""
    return host == service or host.startswith(f"{service}.")


def _weights(route: list[dict[str, Any]]) -> list[int]:
    # Istio: a lone destination gets all traffic; otherwise a missing weight is 0.
    if len(route) == 1 and route[0].get("weight") is None:
        return [100]
    return [int(r.get("weight") or 0) for r in route]


def _routed(entry: Any) -> bool:
    return isinstance(entry, dict) and any(
        isinstance(r, dict) and r.get("destination") for r in entry.get("route") or []
    )


class VirtualServiceRouter(Router):
    kind = "VirtualService"

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        http = router_obj.get("spec", {}).get("http") or []
        values = {
            route_path("/spec/http", http, i, "route"): self._route(
                entry["route"], fallback, weight
            )
            for i, entry in enumerate(http)
            if _routed(entry)
        }
        if not values:
            raise RouterError(
                f"VirtualService {router_obj['metadata']['name']} has no http route with a "
                "destination to shift: add one (spec.http[].route[].destination), or use the "
                "Service that serves the model as the router"
            )
        return values

    def _route(
        self, route: list[dict[str, Any]], fallback: dict[str, Any], weight: int
    ) -> list[dict[str, Any]]:
        route = copy.deepcopy(route)
        base = _weights(route)
        is_fallback = [_is_fallback(r, fallback["service"]) for r in route]
        if not any(is_fallback):
            destination: dict[str, Any] = {"host": fallback["service"]}
            if fallback.get("port"):
                destination["port"] = {"number": fallback["port"]}
            route.append({"destination": destination})
            base.append(0)
            is_fallback.append(True)
        for dest, share in zip(route, reweigh(base, is_fallback, weight), strict=True):
            dest["weight"] = share
        return route

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        # The smallest fallback share over the routes: 100 means every route is shifted.
        shares = [
            percent(
                _weights(entry["route"]),
                [_is_fallback(r, fallback["service"]) for r in entry["route"]],
            )
            for entry in router_obj.get("spec", {}).get("http") or []
            if _routed(entry)
        ]
        to_fallback = min(shares, default=0)
        return 100 - to_fallback, to_fallback
