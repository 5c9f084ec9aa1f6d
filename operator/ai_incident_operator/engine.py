"""The incident engine: from an AIIncident and the policies to changed workloads and a status.

Level-triggered and restart-safe: `reconcile` reads the incident afresh, decides
from its spec, the winning policy and the ledgers on the objects, applies or
undoes actions (each idempotent), and writes the whole status once. Run it again
after a crash at any line and it lands in the same state. Called by `handlers`
(on create, update, resume and a periodic timer) and on deletion by `finalize`.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from . import GROUP, actions, events, kube, review
from . import policy as mitigation_policy
from .actions import ActionContext, Outcome
from .conditions import get_condition, now_iso, set_condition
from .durations import duration_or
from .faults import failpoint
from .investigation.investigate import investigate
from .investigation.store import NotOurs
from .kube import Ref
from .lifecycle import add_timeline, detected_status, enter_phase
from .times import parse_time
from .triage import triage

log = logging.getLogger(__name__)
Body = dict[str, Any]
HELD = ("Applied",)  # entry states whose changes are in force
DEFAULT_COOLDOWN = timedelta(0)


@dataclass
class World:
    """What the engine knows without asking the apiserver (kopf indexes keep it current)."""

    policies: list[Body] = field(default_factory=list)
    namespace_labels: Callable[[str], dict[str, str]] = lambda ns: {}
    # When a mitigation of (namespace, target) by another incident was last undone.
    last_released: Callable[[str, str, str], datetime | None] = lambda ns, target, incident: None
    protected_namespaces: frozenset[str] = mitigation_policy.BUILTIN_PROTECTED_NAMESPACES


@dataclass
class Step:
    """One action on one target, as the plan wants it."""

    action: actions.Action
    spec: dict[str, Any]
    target: Body
    entry_target: str  # "Deployment/chat-llm", or "AIIncident/<name>" for per-incident actions

    @property
    def id(self) -> tuple[str, str]:
        return (self.action.key(self.spec), self.entry_target)


_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def reconcile(namespace: str, name: str, world: World, body: Body | None = None) -> bool:
    """Bring one incident up to date. Returns True when failed actions should be retried.

    BODY, when the caller has just received it, saves the first read; a stale one
    costs a 409 on the status write and a fresh read.
    """
    with _lock(namespace, name):
        for attempt in range(5):
            if body is None or attempt > 0:
                body = kube.get(Ref("AIIncident", namespace, name))
            if body is None or body["metadata"].get("deletionTimestamp"):
                return False
            status = copy.deepcopy(body.get("status") or {})
            if not status.get("phase"):
                status = detected_status(body)
                events.record(body, "Detected", status["timeline"][0]["message"])
            retry = _advance(body, status, world, datetime.now(UTC))
            if status == (body.get("status") or {}):
                return retry
            try:
                kube.patch_status(
                    Ref("AIIncident", namespace, name), status, body["metadata"]["resourceVersion"]
                )
                return retry
            except ApiException as err:
                if err.status != 409:
                    raise
                log.debug("incident %s/%s changed while reconciling; again", namespace, name)
        raise kube.TransientError(f"incident {namespace}/{name} kept changing; will retry")


def finalize(namespace: str, name: str, body: Body) -> None:
    """The incident is being deleted: undo everything it still holds."""
    with _lock(namespace, name):
        status = copy.deepcopy(body.get("status") or {})
        _revert(body, status, None, keep=set(), now=datetime.now(UTC))


def _advance(body: Body, status: Body, world: World, now: datetime) -> bool:
    spec = body.get("spec") or {}
    namespace = body["metadata"]["namespace"]
    generation = body["metadata"].get("generation")
    status["observedGeneration"] = generation

    def condition(type_: str, state: str | bool, reason: str, message: str = "") -> None:
        status["conditions"] = set_condition(
            status.get("conditions"), type_, state, reason, message, generation=generation, now=now
        )

    if status.get("phase") in ("Resolved", "Closed"):
        _close_if_reviewed(body, status, condition, now)
        return False

    # Targets: the incident's own namespace only.
    wanted_ns = (spec.get("target") or {}).get("namespace", namespace)
    if wanted_ns != namespace:
        condition("Triaged", False, "CrossNamespaceTarget",
                  f"target namespace {wanted_ns} is not the incident's namespace {namespace}; "
                  "open the incident in the target's namespace")  # fmt: skip
        return False
    targets = resolve_targets(namespace, spec.get("target") or {})
    if not targets:
        condition("Triaged", False, "TargetNotFound", missing_target_message(namespace, spec, body))
        why = resolution_reason(spec, {})
        if why and status.get("mitigations"):
            # The workload is gone; what was changed elsewhere (a router) is still undone.
            return _resolve(body, status, {}, condition, now, why, restore=list)
        return False
    status["targets"] = [
        {"kind": "Deployment", "namespace": namespace, "name": t["metadata"]["name"]}
        for t in targets
    ]

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
    if status.get("severity") not in (None, severity):
        add_timeline(
            status,
            "SeverityChanged",
            f"severity {status['severity']} -> {severity}: {message}",
            now,
        )
        events.record(
            body, "SeverityChanged", f"severity {status['severity']} -> {severity}: {message}"
        )
    status["severity"], status["severityReason"] = severity, message
    if chosen:
        status["policyRef"] = mitigation_policy.ref(chosen)
    else:
        status.pop("policyRef", None)
    condition("Triaged", True, reason, message)
    if status.get("phase") == "Detected":
        enter_phase(status, "Triaged", f"severity {severity}: {message}", now)
        events.record(body, "Triaged", f"severity {severity}: {message}")

    _regulatory_clock(body, status, policy_spec, targets, world, now)
    if why:
        response = mitigation_policy.response_for(policy_spec, severity) or {}

        def restore() -> list[str]:
            return _apply_response(body, status, policy_spec, response, targets, world, now)[1]

        retry = _resolve(body, status, policy_spec, condition, now, why, restore)
    else:
        retry = _mitigate(body, status, chosen, severity, targets, world, condition, now)
    if status.get("phase") not in ("Resolved", "Closed"):
        # After the mitigations, so that a response is never held up by it; the targets
        # are as read before any change.
        investigate(body, status, policy_spec, targets, condition, now)
    return retry


def _mitigate(
    body: Body,
    status: Body,
    chosen: Body | None,
    severity: int,
    targets: list[Body],
    world: World,
    condition: Callable[..., None],
    now: datetime,
) -> bool:
    """Apply the response for SEVERITY (undoing what it lacks), unless a safety gate says no."""
    spec = body.get("spec") or {}
    namespace = body["metadata"]["namespace"]
    policy_spec = (chosen or {}).get("spec") or {}

    blocked = gate(namespace, targets, chosen, severity, world)
    if blocked:
        reason, message = blocked
        held = any(e.get("state") in HELD for e in status.get("mitigations") or [])
        before = get_condition(status.get("conditions"), "Mitigated") or {}
        if not held and before.get("reason") != reason:
            condition("Mitigated", False, reason, message)
            events.record(body, reason, message, warning=reason != "NoPolicy")
        return False

    response = mitigation_policy.response_for(policy_spec, severity) or {}
    if response.get("requireApproval") and not spec.get("approved"):
        condition("Approved", False, "ApprovalRequired",
                  f"severity {severity} responses need approval: set spec.approved to true")  # fmt: skip
        if enter_phase(
            status, "AwaitingApproval", f"severity {severity} response awaits approval", now
        ):
            events.record(body, "AwaitingApproval", "set spec.approved: true to apply the response")
        return False
    if response.get("requireApproval"):
        condition("Approved", True, "Approved", "spec.approved is true")
    else:
        condition(
            "Approved", True, "NotRequired", f"severity {severity} responses need no approval"
        )

    dry_run = bool((policy_spec.get("safety") or {}).get("dryRun"))
    entries, failed = _apply_response(body, status, policy_spec, response, targets, world, now)
    wanted = {step.id for step in plan(body, response, targets)}
    _revert(body, status, policy_spec, keep=wanted, now=now, entries=entries)
    status["mitigations"] = list(entries.values())

    if dry_run:
        condition(
            "Mitigated", False, "DryRun", "dry run: nothing was changed; see status.mitigations"
        )
        return False
    if failed:
        condition("Mitigated", False, "ActionFailed", "; ".join(failed))
        if enter_phase(status, "Mitigating", "some mitigations failed; retrying", now):
            events.record(body, "MitigationFailed", "; ".join(failed), warning=True)
        return True
    summary = ", ".join(
        f"{e['action']} on {e['target']}" for e in entries.values() if e["state"] in HELD
    )
    condition("Mitigated", True, "ActionsApplied", summary or "no actions for this severity")
    if enter_phase(
        status, "Mitigated", f"severity {severity} response applied: {summary or 'none'}", now
    ):
        events.record(
            body, "Mitigated", f"severity {severity} response applied: {summary or 'none'}"
        )
    return False


def _apply_response(
    body: Body,
    status: Body,
    policy_spec: Body,
    response: Body,
    targets: list[Body],
    world: World,
    now: datetime,
) -> tuple[dict[tuple[str, str], Body], list[str]]:
    """Apply every step of RESPONSE (idempotent); returns the entries and the failures in words."""
    namespace = body["metadata"]["namespace"]
    dry_run = bool((policy_spec.get("safety") or {}).get("dryRun"))
    cooldown = duration_or((policy_spec.get("safety") or {}).get("cooldown"), DEFAULT_COOLDOWN)
    entries = _entries(status)
    failed = []
    for step in plan(body, response, targets):
        previous = entries.get(step.id, {})
        outcome = cooling(step, world, namespace, body, cooldown, now)
        if outcome is None:
            if step.action.once and previous.get("state") in HELD:
                continue
            ctx = ActionContext(body, step.target, step.spec, policy_spec, dry_run=dry_run)
            outcome = step.action.apply(ctx)
        failpoint("after-apply")
        _record(status, entries, step, outcome, now)
        if outcome.state == "Failed":
            failed.append(f"{step.action.type} on {step.entry_target}: {outcome.message}")
    status["mitigations"] = list(entries.values())
    return entries, failed


def plan(body: Body, response: dict[str, Any], targets: list[Body]) -> list[Step]:
    """The steps of RESPONSE over TARGETS, in the policy's order (pure)."""
    steps: list[Step] = []
    incident_entry = f"AIIncident/{body['metadata']['name']}"
    for spec in response.get("actions") or []:
        action = actions.get(spec["type"])
        if action.per_incident:
            steps.append(Step(action, spec, targets[0], incident_entry))
        else:
            steps.extend(
                Step(action, spec, t, f"Deployment/{t['metadata']['name']}") for t in targets
            )
    return steps


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


