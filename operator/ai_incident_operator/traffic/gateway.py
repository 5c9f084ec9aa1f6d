"""Router kind "HTTPRoute" (Gateway API, gateway.networking.k8s.io): weighted backendRefs.

For each `spec.rules` entry with backendRefs, the fallback gets the policy's weight
and the other backends share the rest in the proportions they had; every other field
of every backendRef (filters, port, ...) is kept. The fallback is a Service
(`fallback: {service, port?}`) or a Gateway API Inference Extension InferencePool
(`fallback: {inferencePool: NAME}`: a backendRef of group inference.networking.k8s.io,
kind InferencePool, the way an HTTPRoute routes to a pool of model servers). A
backendRef already on the fallback is reused rather than added twice. Gateway API
weights are relative (missing means 1); the ones written here sum to 100, so they
read as percentages. Called through `traffic.get_router("HTTPRoute")` by
`actions.traffic`.
"""

from __future__ import annotations

import copy
from typing import Any

from .router import Router, RouterError, percent, reweigh, route_path

POOL_GROUP = "inference.networking.k8s.io"
POOL_KIND = "InferencePool"


def is_pool_ref(ref: dict[str, Any]) -> bool:
    """Whether backendRef REF names an InferencePool (inference.networking.k8s.io)."""
    return ref.get("group") == POOL_GROUP and ref.get("kind") == POOL_KIND


def _is_fallback(ref: dict[str, Any], fallback: dict[str, Any], namespace: str | None) -> bool:
    if ref.get("namespace", namespace) != namespace:
        return False
    if fallback.get("inferencePool"):
        return is_pool_ref(ref) and ref.get("name") == fallback["inferencePool"]
    return (
        ref.get("name") == fallback.get("service")
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") == ""
    )


def _weights(refs: list[dict[str, Any]]) -> list[int]:
    return [int(1 if r.get("weight") is None else r["weight"]) for r in refs]


def _service_ports(service: dict[str, Any]) -> list[int]:
    return [p["port"] for p in service.get("spec", {}).get("ports") or [] if "port" in p]


class HTTPRouteRouter(Router):
    kind = "HTTPRoute"
    fallback_keys = ("service", "inferencePool")

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
        is_fallback = [_is_fallback(r, fallback, namespace) for r in refs]
        if not any(is_fallback):
            refs.append(self._added(router_obj, refs, fallback, fallback_service))
            base.append(0)
            is_fallback.append(True)
        for ref, share in zip(refs, reweigh(base, is_fallback, weight), strict=True):
            ref["weight"] = share
        return refs

    def _added(
        self,
        router_obj: dict[str, Any],
        refs: list[dict[str, Any]],
        fallback: dict[str, Any],
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        """The backendRef that the fallback gets where it is not there yet."""
        if fallback.get("inferencePool"):
            # A pool is addressed by group and kind, never a port: its targetPorts say
            # where its model servers listen.
            return {"group": POOL_GROUP, "kind": POOL_KIND, "name": fallback["inferencePool"]}
        primary = next((r["port"] for r in refs if r.get("port")), None)
        # kind written out as the apiserver defaults it, so the ledger never reads the
        # stored ref as changed (contested); group left out: absent means core, and a
        # 1.20 apiserver rejects "" there.
        return {
            "kind": "Service",
            "name": fallback["service"],
            "port": self._port(router_obj, fallback, primary, fallback_service),
        }

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
                [_is_fallback(r, fallback, namespace) for r in rule["backendRefs"]],
            )
            for rule in router_obj.get("spec", {}).get("rules") or []
            if isinstance(rule, dict) and rule.get("backendRefs")
        ]
        to_fallback = min(shares, default=0)
        return 100 - to_fallback, to_fallback
