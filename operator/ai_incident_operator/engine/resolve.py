"""Resolve: capacity back first, the model ready, recovery verified, then traffic in steps.

The order keeps users off a model that cannot answer yet: every mitigation other than
traffic is undone first (replicas, config, sidecars) while traffic stays on the
fallback; then the workloads must be ready (`readiness`: every wanted replica
available, as `kubectl rollout status` says), so that the model has loaded before
anyone reaches it, and so that its own metrics exist again; then the policy's PromQL
checks must hold over their window (`Verified`); only then does traffic come back, in
`resolution.undo.trafficSteps` (checked again between steps), and finally everything
the ledgers still name is released, with the "resolved" pages (so they are never sent
while the model is still coming back). A failing check during the steps sends traffic
back to the fallback (`UndoAborted`); the model keeps running, unserved, so that
verification can see it recover. `spec.resolution.skipVerification` (a person's
`aiincident resolve --skip-verification`) skips readiness and checks, recorded with
who asked. Held = what the status says is applied or what any ledger says this
incident holds.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from .. import egress, review, workloads
from ..conditions import now_iso
from ..durations import duration_or
from ..errors import APIError
from ..lifecycle import add_timeline
from ..resources import Ref
from ..times import human, parse_time
from ..traffic import get_router
from .close import close_if_reviewed, write_review
from .context import HELD, EntryId, IncidentContext, in_force
from .decide import Step, spec_for
from .steps import action_context, action_of, apply, refusal
from .undo import holdings, revert

VERIFY_RECHECK = 10.0  # seconds between looks at failing verification checks
EXAMPLES_RECHECK = 2.0  # seconds between looks for the examples' outcome on the fixed model
READY_RECHECK = 5.0  # seconds between looks at a workload coming back
READY_TIMEOUT = timedelta(minutes=10)


def resolve(ctx: IncidentContext, why: tuple[str, str], steps: list[Step], dry_run: bool) -> None:
    """Resolve the incident; STEPS (the full response) give traffic back to the fallback
    when a check fails during the traffic steps."""
    reason, message = why
    ctx.enter("Resolving", f"{message}: verifying recovery, then undoing")
    held = bool(ctx.held()) or bool(holdings(ctx))
    if held and not _capacity_back(ctx):
        _tell_users_it_is_monitored(ctx, steps, dry_run)
        return
    if held and not _skipped(ctx) and not (workloads_ready(ctx) and verified(ctx)):
        _tell_users_it_is_monitored(ctx, steps, dry_run)
        if ctx.status.pop("undoStep", None) is not None:
            ctx.status.pop("undoStepAt", None)
            traffic = [s for s in steps if s.action.type == "TrafficShift"]
            failures = apply(ctx, traffic, dry_run)
            words = "a verification check failed during undo: traffic is back on the fallback"
            add_timeline(ctx.status, "UndoAborted", words, ctx.now)
            detail = "; ".join(failures)
            ctx.api.event(ctx.body, "UndoAborted", f"{words}. {detail}".strip(), warning=True)
        return
    if held and not undo_traffic_stepwise(ctx):
        _tell_users_it_is_monitored(ctx, steps, dry_run)
        return  # more steps to go, after stepInterval
    asked = len(ctx.calls)
    failures = revert(ctx, keep=set(), sweep=True)
    if failures:
        ctx.condition("Resolved", False, "UndoFailed", "; ".join(failures))
        ctx.retry()
        return
    if len(ctx.calls) > asked:
        return  # the "resolved" pages go out after this write; the pass after them resolves
    for key in ("undoStep", "undoStepAt", "readyWaitSince"):
        ctx.status.pop(key, None)
    ctx.condition("Mitigated", False, "Undone", "every mitigation was undone")
    ctx.condition("Resolved", True, reason, message)
    if ctx.status.get("phase") != "Resolved":
        resolved = parse_time(ctx.status.get("resolvedAt")) or ctx.now
        due = now_iso(review.due_by(resolved, ctx.policy_spec))
        ctx.enter(
            "Resolved",
            f"resolved: {message}",
            event=f"mitigations undone; {message}; review due by {due}",
        )
        ctx.status["reviewDueBy"] = due
        ctx.condition("Reviewed", False, "ReviewPending", f"post-incident review due by {due}")
    write_review(ctx)
    close_if_reviewed(ctx)


def _tell_users_it_is_monitored(ctx: IncidentContext, steps: list[Step], dry_run: bool) -> None:
    """A status page in force says `monitoring` while resolution waits (capacity, readiness,
    verification, traffic steps): StatusPage's step for Resolving. A resolution done in one
    pass goes straight to `resolved`, sent with the last words. Only pages opened (in force,
    also when their last update failed: that one is tried again): resolution never opens one."""
    opened = [
        s for s in steps
        if s.action.type == "StatusPage" and in_force(ctx.entries.get(s.id) or {})
    ]  # fmt: skip
    if opened:
        apply(ctx, opened, dry_run)


def _last_to_go(ctx: IncidentContext) -> set[EntryId]:
    """Traffic (users stay on the fallback) and the pages: their "resolved" is the last word."""
    return {
        i
        for i, e in ctx.entries.items()
        if in_force(e) and e["action"] in ("TrafficShift", "Notify", "StatusPage")
    }


def _capacity_back(ctx: IncidentContext) -> bool:
    """Undo everything but traffic and pages (the model comes back while users stay on the
    fallback, and nobody is told "resolved" before it is)."""
    held = len(ctx.held())
    failures = revert(ctx, keep=_last_to_go(ctx))
    if len(ctx.held()) != held:
        _reread_targets(ctx)  # their ledgers changed: the final sweep must not see old ones
    if failures:
        ctx.condition("Resolved", False, "UndoFailed", "; ".join(failures))
        ctx.retry()
        return False
    return True


def _reread_targets(ctx: IncidentContext) -> None:
    fresh = []
    for target in ctx.targets:
        try:
            found = ctx.api.get(Ref(target.get("kind", "Deployment"), ctx.namespace,
                                    target["metadata"]["name"]))  # fmt: skip
        except APIError:
            found = target
        if found is not None:
            fresh.append(found)
    ctx.targets = fresh


def _skipped(ctx: IncidentContext) -> bool:
    """Whether a person asked to give traffic back without readiness or checks (recorded once)."""
    resolution = ctx.spec.get("resolution") or {}
    if not resolution.get("skipVerification"):
        return False
    who = resolution.get("by") or "someone (no --by)"
    words = f"readiness and verification checks skipped at the request of {who}"
    ctx.condition("Verified", True, "VerificationSkipped", words)
    if not any(t.get("type") == "VerificationSkipped" for t in ctx.status.get("timeline") or []):
        ctx.say("VerificationSkipped", words, warning=True)
    return True


def workloads_ready(ctx: IncidentContext) -> bool:
    """Whether every target the incident changed serves again; says why not, and since when."""
    refs: list[Ref] = []
    for entry in ctx.entries.values():
        kind, _, name = entry["target"].partition("/")
        ref = Ref(kind, ctx.namespace, name)
        # Every kind of workload, by its adapter (an InferenceService's Ready condition, a
        # LeaderWorkerSet's groups); entries on other objects (a router) have none.
        if kind in workloads.ADAPTERS and ref not in refs:
            refs.append(ref)
    waiting: list[str] = []
    for ref in refs:
        try:
            obj = ctx.api.get(ref)
        except APIError as err:
            waiting.append(f"{ref.kind}/{ref.name}: cannot read it: {err}")
            continue
        if obj is None:
            continue  # deleted: nothing will become ready there (what it held elsewhere is undone)
        ok, words = workloads.adapter(ref.kind).ready({**obj, "kind": ref.kind})
        if not ok:
            waiting.append(words)
    if not waiting:
        if ctx.status.pop("readyWaitSince", None):
            ctx.say("WorkloadReady", "the restored workloads are ready: verifying recovery")
        return True
    since = parse_time(ctx.status.get("readyWaitSince")) or ctx.now
    ctx.status["readyWaitSince"] = now_iso(since)
    undo = (ctx.policy_spec.get("resolution") or {}).get("undo") or {}
    timeout = duration_or(undo.get("readyTimeout"), READY_TIMEOUT)
    detail = "; ".join(waiting)
    if ctx.now - since < timeout:
        ctx.condition(
            "Resolved", False, "WaitingForReady",
            f"capacity restored, traffic stays on the fallback until the workload is ready: {detail}",
        )  # fmt: skip
    else:
        previous = next((c for c in ctx.status.get("conditions") or []
                         if c.get("type") == "Resolved"), {})  # fmt: skip
        words = (
            f"not ready {human(ctx.now - since)} after its capacity was restored: {detail}. "
            "Traffic stays on the fallback. Look at its pods (kubectl describe); "
            "`aiincident resolve NAME --skip-verification` gives traffic back anyway"
        )
        ctx.condition("Resolved", False, "NotReady", words)
        if previous.get("reason") != "NotReady":
            ctx.api.event(ctx.body, "NotReady", words, warning=True)
    ctx.requeue_after(READY_RECHECK)
    return False


def verified(ctx: IncidentContext) -> bool:
    """Whether monitoring shows recovery for the policy's verification window, and, with
    `resolution.verification.examples: true`, whether the incident's examples pass on the
    fixed model (sent off the pass by the scheduler; here only the recorded outcome is read)."""
    verification = (ctx.policy_spec.get("resolution") or {}).get("verification") or {}
    ok, reason, words = _promql_verified(ctx, verification)
    if ok and verification.get("examples") is True:
        ok, reason, words = _examples_verified(ctx, words)
    if reason == "NoChecks" and ok:
        ctx.condition("Verified", True, "NoChecks", words)
        return True
    ctx.condition("Verified", ok, reason, words)
    if not ok:
        ctx.requeue_after(EXAMPLES_RECHECK if reason == "ExamplesPending" else VERIFY_RECHECK)
    timeline = ctx.status.get("timeline") or []
    if not ok and (not timeline or timeline[-1]["type"] != "VerificationPending"):
        add_timeline(ctx.status, "VerificationPending", words, ctx.now)
    return ok


def _promql_verified(ctx: IncidentContext, verification: dict) -> tuple[bool, str, str]:
    """(ok, reason, words) of the policy's PromQL checks."""
    checks = verification.get("checks") or []
    if not checks:
        return True, "NoChecks", "the policy has no verification checks"
    evidence_url = (ctx.policy_spec.get("evidence") or {}).get("prometheusURL")
    url = verification.get("prometheusURL") or evidence_url
    if not url:
        return False, "NoPrometheus", "set resolution.verification.prometheusURL"
    window = duration_or(verification.get("window"), timedelta(minutes=5))
    check = ctx.world.verify
    if check is None:
        from ..resolution.verify import verify

        # The real checks call out: the policy's kind says whose URL rules apply (egress).
        check = functools.partial(verify, namespaced=egress.is_namespaced(ctx.policy))
    ok, words = check(checks, url, window, ctx.now)
    return ok, "ChecksPassed" if ok else "ChecksFailing", words


