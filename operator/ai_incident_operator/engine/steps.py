"""Running the steps of a decision and recording their outcomes: the one way entries are made.

`apply` runs each step's action (dry-run when the policy says so), turns any
apiserver error into a `Failed` entry with the apiserver's reason (the other steps
still run), and records the outcome on the context's entries and timeline. A step
whose objects are contested waits out its backoff (`contest`). Used by the
mitigate and resolve modules and, read-only, by `simulate`.
"""

from __future__ import annotations

from typing import Any

from .. import actions, bounds
from ..actions import ActionContext, Outcome
from ..conditions import now_iso
from ..errors import APIError
from ..faults import failpoint
from ..lifecycle import add_timeline
from . import contest
from .context import HELD, IncidentContext
from .decide import Step

Body = dict[str, Any]


def action_context(
    ctx: IncidentContext,
    spec: Body,
    target: Body,
    *,
    key: str = "",
    dry_run: bool = False,
    entry: Body | None = None,
) -> ActionContext:
    # The incident as this pass is making it (severity, phase), not as it was read: a
    # first page says severity 1, an escalation page the new severity.
    return ActionContext(
        {**ctx.body, "status": ctx.status},
        target,
        spec,
        ctx.policy_spec,
        api=ctx.api,
        dry_run=dry_run,
        key=key,
        known_originals=dict((entry or {}).get("originals") or {}),
        entry=dict(entry or {}),
    )


def refusal(ctx: IncidentContext, spec: Body, target: Body) -> Outcome | None:
    """A Failed outcome when SPEC on TARGET is outside the tenant bounds, else None.

    Checked right before each apply, against the objects as they are now: the policy
    check (Ready) saw them earlier, and a label or a mount may have changed since.
    """
    limits = ctx.world.tenant_bounds
    if limits is None or not bounds.applies(ctx.policy):
        return None
    found = bounds.step_problems(spec, ctx.namespace, target, ctx.api.get, limits, ctx.targets)
    if not found:
        return None
    return Outcome(
        "Failed",
        f"refused, outside the tenant bounds: {'; '.join(found)}; nothing was changed "
        f"({bounds.ADMIN_HINT})",
    )


def apply_checked(ctx: IncidentContext, action: actions.Action, actx: ActionContext) -> Outcome:
    """ACTION applied as ACTX says, unless that is outside the tenant bounds."""
    try:
        refused = refusal(ctx, actx.spec, actx.target)
        if refused is None:
            from .regulatory import freeze_evidence  # here: regulatory runs steps too

            freeze_evidence(ctx, action, actx.dry_run)  # Art. 73(6): before it alters anything
        return refused or action.apply(actx)
    except APIError as err:
        return Outcome("Failed", str(err))


def run(ctx: IncidentContext, step: Step, dry_run: bool) -> Outcome:
    """STEP's outcome; an apiserver error is a Failed outcome, never an exception."""
    if step.skip is not None:
        return step.skip
    entry = ctx.entries.get(step.id)
    actx = action_context(ctx, step.spec, step.target, dry_run=dry_run, entry=entry)
    return apply_checked(ctx, step.action, actx)


def apply(ctx: IncidentContext, steps: list[Step], dry_run: bool) -> list[str]:
    """Apply STEPS in order (each idempotent); the failures, in words."""
    failed = []
    for step in steps:
        previous = ctx.entries.get(step.id, {})
        if step.action.once and previous.get("state") in HELD and step.skip is None:
            continue
        if not dry_run and contest.held_back(ctx, step):
            continue  # contested: not re-applied before its backoff ends
        outcome = run(ctx, step, dry_run)
        failpoint("after-apply")
        record(ctx, step, outcome)
        contest.applied(ctx, step, outcome)
        if outcome.recheck is not None:
            ctx.requeue_after(outcome.recheck)
        if outcome.state == "Failed":
            failed.append(f"{step.action.type} on {step.entry_target}: {outcome.message}")
    return failed


def record(ctx: IncidentContext, step: Step, outcome: Outcome) -> None:
    key, target = step.id
    entry = ctx.entries.get((key, target)) or {}
    was = entry.get("state")
    if was in HELD and outcome.state == "Skipped":
        return  # a cooldown never cancels what is already in force
    entry.update(
        action=step.action.type, key=key, target=target, state=outcome.state,
        message=outcome.message,
    )  # fmt: skip
    if outcome.objects:
        entry["objects"] = outcome.objects
    if outcome.originals:
        entry["originals"] = {**(entry.get("originals") or {}), **outcome.originals}
    entry.update(outcome.keep)
    if outcome.state == "Applied" and was != "Applied":
        entry["appliedAt"] = now_iso(ctx.now)
        entry.pop("revertedAt", None)
        add_timeline(
            ctx.status,
            "MitigationApplied",
            f"{step.action.type} on {target}: {outcome.message}",
            ctx.now,
        )
    ctx.entries[(key, target)] = entry


def action_of(entry: Body) -> actions.Action:
    return actions.get(entry.get("action") or entry["key"].partition(":")[0])
