"""The decision: given an incident, the policies, its targets and the clock, what to do (pure).

`decide` triages, picks the winning policy, applies the safety gates (protected
namespace, no policy, blast radius, no response, approval, cooldown per step) and
lists the steps to apply; the engine executes them, and `simulate` executes the
same decision read-only. A change to a gate changes both or neither. No kopf, no
kubernetes, no I/O: `World` carries what the indexes know.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import actions
from .. import policy as mitigation_policy
from ..actions.base import Outcome
from ..conditions import get_condition, now_iso
from ..durations import duration_or
from ..triage import triage
from .context import World

Body = dict[str, Any]
DEFAULT_COOLDOWN = timedelta(0)


@dataclass
class Step:
    """One action on one target, as the plan wants it."""

    action: actions.Action
    spec: dict[str, Any]
    target: Body
    entry_target: str  # "Deployment/chat-llm", or "AIIncident/<name>" for per-incident actions
    skip: Outcome | None = None  # why it is not run now (a cooldown), when it is not
    until: datetime | None = None  # when the cooldown that holds it back ends

    @property
    def id(self) -> tuple[str, str]:
        return (self.action.key(self.spec), self.entry_target)


@dataclass
class Decision:
    policy: Body | None
    severity: int
    severity_reason: str  # the Triaged condition's reason
    severity_message: str
    resolve: tuple[str, str] | None  # (reason, words) when the incident should be resolved
    gate: tuple[str, str] | None = None  # (reason, words) when nothing may be changed
    response: Body = field(default_factory=dict)
    approval: str = "NotRequired"  # NotRequired | Approved | ApprovalRequired
    dry_run: bool = False
    steps: list[Step] = field(default_factory=list)

    @property
    def wanted(self) -> set[tuple[str, str]]:
        return {step.id for step in self.steps}

    @property
    def policy_spec(self) -> Body:
        return (self.policy or {}).get("spec") or {}


def decide(
    incident: Body, status: Body, targets: list[Body], world: World, now: datetime
) -> Decision:
    """Everything the engine and `simulate` do for INCIDENT over TARGETS, decided."""
    spec = incident.get("spec") or {}
    namespace = incident["metadata"]["namespace"]
    chosen = mitigation_policy.select(
        world.policies, namespace, world.namespace_labels(namespace), targets
    )
    severity, reason, message = triage(spec, chosen)
    policy_spec = (chosen or {}).get("spec") or {}
    why = resolution_reason(spec, policy_spec)
    if why and status.get("severity"):
        # Resolved alerts no longer match the triage rules; the incident keeps its severity.
        kept = get_condition(status.get("conditions"), "Triaged") or {}
        severity, reason = status["severity"], kept.get("reason", "PolicyRule")
        message = status.get("severityReason") or kept.get("message", "")
    decision = Decision(chosen, severity, reason, message, why)
    decision.gate = gate(namespace, targets, chosen, severity, world)
    if decision.gate:
        return decision
    decision.response = mitigation_policy.response_for(policy_spec, severity) or {}
    if decision.response.get("requireApproval"):
        decision.approval = "Approved" if spec.get("approved") else "ApprovalRequired"
    safety = policy_spec.get("safety") or {}
    decision.dry_run = bool(safety.get("dryRun"))
    cooldown = duration_or(safety.get("cooldown"), DEFAULT_COOLDOWN)
    decision.steps = plan(incident, decision.response, targets)
    for step in decision.steps:
        step.skip = cooling(step, world, namespace, incident, cooldown, now)
        if step.skip is not None:
            released = world.last_released(namespace, step.target["metadata"]["name"],
                                           incident["metadata"]["name"])  # fmt: skip
            step.until = released + cooldown if released else None
    return decision


def plan(body: Body, response: dict[str, Any], targets: list[Body]) -> list[Step]:
    """The steps of RESPONSE over TARGETS, in the policy's order, except that the calls to
    outside services (pages, status pages, tickets) come after every change to an object:
    a webhook that takes its timeouts to fail must not hold a severity-1 ScaleToZero back."""
    steps: list[Step] = []
    incident_entry = f"AIIncident/{body['metadata']['name']}"
    for spec in response.get("actions") or []:
        action = actions.get(spec["type"])
        if action.per_incident:
            steps.append(Step(action, spec, targets[0] if targets else {}, incident_entry))
        else:
            steps.extend(
                Step(action, spec, t, f"{t.get('kind', 'Deployment')}/{t['metadata']['name']}")
                for t in targets
            )
    return sorted(steps, key=lambda step: step.action.outside)  # stable: the policy's order


def gate(
    namespace: str, targets: list[Body], chosen: Body | None, severity: int, world: World
) -> tuple[str, str] | None:
    """Why nothing may be changed for this incident, or None."""
    spec = (chosen or {}).get("spec") or {}
    protected = world.protected_namespaces | set(
        (spec.get("safety") or {}).get("protectedNamespaces") or []
    )
    if namespace in protected:
        return (
            "ProtectedNamespace",
            f"namespace {namespace} is protected: the operator changes nothing there",
        )
    if chosen is None:
        return "NoPolicy", (
            "no ready MitigationPolicy or ClusterMitigationPolicy covers the target: "
            "triage and notification only, nothing was changed"
        )
    max_targets = (spec.get("safety") or {}).get("maxTargets")
    if max_targets and len(targets) > max_targets:
        names = ", ".join(t["metadata"]["name"] for t in targets)
        return "BlastRadiusExceeded", (
            f"{len(targets)} targets ({names}) exceed safety.maxTargets {max_targets} of "
            f"{mitigation_policy.describe(chosen)}: nothing was changed; narrow spec.target"
        )
    if mitigation_policy.response_for(spec, severity) is None:
        return (
            "NoResponse",
            f"{mitigation_policy.describe(chosen)} has no response for severity {severity}",
        )
    return None


def cooling(
    step: Step, world: World, namespace: str, body: Body, cooldown: timedelta, now: datetime
) -> Outcome | None:
    """A Skipped outcome while the step's target is in its cooldown, else None."""
    if not cooldown or step.action.per_incident:
        return None
    target = step.target["metadata"]["name"]
    released = world.last_released(namespace, target, body["metadata"]["name"])
    if released and now - released < cooldown:
        until = now_iso(released + cooldown)
        return Outcome(
            "Skipped",
            f"cooldown: {target} was mitigated until {now_iso(released)}; not again before {until}",
        )
    return None


def resolution_reason(spec: Body, policy_spec: Body) -> tuple[str, str] | None:
    """(condition reason, words) when the incident should be resolved, else None."""
    resolution = spec.get("resolution") or {}
    if resolution.get("requested"):
        return "ResolutionRequested", resolution.get(
            "fix"
        ) or "resolution requested in spec.resolution"
    alerts = spec.get("alerts") or []
    auto = ((policy_spec.get("resolution") or {}).get("autoResolveWhenAlertsResolve")) is True
    if auto and alerts and all(a.get("status") == "resolved" for a in alerts):
        return "AlertsResolved", f"all {len(alerts)} alerts resolved (autoResolveWhenAlertsResolve)"
    return None


def spec_for(policy_spec: Body | None, entry: Body) -> Body | None:
    """The policy's action spec that made ENTRY, or None (the policy changed or is gone)."""
    for response in (policy_spec or {}).get("responses") or []:
        for spec in response.get("actions") or []:
            action = actions.registry().get(spec.get("type"))
            if action and spec["type"] == entry["action"] and action.key(spec) == entry.get("key"):
                return spec
    return None