def _entries(status: Body) -> dict[tuple[str, str], Body]:
    return {(e.get("key") or e["action"], e["target"]): e for e in status.get("mitigations") or []}


def _record(status: Body, entries: dict, step: Step, outcome: Outcome, now: datetime) -> None:
    key, target = step.id
    entry = entries.get((key, target)) or {}
    was = entry.get("state")
    entry.update(
        action=step.action.type,
        key=key,
        target=target,
        state=outcome.state,
        message=outcome.message,
    )
    if outcome.objects:
        entry["objects"] = outcome.objects
    if outcome.state == "Applied" and was != "Applied":
        entry["appliedAt"] = now_iso(now)
        entry.pop("revertedAt", None)
        add_timeline(
            status, "MitigationApplied", f"{step.action.type} on {target}: {outcome.message}", now
        )
    entries[(key, target)] = entry


def _revert(
    body: Body, status: Body, policy_spec: dict | None, keep: set, now: datetime,
    entries: dict | None = None,
) -> list[str]:  # fmt: skip
    """Undo held entries not in KEEP, newest first. Returns the failures, in words."""
    entries = entries if entries is not None else _entries(status)
    failures: list[str] = []
    for entry_id, entry in reversed(list(entries.items())):
        if entry_id in keep or entry.get("state") not in HELD:
            continue
        action = actions.get(entry["action"])
        spec = _spec_for(policy_spec, entry) or {"type": entry["action"]}
        target = {"kind": "Deployment", "metadata": {"name": entry["target"].partition("/")[2]}}
        ctx = ActionContext(
            body, target, spec, policy_spec or {}, key=entry.get("key") or entry["action"]
        )
        try:
            outcome = action.revert(ctx, entry.get("objects") or [])
        except ApiException as err:
            failures.append(f"{entry['action']} on {entry['target']}: {err.reason}")
            continue
        entry.update(state="Reverted", revertedAt=now_iso(now), message=outcome.message)
        add_timeline(
            status,
            "MitigationReverted",
            f"{entry['action']} on {entry['target']}: {outcome.message}",
            now,
        )
    status["mitigations"] = list(entries.values())
    return failures


