"""TrafficShift: send the model's traffic to a safe fallback (the playbook's "switch to a fallback").

The policy names the object that routes traffic to the model (`router: {kind, name}`:
a Service, an Istio VirtualService, a Gateway API HTTPRoute, a KServe InferenceService,
an Envoy AI Gateway AIGatewayRoute or an Argo Rollout), the fallback (`fallback:
{service, port?}`, `{inferencePool}` or `{backend}`, as the router takes; none for an
InferenceService or a Rollout, whose previous or stable revision is the fallback) and
the percent to send there (`weight`, default 100). The router in `traffic` says which
fields get which values; the ledger in `FieldAction` records their originals, so
undo restores exactly them.

The engine may re-apply with other weights before undo (progressive undo: 75, 50,
0, then revert). Every shift is computed from the router as it was before any
mitigation (the ledger's originals put back), so 50 halves the original split,
not the shifted one.

Values under `/status/` (a Rollout's `status.abort`) cannot be written with the
object: its status subresource ignores them there. They are recorded in the ledger
with the object (one update), then written to the status subresource; undo writes
the original back there first and releases the ledger after, so that a crash in
between leaves a ledger that still says what to undo, never an abort nobody knows of.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from .. import ledger
from ..fieldpath import ABSENT, PathError, get, put
from ..resources import KINDS as RESOURCE_KINDS
from ..resources import Ref
from ..traffic import FALLBACK_KINDS, KINDS, STATUS_PREFIX, Router, RouterError, get_router
from .base import ActionContext, ActionError, Change, FieldAction, Outcome

DEFAULT_WEIGHT = 100
POOL_GROUP = "inference.networking.k8s.io"
# The backendRef kinds each route kind may send traffic to in its namespace, with their
# group; the first is what a ref without a kind means.
_REF_KINDS = {
    "HTTPRoute": {"Service": "", "InferencePool": POOL_GROUP},
    "AIGatewayRoute": {"AIServiceBackend": "", "InferencePool": POOL_GROUP},
}


def _router_spec(spec: dict[str, Any]) -> tuple[str, str]:
    router = spec.get("router") or {}
    return router.get("kind", ""), router.get("name", "")


def _fallback_spec(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("fallback") or {}


def _weight(spec: dict[str, Any]) -> int:
    return spec.get("weight", DEFAULT_WEIGHT)


def fallback_ref(spec: dict[str, Any], namespace: str) -> Ref | None:
    """The fallback object action SPEC names (a Service, an InferencePool, an
    AIServiceBackend), or None: its router takes none, or it names none."""
    kind, _ = _router_spec(spec)
    fallback = _fallback_spec(spec)
    if kind in KINDS:
        found = get_router(kind).fallback_ref(fallback)
    else:  # an unknown router: whatever the fallback names
        found = next(((k, fallback[key]) for key, k in FALLBACK_KINDS.items()
                      if fallback.get(key)), None)  # fmt: skip
    return Ref(found[0], namespace, found[1]) if found else None


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


def backends(kind: str, obj: dict[str, Any], namespace: str) -> tuple[list[Ref], list[str]]:
    """(objects in NAMESPACE that router OBJ sends traffic to, destinations that are not such).

    The objects are Services, InferencePools and AIServiceBackends. The Service router
    sends traffic to its own pods, and an InferenceService or a Rollout to its own
    revisions: each is its own backend.
    """
    found: list[Ref] = []
    foreign: list[str] = []
    spec = obj.get("spec") or {}

    def add(ref: Ref) -> None:
        if ref not in found:
            found.append(ref)

    if kind in ("Service", "InferenceService", "Rollout"):
        add(Ref(kind, namespace, obj["metadata"]["name"]))
    elif kind == "VirtualService":
        for entry in spec.get("http") or []:
            for dest in (entry.get("route") or []) if isinstance(entry, dict) else []:
                host = ((dest or {}).get("destination") or {}).get("host") or ""
                name = service_of_host(host, namespace)
                if name:
                    add(Ref("Service", namespace, name))
                else:
                    foreign.append(f"host {host!r}")
    elif kind in _REF_KINDS:
        groups = _REF_KINDS[kind]
        default = next(iter(groups))
        for rule in spec.get("rules") or []:
            for ref in (rule.get("backendRefs") or []) if isinstance(rule, dict) else []:
                ref_kind = ref.get("kind") or default
                where = ref.get("namespace") or namespace
                ours = (
                    ref_kind in groups
                    and (ref.get("group") or "") == groups[ref_kind]
                    and where == namespace
                    and ref.get("name")
                )
                if ours:
                    add(Ref(ref_kind, namespace, ref["name"]))
                else:
                    foreign.append(f"{ref_kind} {where}/{ref.get('name')}")
    return found, foreign


def _status_patch(values: dict[str, Any]) -> dict[str, Any]:
    """A merge patch of the status subresource setting VALUES (paths under /status/)."""
    patch: dict[str, Any] = {}
    for path, value in values.items():
        parts = [
            p.replace("~1", "/").replace("~0", "~") for p in path[len(STATUS_PREFIX) :].split("/")
        ]
        if any("[" in p for p in parts):
            raise ActionError(f"{path}: a list item in the status cannot be written by merge patch")
        node = patch
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = None if value is ABSENT else value  # null removes the field
    return patch


def _writes_status(kind: str) -> bool:
    return kind in KINDS and get_router(kind).writes_status


class TrafficShift(FieldAction):
    type = "TrafficShift"

    def key(self, spec: dict[str, Any]) -> str:
        kind, name = _router_spec(spec)
        return f"TrafficShift:{kind}/{name}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        problems = []
        kind, name = _router_spec(spec)
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
        if kind in KINDS:
            problems += self._fallback_problems(kind, _fallback_spec(spec))
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            problems.append(
                f"TrafficShift weight must be a whole percent from 1 to 100, not {weight!r}"
            )
        elif kind in KINDS and not get_router(kind).splits and weight != 100:
            how = (
                "an abort sends all of a Rollout's traffic to its stable revision"
                if kind == "Rollout"
                else "a Service moves all of its traffic or none"
            )
            problems.append(
                f"TrafficShift with router kind {kind} cannot send {weight}%: {how} "
                "(weight 100); to split, route through a VirtualService or an HTTPRoute"
            )
        service = _fallback_spec(spec).get("service")
        if kind == "Service" and name and name == service:
            problems.append(
                f"TrafficShift router and fallback are the same Service {name}: "
                "name the Service clients use as the router and a different one as the fallback"
            )
        return problems

    @staticmethod
    def _fallback_problems(kind: str, fallback: dict[str, Any]) -> list[str]:
        keys = get_router(kind).fallback_keys
        given = [k for k in (*FALLBACK_KINDS, "port") if fallback.get(k) is not None]
        named = [k for k in given if k in FALLBACK_KINDS]
        if not keys:
            if given:
                where = "previous revision" if kind == "InferenceService" else "stable revision"
                return [
                    f"TrafficShift with router kind {kind} takes no fallback (its {where} takes "
                    f"the traffic): remove fallback.{given[0]}"
                ]
            return []
        wanted = " or ".join(f"fallback.{k}" for k in keys)
        what = " or ".join(f"the {FALLBACK_KINDS[k]}" for k in keys)
        if not named:
            return [f"TrafficShift needs {wanted}: {what} that takes the traffic"]
        problems = []
        for key in named:
            if key not in keys:
                problems.append(
                    f"TrafficShift fallback.{key} does not fit router kind {kind}: use {wanted}"
                )
        if len(named) > 1:
            problems.append(
                f"TrafficShift names {' and '.join(f'fallback.{k}' for k in named)}: give one"
            )
        if "port" in given and "service" not in named:
            problems.append("TrafficShift fallback.port goes with fallback.service only")
        return problems

    def touches(self, ctx: ActionContext) -> list[Ref]:
        kind, name = _router_spec(ctx.spec)
        return [Ref(kind, ctx.namespace, name)] if kind in RESOURCE_KINDS and name else []

    def _read(self, ctx: ActionContext) -> tuple[Router, dict, dict]:
        """The router, the router object and the fallback object ({} for none); ActionError
        if one is missing."""
        kind, name = _router_spec(ctx.spec)
        try:
            router = get_router(kind)
        except RouterError as err:
            raise ActionError(str(err)) from None
        fallback = _fallback_spec(ctx.spec)
        obj = ctx.api.get(Ref(kind, ctx.namespace, name))
        if obj is None:
            if kind != "Service" and not ctx.api.kind_installed(kind):
                raise ActionError(f"{kind} {name} cannot be read: {_not_served(kind)}, or "
                                  "name another router in the policy")  # fmt: skip
            raise ActionError(
                f"router {kind} {name} not found in namespace {ctx.namespace}: create it, or "
                "point the policy's router at the object that routes traffic to the model"
            )
        ref = fallback_ref(ctx.spec, ctx.namespace)
        if ref is None:
            return router, obj, {}
        found = ctx.api.get(ref)
        if found is None:
            key = next(k for k, v in FALLBACK_KINDS.items() if v == ref.kind)
            if ref.kind != "Service" and not ctx.api.kind_installed(ref.kind):
                raise ActionError(
                    f"fallback {ref.kind} {ref.name} cannot be read: {_not_served(ref.kind)}; "
                    "nothing was changed"
                )
            raise ActionError(
                f"fallback {ref.kind} {ref.name} not found in namespace {ctx.namespace}: create "
                f"it, or point fallback.{key} at the {ref.kind} that should take the traffic; "
                "nothing was changed"
            )
        if ref.kind == "Service":
            ports = [p.get("port") for p in found.get("spec", {}).get("ports") or []]
            if fallback.get("port") and kind != "Service" and fallback["port"] not in ports:
                raise ActionError(
                    f"fallback Service {ref.name} has no port {fallback['port']} "
                    f"(it has {', '.join(map(str, ports)) or 'none'}): fix fallback.port"
                )
        return router, obj, found

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
        where = router.destination(obj, fallback)
        summary = f"{weight}% to {where} (was {before}%)"
        return [Change(Ref(kind, ctx.namespace, name), derive(obj), summary, derive)]

    def verify(self, ctx: ActionContext) -> str:
        try:
            router, obj, service = self._read(ctx)
        except ActionError:
            return ""  # gone since apply; the next reconcile says so
        fallback = _fallback_spec(ctx.spec)
        try:
            primary, to_fallback = router.weights(obj, fallback, service)
        except RouterError:
            return ""
        return f"now {to_fallback}% to {router.destination(obj, fallback)}, {primary}% primary"

    # --- values under /status/ ------------------------------------------------------------

    def _hold(self, ctx: ActionContext, change: Change, outcome: Outcome) -> None:
        super()._hold(ctx, change, outcome)  # the ledger (and the spec) first
        if outcome.state != "Failed" and any(p.startswith(STATUS_PREFIX) for p in change.values):
            obj = ctx.api.get(change.ref)
            held = ledger.holds(obj or {}, ctx.holder, ctx.key)
            if obj is None or held is None:
                return
            # What the ledger says is in force (a later holder's value stays so).
            probe = copy.deepcopy(obj)
            ledger.hold(probe, ctx.holder, ctx.key, held)
            outcome.changed |= self._put_status(ctx, change.ref, obj, probe, held)

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        for name in reversed(objects):
            ref = Ref.parse(ctx.namespace, name)
            if _writes_status(ref.kind):
                self._release_status(ctx, ref, ctx.known_originals.get(name) or {})
        return super().revert(ctx, objects)  # the ledger after: it still knows until then

    def _release_status(self, ctx: ActionContext, ref: Ref, known: dict[str, Any]) -> None:
        """Put the status values back as releasing this holder will leave them."""
        obj = ctx.api.get(ref)
        if obj is None:
            return
        probe = copy.deepcopy(obj)
        held = ledger.holds(obj, ctx.holder, ctx.key)
        if held is None and known:
            # The ledger lost this holder: released from the status's originals, as base does.
            held = {p: get(probe, p) for p in known}
            ledger.hold(probe, ctx.holder, ctx.key, held, known)
        if held is None:
            return
        ledger.release(probe, ctx.holder, ctx.key)
        self._put_status(ctx, ref, obj, probe, held)

    @staticmethod
    def _put_status(
        ctx: ActionContext, ref: Ref, obj: dict, wanted: dict, paths: dict[str, Any]
    ) -> bool:
        """Write the status PATHS as WANTED has them where OBJ differs; whether it wrote."""
        values = {
            p: get(wanted, p)
            for p in paths
            if p.startswith(STATUS_PREFIX) and get(obj, p) != get(wanted, p)
        }
        if not values:
            return False
        ctx.api.patch_status(ref, _status_patch(values))
        return True


def _not_served(kind: str) -> str:
    k = RESOURCE_KINDS[kind]
    return f"this cluster does not serve {k.plural}.{k.group}/{k.version}; install its CRDs"
