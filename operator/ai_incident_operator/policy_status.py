"""A policy's `Ready` condition: the schema's checks plus what only the cluster can tell.

Called by `handlers` whenever a policy changes and periodically. An invalid policy
gets `Ready=False` with every problem in the message and is not used by the engine
(`policy.select` takes only ready policies). A namespaced policy that asks for more
than the tenant bounds allow (`bounds`) gets `Ready=False/OutsideTenantBounds`, each
problem and what an admin can do in the message; the periodic re-check sees objects
that changed since (a fallback's label, the ConfigMaps a target reads).
"""

from __future__ import annotations

from typing import Any

from . import bounds, egress, events, kube, workloads
from . import policy as policies
from .access import Access
from .actions.traffic import fallback_ref
from .conditions import set_condition
from .errors import Forbidden
from .investigation import checks
from .kube import Ref
from .resources import KINDS


def policy_targets(api: Access, namespace: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The workloads of NAMESPACE the policy's targetSelector and targetKinds cover.

    Raises Forbidden when the operator may not list a kind that targetKinds names.
    """
    selector = policies.selector_string(spec.get("targetSelector") or {})
    return workloads.covered(api, namespace, selector, spec.get("targetKinds"))


def forbidden_kinds(err: Forbidden) -> str:
    """The policy's problem when a kind its targetKinds names may not be listed."""
    return (
        f"targetKinds: the operator may not list {err.message}; grant it list on that kind "
        "(the chart's RBAC values) or leave the kind out of targetKinds"
    )


def cluster_problems(body: dict[str, Any], api: Access | None = None) -> list[str]:
    """Objects the policy names that do not exist, and containers its targets lack."""
    api = api or kube.cluster()
    spec = body.get("spec") or {}
    namespace = body["metadata"].get("namespace")
    if namespace is None:
        return []  # a cluster policy's objects live in each incident's namespace
    problems: list[str] = []
    targets = None
    if spec.get("targetKinds"):
        # A kind it names that the operator may not list: the policy cannot cover it.
        try:
            targets = policy_targets(api, namespace, spec)
        except Forbidden as err:
            problems.append(forbidden_kinds(err))
            targets = []
    for response in spec.get("responses") or []:
        for action in response.get("actions") or []:
            kind = action.get("type")
            if kind == "TrafficShift":
                problems += _fallback_problems(api, namespace, action)
            if kind == "ConservativeConfig" and isinstance(action.get("container"), str):
                if targets is None:
                    targets = policy_targets(api, namespace, spec)
                for target in targets:
                    found = workloads.adapter(target["kind"]).containers(target)
                    names = list(dict.fromkeys(c.name for c in found))
                    if action["container"] not in names:
                        problems.append(
                            f"ConservativeConfig container {action['container']!r} is not in "
                            f"{target['kind']} {target['metadata']['name']} (containers: "
                            f"{', '.join(names)})"
                        )
    return problems


def _fallback_problems(api: Access, namespace: str, action: dict[str, Any]) -> list[str]:
    """A TrafficShift's fallback (Service, InferencePool, AIServiceBackend) that is not there."""
    ref = fallback_ref(action, namespace)
    if ref is None or api.get(ref) is not None:
        return []
    if ref.kind != "Service" and not api.kind_installed(ref.kind):
        k = KINDS[ref.kind]
        return [
            f"TrafficShift fallback {ref.kind} {namespace}/{ref.name} does not exist: this "
            f"cluster does not serve {k.plural}.{k.group}/{k.version} (install its CRDs)"
        ]
    return [f"TrafficShift fallback {ref.kind} {namespace}/{ref.name} does not exist"]


def tenant_problems(
    body: dict[str, Any], api: Access | None = None, limits: bounds.TenantBounds | None = None
) -> list[str]:
    """What a namespaced policy asks beyond the tenant bounds: alone, then on its targets."""
    if not bounds.applies(body):
        return []  # a ClusterMitigationPolicy: written by cluster admins, trusted
    limits = limits or bounds.current()
    spec = body.get("spec") or {}
    namespace = body["metadata"].get("namespace")
    found = bounds.problems(spec, namespace, limits)
    if namespace is None:
        return found
    api = api or kube.cluster()
    try:
        targets = policy_targets(api, namespace, spec)
    except Forbidden:
        return found  # cluster_problems says so: the policy is not Ready either way
    for i, response in enumerate(spec.get("responses") or []):
        for j, action in enumerate(response.get("actions") or []):
            where = f"responses[{i}].actions[{j}] ({action.get('type')})"
            for target in targets:
                found += [
                    f"{where}: {p}"
                    for p in bounds.object_problems(
                        action, namespace, target, api.get, limits, targets
                    )
                ]
    return list(dict.fromkeys(found))  # once each, in order


def reproduction_problems(body: dict[str, Any]) -> list[str]:
    """A bad `reproduction` (or `verification.examples` without one), and a tenant's
    reproduction URLs outside the operator's allowlist (egress)."""
    spec = body.get("spec") or {}
    reproduction = spec.get("reproduction")
    problems = checks.spec_problems(reproduction)
    verification = (spec.get("resolution") or {}).get("verification") or {}
    if verification.get("examples") is True and not isinstance(reproduction, dict):
        problems.append(
            "resolution.verification.examples: needs reproduction.endpoints.current to send "
            "the examples to"
        )
    if (body.get("metadata") or {}).get("namespace") and egress.is_namespaced(body):
        allowed, apiserver = egress.allowlist(), egress.apiserver_hosts()
        for field, url in checks.urls_of(reproduction):
            problem = egress.check_url(url, True, allowed, apiserver)
            if problem:
                problems.append(f"{field}: {problem}")
    return problems


def check_policy(body: dict[str, Any]) -> None:
    invalid = policies.validate(body.get("spec") or {})
    problems = invalid or cluster_problems(body)
    # A tenant's inline URLs outside the operator's allowlist (egress): the policy is not used.
    problems = [*problems, *egress.policy_problems(body), *reproduction_problems(body)]
    outside = [] if invalid else tenant_problems(body)
    meta = body["metadata"]
    generation = meta.get("generation")
    status = dict(body.get("status") or {})
    if problems:
        reason, message = "Invalid", "; ".join(problems + outside)
    elif outside:
        reason, message = bounds.REASON, "; ".join(outside) + f". {bounds.ADMIN_HINT}"
    else:
        reason, message = "Valid", "policy is valid and in use"
    ready = not problems and not outside
    conditions = set_condition(
        status.get("conditions"), "Ready", ready, reason, message, generation=generation
    )
    new = {"conditions": conditions, "observedGeneration": generation}
    if (
        new["conditions"] == status.get("conditions")
        and status.get("observedGeneration") == generation
    ):
        return
    kube.patch_status(Ref(body["kind"], meta.get("namespace", ""), meta["name"]), new)
    was_ready = policies.is_ready(body)
    if not ready:
        events.record(body, reason, message, warning=True)
    elif not was_ready:
        events.record(body, "Valid", message)
