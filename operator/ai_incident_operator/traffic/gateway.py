"""Router kind "HTTPRoute" (Gateway API, gateway.networking.k8s.io): weighted backendRefs.

For each `spec.rules` entry with backendRefs, the fallback Service gets the
policy's weight and the other backends share the rest in the proportions they
had; every other field of every backendRef (filters, port, ...) is kept. A
backendRef already on the fallback Service is reused rather than added twice.
Gateway API weights are relative (missing means 1); the ones written here sum
to 100, so they read as percentages. Called through `traffic.get_router("HTTPRoute")`
by `actions.traffic`.
"""

from __future__ import annotations

import copy
from typing import Any

from .router import Router, RouterError, percent, reweigh, route_path


def _is_fallback(ref: dict[str, Any], service: str, namespace: str | None) -> bool:
    return (
        ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
        and ref.get("namespace", namespace) == namespace
    )


def _weights(refs: list[dict[str, Any]]) -> list[int]:
    return [int(1 if r.get("weight") is None else r["weight"]) for r in refs]


def _service_ports(service: dict[str, Any]) -> list[int]:
    return [p["port"] for p in service.get("spec", {}).get("ports") or [] if "port" in p]


class HTTPRouteRouter(Router):
    kind = "HTTPRoute"

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        rules = router_obj.get("spec", {}).get("rules") or []
        values = {
            route_path("/spec/rules", rules, i, "backendRefs"): self._refs(
                router_obj, rule["backendRefs"], fallback, weight, fallback_service
            )
            for i, rule in enumerate(rules)
            if isinstance(rule, dict) and rule.get("backendRefs")
        }
        if not values:
            raise RouterError(
                f"HTTPRoute {router_obj['metadata']['name']} has no rule with backendRefs to "
                "shift: add one (spec.rules[].backendRefs), or use the Service that serves the "
                "model as the router"
            )
        return values

    def _refs(
        self,
        router_obj: dict[str, Any],
        refs: list[dict[str, Any]],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> list[dict[str, Any]]:
        refs = copy.deepcopy(refs)
        namespace = router_obj["metadata"].get("namespace")
        base = _weights(refs)
        is_fallback = [_is_fallback(r, fallback["service"], namespace) for r in refs]
        if not any(is_fallback):
            primary = next((r["port"] for r in refs if r.get("port")), None)
            # kind written out as the apiserver defaults it, so the ledger never reads
            # the stored ref as changed (contested); group left out: absent means core,
            # and a 1.20 apiserver rejects "" there.
            refs.append(
                {
                    "kind": "Service",
                    "name": fallback["service"],
                    "port": self._port(router_obj, fallback, primary, fallback_service),
                }
            )
            base.append(0)
            is_fallback.append(True)
        for ref, share in zip(refs, reweigh(base, is_fallback, weight), strict=True):
            ref["weight"] = share
        return refs

    def _port(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        primary: int | None,
        fallback_service: dict[str, Any],
    ) -> int:
        """fallback.port, else the primary's port if the fallback serves it, else its only port."""
        if fallback.get("port"):
            return int(fallback["port"])
        ports = _service_ports(fallback_service)
        if primary is not None and (primary in ports or not ports):
            return primary
        if len(ports) == 1:
            return ports[0]
        raise RouterError(
            f"HTTPRoute {router_obj['metadata']['name']}: set fallback.port, the port of "
            f"Service {fallback['service']} to send traffic to "
            f"(it has {', '.join(map(str, ports)) or 'no ports'})"
        )

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        # The smallest fallback share over the rules: 100 means every rule is shifted.
        namespace = router_obj["metadata"].get("namespace")
        shares = [
            percent(
                _weights(rule["backendRefs"]),
                [_is_fallback(r, fallback["service"], namespace) for r in rule["backendRefs"]],
            )
            for rule in router_obj.get("spec", {}).get("rules") or []
            if isinstance(rule, dict) and rule.get("backendRefs")
        ]
        to_fallback = min(shares, default=0)
        return 100 - to_fallback, to_fallback
