"""The model workloads the operator may target, one adapter per kind (see `base`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..access import Access

from .base import Body, Container, PodSpec, Workload, as_pod
from .kserve import InferenceService, LLMInferenceService
from .leaderworkerset import LeaderWorkerSet
from .replicated import Deployment, Rollout, StatefulSet

ADAPTERS: dict[str, Workload] = {
    w.kind: w
    for w in (
        Deployment(),
        StatefulSet(),
        Rollout(),
        LeaderWorkerSet(),
        InferenceService(),
        LLMInferenceService(),
    )
}
KINDS = tuple(ADAPTERS)  # in the order a selector lists them
DEFAULT_KIND = "Deployment"


class UnknownKind(ValueError):
    """spec.target.kind names a kind the operator has no adapter for."""


def adapter(kind: str | None) -> Workload:
    """The adapter for KIND (absent: Deployment)."""
    try:
        return ADAPTERS[kind or DEFAULT_KIND]
    except KeyError:
        raise UnknownKind(
            f"kind {kind!r} is not a workload the operator can target; one of: {', '.join(KINDS)}"
        ) from None


# The short names kubectl knows each kind by (the built-ins' and the CRDs' shortNames).
SHORT_NAMES = {
    "Deployment": "deploy", "StatefulSet": "sts", "Rollout": "ro", "LeaderWorkerSet": "lws",
    "InferenceService": "isvc", "LLMInferenceService": "llmisvc",
}  # fmt: skip


def parse_target(value: str) -> tuple[str, str]:
    """(kind, name) of VALUE as kubectl users write it: `NAME` (a Deployment),
    `KIND/NAME` with KIND a kind, its singular or plural (any case), its short name
    (`isvc/x`), optionally with its API group (`deployments.apps/x`). Raises
    UnknownKind for a kind that is not a workload the operator can target."""
    from ..resources import KINDS as API_KINDS

    word, slash, name = value.partition("/")
    if not slash:
        return DEFAULT_KIND, value
    wanted = word.lower()
    for kind in KINDS:
        typed = API_KINDS[kind]
        names = {kind.lower(), typed.plural, typed.plural.removesuffix("s"), SHORT_NAMES[kind]}
        with_group = {f"{n}.{typed.group}" for n in names if typed.group}
        if wanted in names | with_group:
            return kind, name
    raise UnknownKind(
        f"{word!r} is not a workload the operator can target; one of: "
        + ", ".join(f"{k} ({SHORT_NAMES[k]})" for k in KINDS)
    )


def covered(
    api: Access, namespace: str, selector: str, kinds: list[str] | None = None
) -> list[Body]:
    """The workloads of KINDS (absent: every kind whose CRD is installed) in NAMESPACE
    that label SELECTOR picks, each with its kind set (list items of built-in kinds
    come without it). Without KINDS, a kind the operator may not list is left out (its
    RBAC does not cover that kind, so it could not act on it either); a kind named in
    KINDS raises Forbidden, for the policy's status to say."""
    from ..errors import Forbidden
    from ..resources import KINDS as API_KINDS

    found: list[Body] = []
    for kind in kinds or KINDS:
        if kind not in ADAPTERS or not api.kind_installed(kind):
            continue
        try:
            items = api.list(kind, namespace, selector)
        except Forbidden as err:
            if kinds:  # named: the caller says so (a policy's Ready=False)
                typed = API_KINDS[kind]
                raise Forbidden(
                    err.status, f"{kind}s ({typed.plural}.{typed.group or 'core'}) in "
                    f"{namespace}: {err.message}", err.reason,
                ) from None  # fmt: skip
            continue
        typed = API_KINDS[kind]
        found += [{"apiVersion": typed.api_version, "kind": kind, **item} for item in items]
    return found


__all__ = [
    "ADAPTERS",
    "KINDS",
    "Body",
    "Container",
    "PodSpec",
    "UnknownKind",
    "Workload",
    "adapter",
    "as_pod",
    "parse_target",
]
