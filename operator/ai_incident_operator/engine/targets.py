"""The incident's targets: the workloads it names, by name or selector, in its own namespace."""

from __future__ import annotations

import json
from typing import Any

from .. import GROUP
from .. import policy as mitigation_policy
from ..access import Access
from ..resources import Ref

Body = dict[str, Any]


def resolve_targets(api: Access, namespace: str, target: dict[str, Any]) -> list[Body]:
    """The Deployments the incident is about (by name or selector), in its namespace."""
    if target.get("name"):
        found = api.get(Ref("Deployment", namespace, target["name"]))
        return [found] if found else []
    if target.get("selector"):
        selector = mitigation_policy.selector_string(target["selector"])
        return sorted(
            api.list("Deployment", namespace, selector), key=lambda d: d["metadata"]["name"]
        )
    return []


def missing_target_message(namespace: str, spec: dict[str, Any], body: Body | None = None) -> str:
    target = spec.get("target") or {}
    if target.get("name"):
        return (
            f"Deployment {namespace}/{target['name']} not found: create it or fix spec.target.name"
        )
    if target.get("selector"):
        return f"no Deployment in {namespace} matches spec.target.selector {json.dumps(target['selector'])}"
    unmapped = ((body or {}).get("metadata", {}).get("annotations") or {}).get(f"{GROUP}/unmapped")
    if unmapped:
        return (
            f"the alert names no workload: {unmapped}; an alert names its workload with the "
            "labels namespace plus deployment, workload or model"
        )
    return "spec.target names no workload: set spec.target.name or spec.target.selector"
