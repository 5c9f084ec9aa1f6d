"""Resolve: verify recovery, give traffic back step by step, undo everything, then Resolved.

Nothing is undone until the policy's PromQL checks held over their window
(`Verified`). Then every mitigation other than traffic is undone, traffic comes
back in `resolution.undo.trafficSteps` (checked again between steps), and finally
everything the ledgers still name is released. A failing check during the steps
restores the full mitigation (`UndoAborted`). Held = what the status says is
applied or what any ledger says this incident holds.
"""

from __future__ import annotations

from datetime import timedelta

from .. import review
from ..conditions import now_iso
from ..durations import duration_or
from ..errors import APIError
from ..lifecycle import add_timeline
from ..resources import Ref
from ..times import parse_time
from ..traffic import get_router
from .close import close_if_reviewed, write_review
from .context import HELD, IncidentContext
from .decide import Step, spec_for
from .steps import action_context, action_of, apply
from .undo import holdings, revert

VERIFY_RECHECK = 10.0  # seconds between looks at failing verification checks


def resolve(ctx: IncidentContext, why: tuple[str, str], steps: list[Step], dry_run: bool) -> None:
    """Resolve the incident; STEPS (the full response) are re-applied when undo is aborted."""
    reason, message = why
    ctx.enter("Resolving", f"{message}: verifying recovery, then undoing")
    held = bool(ctx.held()) or bool(holdings(ctx))
    if held and not verified(ctx):
        ctx.requeue_after(VERIFY_RECHECK)
        if ctx.status.pop("undoStep", None) is not None:
            ctx.status.pop("undoStepAt", None)
            failures = apply(ctx, steps, dry_run)
            words = "a verification check failed during undo: the full mitigation is restored"
            add_timeline(ctx.status, "UndoAborted", words, ctx.now)
            detail = "; ".join(failures)
            ctx.api.event(ctx.body, "UndoAborted", f"{words}. {detail}".strip(), warning=True)
        return
    if held and not undo_traffic_stepwise(ctx):
        return  # more steps to go, after stepInterval
    failures = revert(ctx, keep=set(), sweep=True)
    if failures:
        ctx.condition("Resolved", False, "UndoFailed", "; ".join(failures))
        ctx.retry()
        return
    ctx.status.pop("undoStep", None)
    ctx.status.pop("undoStepAt", None)
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


def verified(ctx: IncidentContext) -> bool:
    """Whether monitoring shows recovery for the policy's verification window."""
    verification = (ctx.policy_spec.get("resolution") or {}).get("verification") or {}
    checks = verification.get("checks") or []
    if not checks:
        ctx.condition("Verified", True, "NoChecks", "the policy has no verification checks")
        return True
    evidence_url = (ctx.policy_spec.get("evidence") or {}).get("prometheusURL")
    url = verification.get("prometheusURL") or evidence_url
    if not url:
        ctx.condition(
            "Verified", False, "NoPrometheus", "set resolution.verification.prometheusURL"
        )
        return False
    window = duration_or(verification.get("window"), timedelta(minutes=5))
    check = ctx.world.verify
    if check is None:
        from ..resolution.verify import verify as check
    ok, words = check(checks, url, window, ctx.now)
    ctx.condition("Verified", ok, "ChecksPassed" if ok else "ChecksFailing", words)
    timeline = ctx.status.get("timeline") or []
    if not ok and (not timeline or timeline[-1]["type"] != "VerificationPending"):
        add_timeline(ctx.status, "VerificationPending", words, ctx.now)
    return ok


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
    # The model comes back before any traffic does.
    failures = revert(ctx, keep=traffic)
    if failures:
        ctx.condition("Resolved", False, "UndoFailed", "; ".join(failures))
        ctx.retry()
        return False
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
            outcome = action_of(entry).apply(actx)
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
