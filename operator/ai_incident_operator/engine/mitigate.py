"""Mitigate: apply the decided response, undo what it no longer has, say how it went.

Runs the decision's steps through `steps.apply`; a failed step is a `Failed` entry
and the rest still run; then held entries the new plan lacks (a de-escalation)
are undone. Conditions: `Approved`, `Mitigated` (ActionsApplied, DryRun,
ActionFailed, Contested when someone keeps reverting a held field, or the gate's
reason); phases AwaitingApproval, Mitigating, Mitigated.
"""

from __future__ import annotations

from ..conditions import now_iso
from . import approval
from .contest import describe, settle
from .context import HELD, IncidentContext
from .decide import Decision
from .steps import apply
from .undo import revert


def mitigate(ctx: IncidentContext, decision: Decision) -> None:
    severity = decision.severity
    if decision.gate:
        reason, message = decision.gate
        before = ctx.status.get("conditions") or []
        said = next((c for c in before if c.get("type") == "Mitigated"), {})
        if not ctx.held() and said.get("reason") != reason:
            ctx.condition("Mitigated", False, reason, message)
            ctx.say(reason, message, warning=reason != "NoPolicy", timeline=False)
        return

    if not approval.gate(ctx, decision):
        return  # it waits for a person, who has been paged

    failed = apply(ctx, decision.steps, decision.dry_run)
    failed += revert(ctx, keep=decision.wanted)
    contested = settle(ctx, decision)

    if decision.dry_run:
        ctx.condition(
            "Mitigated", False, "DryRun", "dry run: nothing was changed; see status.mitigations"
        )
        return
    if failed:
        words = "; ".join(failed)
        ctx.condition("Mitigated", False, "ActionFailed", words)
        ctx.enter("Mitigating", "some mitigations failed; retrying",
                  reason="MitigationFailed", event=words, warning=True)  # fmt: skip
        ctx.retry()
        return
    if contested:
        # Someone keeps putting the fields back: the model is not in the mitigated state.
        words = "; ".join(describe(c, ctx.now) for c in contested)
        ctx.condition("Mitigated", False, "Contested", words)
        ctx.enter("Mitigating", f"mitigation contested: {words}", reason="Contested",
                  event=words, warning=True)  # fmt: skip
        return
    ends = [step.until for step in decision.steps if step.until is not None]
    if ends:
        ctx.requeue_after((min(ends) - ctx.now).total_seconds() + 1)  # applied then
    summary = ", ".join(f"{e['action']} on {e['target']}" for e in ctx.entries.values()
                        if e["state"] in HELD)  # fmt: skip
    if ends and not summary:
        # Everything is held back: saying "Mitigated" would be a lie.
        until = min(ends)
        words = f"every step waits for a cooldown that ends at {now_iso(until)}; applied then"
        ctx.condition("Mitigated", False, "CooldownActive", words)
        return
    ctx.condition("Mitigated", True, "ActionsApplied", summary or "no actions for this severity")
    ctx.enter("Mitigated", f"severity {severity} response applied: {summary or 'none'}")