def _spec_for(policy_spec: dict | None, entry: Body) -> dict | None:
    for response in (policy_spec or {}).get("responses") or []:
        for spec in response.get("actions") or []:
            if spec.get("type") == entry["action"] and actions.get(spec["type"]).key(
                spec
            ) == entry.get("key"):
                return spec
    return None


REGULATORY_DEFAULT = timedelta(days=15)


def _regulatory_clock(
    body: Body, status: Body, policy_spec: Body, targets: list[Body], world: World, now: datetime
) -> None:
    """With regulatory exposure: the report deadline, legal's notification, a warning near the end."""
    if not (body.get("spec") or {}).get("regulatoryExposure"):
        return
    regulatory = policy_spec.get("regulatory") or {}
    within = duration_or(regulatory.get("reportWithin"), REGULATORY_DEFAULT)
    detected = parse_time(status.get("detectedAt")) or now
    due = detected + within
    if not status.get("regulatoryReportDueBy"):
        status["regulatoryReportDueBy"] = now_iso(due)
        words = f"regulatory exposure: the report is due by {now_iso(due)}"
        add_timeline(status, "RegulatoryClockStarted", words, now)
        events.record(body, "RegulatoryClockStarted", words, warning=True)
    if regulatory.get("channels"):
        notice = {
            "actions": [
                {"type": "Notify", "channels": regulatory["channels"], "purpose": "regulatory"}
            ]
        }
        _apply_response(body, status, policy_spec, notice, targets, world, now)
    types = {t["type"] for t in status.get("timeline") or []}
    near = min(timedelta(days=2), within / 5)
    if (
        due - now <= near
        and "RegulatoryDeadlineNear" not in types
        and status.get("phase") not in ("Closed",)
    ):
        words = f"the regulatory report is due by {now_iso(due)} (in {due - now})"
        add_timeline(status, "RegulatoryDeadlineNear", words, now)
        events.record(body, "RegulatoryDeadlineNear", words, warning=True)


