"""TrafficShift: send the model's traffic to a safe fallback (the playbook's "switch to a fallback").

The policy names the object that routes traffic to the model (`router: {kind, name}`:
a Service, an Istio VirtualService or a Gateway API HTTPRoute), the fallback
Service (`fallback: {service, port?}`) and the percent to send there (`weight`,
default 100). The backend in `traffic` says which fields get which values; the
ledger in `FieldAction` records their originals, so undo restores exactly them.

The engine may re-apply with other weights before undo (progressive undo: 75, 50,
0, then revert). Every shift is computed from the router as it was before any
mitigation (the ledger's originals put back), so 50 halves the original split,
not the shifted one.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from .. import ledger
from ..fieldpath import PathError, put
from ..resources import KINDS as RESOURCE_KINDS
from ..resources import Ref
from ..traffic import KINDS, Router, RouterError, get_router
from .base import ActionContext, ActionError, Change, FieldAction

DEFAULT_WEIGHT = 100


def _router_spec(spec: dict[str, Any]) -> tuple[str, str]:
    router = spec.get("router") or {}
    return router.get("kind", ""), router.get("name", "")


def _fallback_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("fallback") or {}


def _weight(spec: dict[str, Any]) -> int:
    return spec.get("weight", DEFAULT_WEIGHT)


def unmitigated(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of OBJ as it was before any mitigation: the ledger's originals put back."""
    base = copy.deepcopy(obj)
    for path, value in ledger.originals(obj).items():
        # PathError: the list it was in has since shrunk; the current value is the best guess.
        with contextlib.suppress(PathError):
            put(base, path, value)
    return base


def service_of_host(host: str, namespace: str) -> str | None:
    """The Service in NAMESPACE that an Istio host names ("chat", "chat.ns", "chat.ns.svc...")."""
    parts = host.split(".")
    if not parts[0] or "*" in host or (len(parts) > 1 and parts[1] != namespace):
        return None
    if len(parts) > 2 and parts[2] != "svc":
        return None
    return parts[0]


def backends(kind: str, obj: dict[str, Any], namespace: str) -> tuple[set[str], list[str]]:
    """(Services in NAMESPACE that router OBJ sends traffic to, destinations that are not such).

    The Service router sends traffic to its own pods: it is its own backend.
    """
    services: set[str] = set()
    foreign: list[str] = []
    spec = obj.get("spec") or {}
    if kind == "Service":
        services.add(obj["metadata"]["name"])
    elif kind == "VirtualService":
        for entry in spec.get("http") or []:
            for dest in (entry.get("route") or []) if isinstance(entry, dict) else []:
                host = ((dest or {}).get("destination") or {}).get("host") or ""
                name = service_of_host(host, namespace)
                if name:
                    services.add(name)
                else:
                    foreign.append(f"host {host!r}")
    elif kind == "HTTPRoute":
        for rule in spec.get("rules") or []:
            for ref in (rule.get("backendRefs") or []) if isinstance(rule, dict) else []:
                ours = (
                    ref.get("kind", "Service") == "Service"
                    and ref.get("group", "") == ""
                    and ref.get("namespace", namespace) == namespace
                )
                if ours and ref.get("name"):
                    services.add(ref["name"])
                else:
                    where = ref.get("namespace", namespace)
                    foreign.append(f"{ref.get('kind', 'Service')} {where}/{ref.get('name')}")
    return services, foreign