def _examples_verified(ctx: IncidentContext, promql_words: str) -> tuple[bool, str, str]:
    """(ok, reason, words) of the examples on the fixed model, as recorded in
    status.reproduction.fix; asks for a (new) run when there is none that is fresh."""
    from ..resolution.verify import examples_verdict

    record = ctx.status.get("reproduction") or {}
    has_reproduction = isinstance(ctx.policy_spec.get("reproduction"), dict)
    stepping = ctx.status.get("undoStep") is not None
    ok, reason, words, ask = examples_verdict(
        record.get("fix"), has_reproduction, ctx.now, stepping
    )
    if ask:
        ctx.status["reproduction"] = {**record, "fix": {"requestedAt": now_iso(ctx.now)}}
    if ok:
        return True, "ChecksPassed", f"{promql_words}; {words}"
    return False, reason, words


def _splits(ctx: IncidentContext, entry: dict) -> bool:
    """Whether the entry's router can send part of the traffic (a Service selector cannot)."""
    spec = spec_for(ctx.policy_spec, entry) or {}
    kind = (spec.get("router") or {}).get("kind")
    try:
        return bool(kind) and get_router(kind).splits
    except ValueError:
        return False


def undo_traffic_stepwise(ctx: IncidentContext) -> bool:
    """Give traffic back in the policy's trafficSteps, after every other mitigation is undone.

    Returns True once every step is done and the last one has held for stepInterval.
    """
    undo = (ctx.policy_spec.get("resolution") or {}).get("undo") or {}
    steps = [s for s in undo.get("trafficSteps") or [] if 0 < s < 100]
    traffic = {
        i
        for i, e in ctx.entries.items()
        if e.get("state") in HELD and e["action"] == "TrafficShift" and _splits(ctx, e)
    }
    if not steps or not traffic:
        return True
    interval = duration_or(undo.get("stepInterval"), timedelta(minutes=1))
    done = ctx.status.get("undoStep", 0)
    at = parse_time(ctx.status.get("undoStepAt"))
    if at and ctx.now - at < interval:
        ctx.requeue_after((interval - (ctx.now - at)).total_seconds())
        return False
    if done >= len(steps):
        return True
    percent = steps[done]
    for entry_id in sorted(traffic):
        entry = ctx.entries[entry_id]
        spec = spec_for(ctx.policy_spec, entry)
        kind, _, name = entry["target"].partition("/")
        try:
            target = ctx.api.get(Ref(kind, ctx.namespace, name))
        except APIError as err:
            entry["message"] = f"undo step {done + 1}/{len(steps)}: {err}"
            ctx.retry()
            continue
        if spec is None or target is None:
            continue
        actx = action_context(
            ctx, {**spec, "weight": 100 - percent}, target, key=entry["key"], entry=entry
        )
        try:
            outcome = refusal(ctx, actx.spec, target) or action_of(entry).apply(actx)
        except APIError as err:
            entry["message"] = f"undo step {done + 1}/{len(steps)}: {err}"
            ctx.retry()
            continue
        entry["message"] = f"undo step {done + 1}/{len(steps)}: {outcome.message}"
    ctx.status["undoStep"], ctx.status["undoStepAt"] = done + 1, now_iso(ctx.now)
    ctx.say(
        "UndoStep", f"{percent}% of traffic back to the model (step {done + 1} of {len(steps)})"
    )
    ctx.requeue_after(interval.total_seconds())
    return False
