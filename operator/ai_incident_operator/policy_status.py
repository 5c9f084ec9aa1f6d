"""A policy's `Ready` condition: the schema's checks plus what only the cluster can tell.

Called by `handlers` whenever a policy changes and periodically. An invalid policy
gets `Ready=False` with every problem in the message and is not used by the engine
(`policy.select` takes only ready policies).
"""

from __future__ import annotations

from typing import Any

from . import events, kube
from . import policy as policies
from .access import Access
from .conditions import set_condition
from .kube import Ref


def cluster_problems(body: dict[str, Any], api: Access | None = None) -> list[str]:
    """Objects the policy names that do not exist, and containers its targets lack."""
    api = api or kube.cluster()
    spec = body.get("spec") or {}
    namespace = body["metadata"].get("namespace")
    if namespace is None:
        return []  # a cluster policy's objects live in each incident's namespace
    problems: list[str] = []
    targets = None
    for response in spec.get("responses") or []:
        for action in response.get("actions") or []:
            kind = action.get("type")
            if kind == "TrafficShift":
                fallback = (action.get("fallback") or {}).get("service")
                if fallback and api.get(Ref("Service", namespace, fallback)) is None:
                    problems.append(
                        f"TrafficShift fallback Service {namespace}/{fallback} does not exist"
                    )
            if kind == "ConservativeConfig" and isinstance(action.get("container"), str):
                if targets is None:
                    selector = policies.selector_string(spec.get("targetSelector") or {})
                    targets = api.list("Deployment", namespace, selector)
                for target in targets:
                    names = [c["name"] for c in target["spec"]["template"]["spec"]["containers"]]
                    if action["container"] not in names:
                        problems.append(
                            f"ConservativeConfig container {action['container']!r} is not in "
                            f"Deployment {target['metadata']['name']} (containers: {', '.join(names)})"
                        )
    return problems


def check_policy(body: dict[str, Any]) -> None:
    problems = policies.validate(body.get("spec") or {}) or cluster_problems(body)
    meta = body["metadata"]
    generation = meta.get("generation")
    status = dict(body.get("status") or {})
    if problems:
        reason, message = "Invalid", "; ".join(problems)
    else:
        reason, message = "Valid", "policy is valid and in use"
    conditions = set_condition(
        status.get("conditions"), "Ready", not problems, reason, message, generation=generation
    )
    new = {"conditions": conditions, "observedGeneration": generation}
    if (
        new["conditions"] == status.get("conditions")
        and status.get("observedGeneration") == generation
    ):
        return
    kube.patch_status(Ref(body["kind"], meta.get("namespace", ""), meta["name"]), new)
    was_ready = policies.is_ready(body)
    if problems:
        events.record(body, "Invalid", message, warning=True)
    elif not was_ready:
        events.record(body, "Valid", message)