class TrafficShift(FieldAction):
    type = "TrafficShift"

    def key(self, spec: dict[str, Any]) -> str:
        kind, name = _router_spec(spec)
        return f"TrafficShift:{kind}/{name}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        problems = []
        kind, name = _router_spec(spec)
        service = _fallback_spec(spec).get("service")
        weight = _weight(spec)
        if not kind or not name:
            problems.append(
                "TrafficShift needs router.kind and router.name: the object that routes "
                f"traffic to the model ({', '.join(KINDS)})"
            )
        elif kind not in KINDS:
            problems.append(
                f"TrafficShift router.kind {kind!r} is not supported: use one of {', '.join(KINDS)}"
            )
        if not service:
            problems.append(
                "TrafficShift needs fallback.service: the Service that takes the traffic"
            )
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            problems.append(
                f"TrafficShift weight must be a whole percent from 1 to 100, not {weight!r}"
            )
        elif kind in KINDS and not get_router(kind).splits and weight != 100:
            problems.append(
                f"TrafficShift with router kind {kind} cannot send {weight}%: a Service moves "
                "all of its traffic or none (weight 100); to split, route through a "
                "VirtualService or an HTTPRoute"
            )
        if kind == "Service" and name and name == service:
            problems.append(
                f"TrafficShift router and fallback are the same Service {name}: "
                "name the Service clients use as the router and a different one as the fallback"
            )
        return problems

    def touches(self, ctx: ActionContext) -> list[Ref]:
        kind, name = _router_spec(ctx.spec)
        return [Ref(kind, ctx.namespace, name)] if kind in RESOURCE_KINDS and name else []

    def _read(self, ctx: ActionContext) -> tuple[Router, dict, dict]:
        """The router, the router object and the fallback Service; ActionError if one is missing."""
        kind, name = _router_spec(ctx.spec)
        try:
            router = get_router(kind)
        except RouterError as err:
            raise ActionError(str(err)) from None
        fallback = _fallback_spec(ctx.spec)
        obj = ctx.api.get(Ref(kind, ctx.namespace, name))
        if obj is None:
            if kind != "Service" and not ctx.api.kind_installed(kind):
                k = RESOURCE_KINDS[kind]
                raise ActionError(
                    f"{kind} {name} cannot be read: this cluster does not serve "
                    f"{k.plural}.{k.group}/{k.version}; install its CRDs, or name another "
                    "router in the policy"
                )
            raise ActionError(
                f"router {kind} {name} not found in namespace {ctx.namespace}: create it, or "
                "point the policy's router at the object that routes traffic to the model"
            )
        service = ctx.api.get(Ref("Service", ctx.namespace, fallback.get("service", "")))
        if service is None:
            raise ActionError(
                f"fallback Service {fallback.get('service')} not found in namespace "
                f"{ctx.namespace}: create it, or point fallback.service at the Service that "
                "should take the traffic; nothing was changed"
            )
        ports = [p.get("port") for p in service.get("spec", {}).get("ports") or []]
        if fallback.get("port") and kind != "Service" and fallback["port"] not in ports:
            raise ActionError(
                f"fallback Service {fallback['service']} has no port {fallback['port']} "
                f"(it has {', '.join(map(str, ports)) or 'none'}): fix fallback.port"
            )
        return router, obj, service

    def changes(self, ctx: ActionContext) -> list[Change]:
        kind, name = _router_spec(ctx.spec)
        router, obj, service = self._read(ctx)
        fallback = _fallback_spec(ctx.spec)
        weight = _weight(ctx.spec)

        def derive(current: dict) -> dict:
            try:
                return router.shift(unmitigated(current), fallback, weight, service)
            except RouterError as err:
                raise ActionError(str(err)) from None

        try:
            _, before = router.weights(unmitigated(obj), fallback, service)
        except RouterError as err:
            raise ActionError(str(err)) from None
        summary = f"{weight}% to {fallback['service']} (was {before}%)"
        return [Change(Ref(kind, ctx.namespace, name), derive(obj), summary, derive)]

    def verify(self, ctx: ActionContext) -> str:
        try:
            router, obj, service = self._read(ctx)
        except ActionError:
            return ""  # gone since apply; the next reconcile says so
        try:
            primary, to_fallback = router.weights(obj, _fallback_spec(ctx.spec), service)
        except RouterError:
            return ""
        return f"now {to_fallback}% to {_fallback_spec(ctx.spec)['service']}, {primary}% primary"