def resolution_reason(spec: Body, policy_spec: Body) -> tuple[str, str] | None:
    """(condition reason, words) when the incident should be resolved, else None (pure)."""
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


def _resolve(
    body: Body,
    status: Body,
    policy_spec: dict,
    condition: Callable,
    now: datetime,
    why: tuple[str, str],
    restore: Callable[[], list[str]],
) -> bool:
    """Verify recovery, undo step by step, then resolve. RESTORE re-applies the full response."""
    reason, message = why
    if enter_phase(status, "Resolving", f"{message}: verifying recovery, then undoing", now):
        events.record(body, "Resolving", f"{message}: verifying recovery, then undoing")
    held = [e for e in _entries(status).values() if e.get("state") in HELD]
    if held and not _verified(status, policy_spec, condition, now):
        if status.pop("undoStep", None) is not None:
            status.pop("undoStepAt", None)
            failures = restore()
            words = "a verification check failed during undo: the full mitigation is restored"
            add_timeline(status, "UndoAborted", words, now)
            detail = "; ".join(failures)
            events.record(body, "UndoAborted", f"{words}. {detail}".strip(), warning=True)
        return False
    if held and not _undo_traffic_stepwise(body, status, policy_spec, now):
        return False  # more steps to go, after stepInterval
    failures = _revert(body, status, policy_spec, keep=set(), now=now)
    if failures:
        condition("Resolved", False, "UndoFailed", "; ".join(failures))
        return True
    status.pop("undoStep", None)
    status.pop("undoStepAt", None)
    condition("Mitigated", False, "Undone", "every mitigation was undone")
    condition("Resolved", True, reason, message)
    if enter_phase(status, "Resolved", f"resolved: {message}", now):
        resolved = parse_time(status["resolvedAt"]) or now
        status["reviewDueBy"] = now_iso(review.due_by(resolved, policy_spec))
        condition(
            "Reviewed",
            False,
            "ReviewPending",
            f"post-incident review due by {status['reviewDueBy']}",
        )
        events.record(
            body,
            "Resolved",
            f"mitigations undone; {message}; review due by {status['reviewDueBy']}",
        )
    _write_review(body, status, now)
    _close_if_reviewed(body, status, condition, now)
    return False


def _write_review(body: Body, status: Body, now: datetime) -> None:
    """The review document as of now, in ConfigMap <incident>-review (status.reviewRef)."""
    try:
        status["reviewRef"] = review.write_review(
            body, review.render({**body, "status": status}, now)
        )
    except (ApiException, NotOurs) as err:
        log.warning("review of %s not written: %s", body["metadata"]["name"], err)


