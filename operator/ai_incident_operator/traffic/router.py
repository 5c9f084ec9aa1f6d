"""The Router interface: how TrafficShift reads and sets the split between a model and its fallback.

Modelled on Flagger's `pkg/router`: one small interface, one module per backend
(`service`, `istio`, `gateway`, `kserve`, `aigateway`, `rollout`), chosen by
`traffic.get_router(kind)`. Routers are pure: they take the router object as a dict
and answer the field values to set, as `fieldpath` paths; `actions.traffic.TrafficShift`
reads the objects and writes them through the ledger, so undo restores exactly those
paths. Paths under `/status/` are written through the object's status subresource
(the Rollout router's abort), the ledger still in the object's annotations.

A router names its fallback (`fallback_ref`): a Service, an InferencePool, an
AIServiceBackend, or none when the router itself knows where the traffic goes back to
(a KServe InferenceService's previous revision, an Argo Rollout's stable one).

The helpers below are the arithmetic the weighted backends share: weights are
integer percentages that always sum to 100.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..fieldpath import join

# A list item is addressed by name only when the name survives the path syntax
# (no "/", "]", "~"); else by index.
_SAFE_NAME = re.compile(r"^[^/\]~\[]+$")


# The policy's `fallback` keys and the kind of object each names.
FALLBACK_KINDS = {
    "service": "Service",
    "inferencePool": "InferencePool",
    "backend": "AIServiceBackend",
}


class RouterError(ValueError):
    """The router object cannot be shifted as asked; the message says what to fix."""


class Router:
    """One kind of object that routes traffic (a Service, a VirtualService, an HTTPRoute, ...).

    FALLBACK is the policy's `fallback` (`{service, port?}`, `{inferencePool}` or
    `{backend}`; `{}` for routers that take none); FALLBACK_SERVICE is the object
    `fallback_ref` names, as a dict (a Service's selector and ports), `{}` when there is
    none. The methods are pure and may raise RouterError with a message a person can
    act on.
    """

    kind: ClassVar[str]
    # Whether part of the traffic can go to the fallback; when not, only 0 and 100.
    splits: ClassVar[bool] = True
    # The keys of `fallback` this router takes, one of them required; () takes no fallback.
    fallback_keys: ClassVar[tuple[str, ...]] = ("service",)
    # Whether its values include paths under /status/ (written through the status subresource).
    writes_status: ClassVar[bool] = False

    def fallback_ref(self, fallback: dict[str, Any]) -> tuple[str, str] | None:
        """(kind, name) of the fallback object to read, in the router's namespace; None: none."""
        for key, kind in FALLBACK_KINDS.items():
            if key in self.fallback_keys and fallback.get(key):
                return kind, str(fallback[key])
        return None

    def destination(self, router_obj: dict[str, Any], fallback: dict[str, Any]) -> str:
        """Where the shifted traffic goes, in words ("chat-fallback", "InferencePool safe")."""
        ref = self.fallback_ref(fallback)
        if ref is None:
            return "the fallback"
        return ref[1] if ref[0] == "Service" else f"{ref[0]} {ref[1]}"

    def shift(
        self,
        router_obj: dict[str, Any],
        fallback: dict[str, Any],
        weight: int,
        fallback_service: dict[str, Any],
    ) -> dict[str, Any]:
        """Field values that send WEIGHT percent (0..100) to the fallback, the rest as before.

        ROUTER_OBJ should be the object as it was before any mitigation, so that
        intermediate weights (progressive undo: 75, 50, 0) scale the original split.
        """
        raise NotImplementedError

    def weights(
        self, router_obj: dict[str, Any], fallback: dict[str, Any], fallback_service: dict[str, Any]
    ) -> tuple[int, int]:
        """The current (primary, fallback) percentages, summing to 100."""
        raise NotImplementedError


def split(total: int, base: list[int]) -> list[int]:
    """TOTAL shared in proportion to BASE, as integers summing to TOTAL.

    All-zero BASE shares equally. The rounding remainder goes to the first item
    that already had a share, so an item at 0 (a dark canary) stays at 0.
    """
    if not base:
        return []
    if sum(base) <= 0:
        base = [1] * len(base)
    whole = sum(base)
    shares = [total * w // whole for w in base]
    first = next(i for i, w in enumerate(base) if w > 0)
    shares[first] += total - sum(shares)
    return shares


def reweigh(base: list[int], is_fallback: list[bool], weight: int) -> list[int]:
    """New weights: WEIGHT percent shared by the fallback items, the rest by the others.

    Each group keeps the proportions it had in BASE. With no other items, the
    fallback items take everything: weights never sum to less than 100.
    """
    primary = [i for i, fb in enumerate(is_fallback) if not fb]
    fallback = [i for i, fb in enumerate(is_fallback) if fb]
    if not primary:
        weight = 100
    elif not fallback:
        weight = 0
    result = [0] * len(base)
    for group, total in ((primary, 100 - weight), (fallback, weight)):
        for i, share in zip(group, split(total, [base[i] for i in group]), strict=True):
            result[i] = share
    return result


def scale(share: int, weight: int) -> int:
    """What is left of SHARE percent when WEIGHT percent of it goes elsewhere (rounded)."""
    return (share * (100 - weight) + 50) // 100


def percent(weights: list[int], is_fallback: list[bool]) -> int:
    """The percentage of traffic the fallback items get under (relative) WEIGHTS."""
    whole = sum(weights)
    if whole <= 0:
        return 0
    to_fallback = sum(w for w, fb in zip(weights, is_fallback, strict=True) if fb)
    return round(100 * to_fallback / whole)


def item_path(parent: str, items: list[Any], index: int) -> str:
    """The path of ITEMS[INDEX] under PARENT: by its name when that is unique, else by index.

    A name keeps meaning the same item when someone adds or reorders items during
    the incident, so undo puts the original back where it belongs.
    """
    name = items[index].get("name") if isinstance(items[index], dict) else None
    names = [i.get("name") for i in items if isinstance(i, dict)]
    if isinstance(name, str) and _SAFE_NAME.match(name) and names.count(name) == 1:
        return f"{parent}[name={name}]"
    return f"{parent}[{index}]"


def route_path(parent: str, items: list[Any], index: int, field: str) -> str:
    return item_path(parent, items, index) + join(field)
