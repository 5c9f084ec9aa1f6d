"""The regulatory clock: with regulatory exposure, the report deadline, legal told once, a warning.

`spec.regulatoryExposure: true` starts the clock at detection (the policy's
`regulatory.reportWithin`, 15 days by default); `regulatory.channels` are notified
once; an Event warns when the deadline is near (two days, or a fifth of the time).
"""

from __future__ import annotations

from datetime import timedelta

from .. import actions, review
from ..conditions import now_iso
from ..times import parse_time
from .context import IncidentContext
from .decide import Step
from .steps import apply


def regulatory_clock(ctx: IncidentContext, dry_run: bool) -> None:
    if not ctx.spec.get("regulatoryExposure"):
        return
    regulatory = ctx.policy_spec.get("regulatory") or {}
    detected = parse_time(ctx.status.get("detectedAt")) or ctx.now
    due = review.regulatory_due_by(detected, ctx.policy_spec)
    if not ctx.status.get("regulatoryReportDueBy"):
        ctx.status["regulatoryReportDueBy"] = now_iso(due)
        ctx.say(
            "RegulatoryClockStarted",
            f"regulatory exposure: the report is due by {now_iso(due)}",
            warning=True,
        )
    if regulatory.get("channels"):
        spec = {"type": "Notify", "channels": regulatory["channels"], "purpose": "regulatory"}
        target = ctx.targets[0] if ctx.targets else {}
        apply(ctx, [Step(actions.get("Notify"), spec, target, f"AIIncident/{ctx.name}")], dry_run)
    types = {t["type"] for t in ctx.status.get("timeline") or []}
    near = min(timedelta(days=2), (due - detected) / 5)
    if "RegulatoryDeadlineNear" in types or ctx.status.get("phase") == "Closed":
        return
    if due - ctx.now <= near:
        words = f"the regulatory report is due by {now_iso(due)} (in {due - ctx.now})"
        ctx.say("RegulatoryDeadlineNear", words, warning=True)
    else:
        ctx.requeue_after((due - near - ctx.now).total_seconds() + 1)
