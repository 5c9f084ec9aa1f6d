"""The incident's targets: the workloads it names, by name or selector, in its own namespace.

`spec.target.kind` picks the workload kind (Deployment when absent; see `workloads`).
A kind whose CRD is not installed has no targets, and `missing_target_message` says so.
"""

from __future__ import annotations

import json
from typing import Any

from .. import GROUP, workloads
from .. import policy as mitigation_policy
from ..access import Access
from ..resources import KINDS, Ref

Body = dict[str, Any]


def target_kind(target: dict[str, Any]) -> str:
    return target.get("kind") or workloads.DEFAULT_KIND


def resolve_targets(api: Access, namespace: str, target: dict[str, Any]) -> list[Body]:
    """The workloads the incident is about (by name or selector), in its namespace."""
    kind = target_kind(target)
    if kind not in workloads.ADAPTERS or not api.kind_installed(kind):
        return []
    if target.get("name"):
        found = api.get(Ref(kind, namespace, target["name"]))
        return [found] if found else []
    if target.get("selector"):
        selector = mitigation_policy.selector_string(target["selector"])
        # List items of built-in kinds come without kind and apiVersion: say what they are.
        typed = KINDS[kind]
        found = [
            {"apiVersion": typed.api_version, "kind": kind, **item}
            for item in api.list(kind, namespace, selector)
        ]
        return sorted(found, key=lambda d: d["metadata"]["name"])
    return []


def missing_target_message(
    namespace: str, spec: dict[str, Any], body: Body | None = None, api: Access | None = None
) -> str:
    target = spec.get("target") or {}
    kind = target_kind(target)
    if kind not in workloads.ADAPTERS:
        return f"spec.target.kind {kind!r} is not a workload kind; one of: {', '.join(workloads.KINDS)}"
    if (target.get("name") or target.get("selector")) and api and not api.kind_installed(kind):
        return (
            f"{kind} is not served by this cluster (its CRD is not installed): install it or "
            "fix spec.target.kind"
        )
    if target.get("name"):
        return f"{kind} {namespace}/{target['name']} not found: create it or fix spec.target.name"
    if target.get("selector"):
        return f"no {kind} in {namespace} matches spec.target.selector {json.dumps(target['selector'])}"
    unmapped = ((body or {}).get("metadata", {}).get("annotations") or {}).get(f"{GROUP}/unmapped")
    if unmapped:
        return (
            f"the alert names no workload: {unmapped}; an alert names its workload with the "
            "labels namespace plus deployment, statefulset, rollout, leaderworkerset, "
            "inferenceservice, llminferenceservice, workload or model"
        )
    return "spec.target names no workload: set spec.target.name or spec.target.selector"
