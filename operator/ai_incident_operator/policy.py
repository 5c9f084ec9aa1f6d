"""MitigationPolicy and ClusterMitigationPolicy: validation and matching (pure).

A MitigationPolicy covers workloads in its own namespace; a ClusterMitigationPolicy
covers the namespaces its `namespaceSelector` picks. For one incident the matching
policy with the highest `priority` wins, and a namespaced one beats a cluster one
on a tie. Policies reach the engine from kopf indexes, never by listing.
"""

from __future__ import annotations

from typing import Any

from . import actions
from .conditions import is_true
from .durations import parse_duration

BUILTIN_PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
Body = dict[str, Any]


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Kubernetes LabelSelector semantics; an empty or absent selector matches everything."""
    labels = labels or {}
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def selector_string(selector: dict[str, Any]) -> str:
    """The selector as a `labelSelector` query string."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
             "Exists": key, "DoesNotExist": f"!{key}"}[op]
        )  # fmt: skip
    return ",".join(parts)


def validate(spec: dict[str, Any]) -> list[str]:
    """What is wrong with a policy beyond what the CRD schema catches (pure)."""
    problems: list[str] = []
    seen: set[int] = set()
    for i, response in enumerate(spec.get("responses") or []):
        severity = response.get("severity")
        if severity in seen:
            problems.append(f"responses[{i}]: a second response for severity {severity}")
        seen.add(severity)
        for j, action in enumerate(response.get("actions") or []):
            kind = action.get("type")
            if kind not in actions.registry():
                problems.append(f"responses[{i}].actions[{j}]: unknown action type {kind!r}")
                continue
            for problem in actions.get(kind).validate(action, spec):
                problems.append(f"responses[{i}].actions[{j}] ({kind}): {problem}")
    from .engine.escalation import problems as escalation_problems  # it imports this module

    problems += escalation_problems(spec)
    for path, value in _durations(spec):
        try:
            parse_duration(value)
        except ValueError as err:
            problems.append(f"{path}: {err}")
    return problems


def _durations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    resolution = spec.get("resolution") or {}
    found = [
        ("safety.cooldown", (spec.get("safety") or {}).get("cooldown")),
        ("resolution.verification.window", (resolution.get("verification") or {}).get("window")),
        ("resolution.undo.stepInterval", (resolution.get("undo") or {}).get("stepInterval")),
        ("resolution.undo.readyTimeout", (resolution.get("undo") or {}).get("readyTimeout")),
        ("evidence.lookback", (spec.get("evidence") or {}).get("lookback")),
        ("review.dueWithin", (spec.get("review") or {}).get("dueWithin")),
        ("regulatory.reportWithin", (spec.get("regulatory") or {}).get("reportWithin")),
    ]
    return [(path, value) for path, value in found if value]


def is_ready(body: Body) -> bool:
    """Validated for its current generation, and found valid."""
    status = body.get("status") or {}
    generation = body.get("metadata", {}).get("generation")
    return (
        is_true(status.get("conditions"), "Ready")
        and status.get("observedGeneration") == generation
    )


def covers(
    body: Body, namespace: str, namespace_labels: dict[str, str], targets: list[Body]
) -> bool:
    """Whether the policy BODY covers every one of TARGETS (workloads in NAMESPACE)."""
    spec = body.get("spec") or {}
    if body.get("kind") == "ClusterMitigationPolicy":
        if not selector_matches(spec.get("namespaceSelector"), namespace_labels):
            return False
    elif body.get("metadata", {}).get("namespace") != namespace:
        return False
    kinds = spec.get("targetKinds")  # absent: every kind
    return bool(targets) and all(
        selector_matches(spec.get("targetSelector"), t.get("metadata", {}).get("labels"))
        and (not kinds or t.get("kind", "Deployment") in kinds)
        for t in targets
    )


def select(
    policies: list[Body], namespace: str, namespace_labels: dict[str, str], targets: list[Body]
) -> Body | None:
    """The winning ready policy for these targets: highest priority, namespaced first on a tie."""
    candidates = [
        p for p in policies if is_ready(p) and covers(p, namespace, namespace_labels, targets)
    ]
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda p: (
            -int((p.get("spec") or {}).get("priority") or 0),
            p.get("kind") == "ClusterMitigationPolicy",
            p["metadata"].get("namespace", ""),
            p["metadata"]["name"],
        ),
    )


def select_for(
    policies: list[Body], namespace: str, namespace_labels: dict[str, str]
) -> Body | None:
    """The winning ready policy of NAMESPACE whatever the target (for an incident without one)."""
    widened = [
        {**p, "spec": {**(p.get("spec") or {}), "targetSelector": {}, "targetKinds": None}}
        for p in policies
    ]
    chosen = select(widened, namespace, namespace_labels, [{"metadata": {}}])
    return policies[widened.index(chosen)] if chosen is not None else None


def describe(body: Body) -> str:
    meta = body["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{body.get('kind', 'MitigationPolicy')} {where}{meta['name']}"


def ref(body: Body) -> dict[str, str]:
    result = {"kind": body.get("kind", "MitigationPolicy"), "name": body["metadata"]["name"]}
    if body["metadata"].get("namespace"):
        result["namespace"] = body["metadata"]["namespace"]
    return result


def response_for(spec: dict[str, Any], severity: int) -> dict[str, Any] | None:
    return next((r for r in spec.get("responses") or [] if r.get("severity") == severity), None)