def _verified(status: Body, policy_spec: Body, condition: Callable, now: datetime) -> bool:
    """Whether monitoring shows recovery for the policy's verification window."""
    verification = (policy_spec.get("resolution") or {}).get("verification") or {}
    checks = verification.get("checks") or []
    if not checks:
        condition("Verified", True, "NoChecks", "the policy has no verification checks")
        return True
    from .resolution.verify import verify

    evidence_url = (policy_spec.get("evidence") or {}).get("prometheusURL")
    url = verification.get("prometheusURL") or evidence_url
    if not url:
        condition("Verified", False, "NoPrometheus", "set resolution.verification.prometheusURL")
        return False
    window = duration_or(verification.get("window"), timedelta(minutes=5))
    ok, words = verify(checks, url, window, now)
    condition("Verified", ok, "ChecksPassed" if ok else "ChecksFailing", words)
    timeline = status.get("timeline") or []
    if not ok and (not timeline or timeline[-1]["type"] != "VerificationPending"):
        add_timeline(status, "VerificationPending", words, now)
    return ok


def _splits(policy_spec: Body, entry: Body) -> bool:
    """Whether the entry's router can send part of the traffic (a Service selector cannot)."""
    from .traffic import get_router

    spec = _spec_for(policy_spec, entry) or {}
    kind = (spec.get("router") or {}).get("kind")
    return bool(kind) and get_router(kind).splits


def _undo_traffic_stepwise(body: Body, status: Body, policy_spec: Body, now: datetime) -> bool:
    """Give traffic back in the policy's trafficSteps, after every other mitigation is undone.

    Returns True once every step is done and the last one has held for stepInterval.
    """
    undo = (policy_spec.get("resolution") or {}).get("undo") or {}
    steps = [s for s in undo.get("trafficSteps") or [] if 0 < s < 100]
    entries = _entries(status)
    traffic = {
        i
        for i, e in entries.items()
        if e.get("state") in HELD and e["action"] == "TrafficShift" and _splits(policy_spec, e)
    }
    if not steps or not traffic:
        return True
    # The model comes back before any traffic does.
    _revert(body, status, policy_spec, keep=traffic, now=now, entries=entries)
    interval = duration_or(undo.get("stepInterval"), timedelta(minutes=1))
    done = status.get("undoStep", 0)
    at = status.get("undoStepAt")
    if at and now - (parse_time(at) or now) < interval:
        return False
    if done >= len(steps):
        return True
    percent = steps[done]
    namespace = body["metadata"]["namespace"]
    for entry_id in sorted(traffic):
        entry = entries[entry_id]
        spec = _spec_for(policy_spec, entry)
        target = kube.get(Ref("Deployment", namespace, entry["target"].partition("/")[2]))
        if spec is None or target is None:
            continue
        ctx = ActionContext(
            body, target, {**spec, "weight": 100 - percent}, policy_spec, key=entry["key"]
        )
        outcome = actions.get("TrafficShift").apply(ctx)
        entry["message"] = f"undo step {done + 1}/{len(steps)}: {outcome.message}"
    status["undoStep"], status["undoStepAt"] = done + 1, now_iso(now)
    status["mitigations"] = list(entries.values())
    words = f"{percent}% of traffic back to the model (step {done + 1} of {len(steps)})"
    add_timeline(status, "UndoStep", words, now)
    events.record(body, "UndoStep", words)
    return False


def _close_if_reviewed(body: Body, status: Body, condition: Callable, now: datetime) -> None:
    """Closed once people completed the review; an overdue review is said once."""
    if ((body.get("spec") or {}).get("review") or {}).get("completed"):
        condition("Reviewed", True, "ReviewCompleted", "spec.review.completed is true")
        if enter_phase(status, "Closed", "post-incident review completed", now):
            _write_review(body, status, now)  # with the people's summary and action items
            events.record(body, "Closed", "post-incident review completed")
        return
    due = parse_time(status.get("reviewDueBy"))
    reviewed = get_condition(status.get("conditions"), "Reviewed") or {}
    if due and now > due and reviewed.get("reason") != "ReviewOverdue":
        words = f"the post-incident review was due by {status['reviewDueBy']}; set spec.review.completed when done"
        condition("Reviewed", False, "ReviewOverdue", words)
        add_timeline(status, "ReviewOverdue", words, now)
        events.record(body, "ReviewOverdue", words, warning=True)


def resolve_targets(namespace: str, target: dict[str, Any]) -> list[Body]:
    """The Deployments the incident is about (by name or selector), in its namespace."""
    if target.get("name"):
        found = kube.get(Ref("Deployment", namespace, target["name"]))
        return [found] if found else []
    if target.get("selector"):
        selector = mitigation_policy.selector_string(target["selector"])
        return sorted(
            kube.list_objects("Deployment", namespace, selector),
            key=lambda d: d["metadata"]["name"],
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
