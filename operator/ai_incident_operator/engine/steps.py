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


def calls_out(ctx: IncidentContext, action: actions.Action, dry_run: bool = False) -> bool:
    """Whether ACTION's call to its outside service is made after the pass (engine.outside)."""
    return action.outside and not dry_run and not ctx.api.read_only


def apply(ctx: IncidentContext, steps: list[Step], dry_run: bool) -> list[str]:
    """Apply STEPS in order (each idempotent); the failures, in words. An outside step is
    only asked for here (`call_out`); its outcome is recorded once its call returns."""
    failed = []
    for step in steps:
        previous = ctx.entries.get(step.id, {})
        if step.action.once and previous.get("state") in HELD and step.skip is None:
            continue
        if not dry_run and contest.held_back(ctx, step):
            continue  # contested: not re-applied before its backoff ends
        if step.skip is None and calls_out(ctx, step.action, dry_run) and _calls(ctx, step):
            refused = _refused(ctx, step)
            if refused is None:
                call_out(ctx, step)
                continue
            outcome = refused
        else:
            outcome = run(ctx, step, dry_run)
        failpoint("after-apply")
        record(ctx, step, outcome)
        contest.applied(ctx, step, outcome)
        if outcome.recheck is not None:
            ctx.requeue_after(outcome.recheck)
        if outcome.state == "Failed":
            failed.append(f"{step.action.type} on {step.entry_target}: {outcome.message}")
    return failed


def _calls(ctx: IncidentContext, step: Step) -> bool:
    entry = ctx.entries.get(step.id)
    return step.action.calls(action_context(ctx, step.spec, step.target, entry=entry))


def _refused(ctx: IncidentContext, step: Step) -> Outcome | None:
    try:
        return refusal(ctx, step.spec, step.target)
    except APIError as err:
        return Outcome("Failed", str(err))


def call_key(entry_id: tuple[str, str]) -> str:
    """What an entry's calls are known by (engine.outside): its apply and its undo alike,
    so that neither starts while the other is under way."""
    return f"{entry_id[0]} {entry_id[1]}"


def call_out(ctx: IncidentContext, step: Step) -> None:
    """Ask for STEP's call after the status write; its entry says meanwhile that it is under
    way (and carries what the action claims, Notify's `sending`). Nothing when it is being
    called already."""
    entry = ctx.entries.get(step.id)
    actx = action_context(ctx, step.spec, step.target, entry=entry)

    def call() -> Outcome:
        try:
            return step.action.apply(actx)
        except APIError as err:
            return Outcome("Failed", str(err))

    if not ctx.outside(call_key(step.id), call, lambda fresh, out: posted(fresh, step, out)):
        return
    claim = step.action.claim(actx)
    key, target = step.id
    if entry is None:
        entry = {"action": step.action.type, "key": key, "target": target, "state": claim.state,
                 "message": claim.message}  # fmt: skip
    entry.update(claim.keep)
    ctx.entries[step.id] = entry


def posted(ctx: IncidentContext, step: Step, outcome: Outcome) -> None:
    """Merge the OUTCOME of STEP's call into CTX (a fresh read): its entry, its timeline entry,
    and what it asks for: a retry with backoff when it failed, its recheck, or, when it
    changed something, a pass at once (which says what is now in force, and acknowledges
    what was just paged)."""
    entry = ctx.entries.get(step.id) or {}
    was = entry.get("state")
    if entry:
        entry.pop(actions.SENDING, None)
        outcome = step.action.merged(entry, outcome)
    record(ctx, step, outcome)
    if outcome.state == "Failed":
        ctx.retry()
    elif outcome.recheck is not None:
        ctx.requeue_after(outcome.recheck)
    elif outcome.changed or outcome.state != was:
        ctx.requeue_after(0.0)


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
