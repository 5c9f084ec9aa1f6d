"""Approval: a response with requireApproval waits for a person, and says so where people are.

While it waits (phase AwaitingApproval, `Approved=False/ApprovalRequired`) the
response's own Notify channels are paged that approval is waiting, with the
command that gives it. `status.approvalPage` records the channels reached, so that
neither a later pass nor a restart pages them again; a channel that failed is tried
again with the pass's backoff. Once `spec.approved` is true, who approved it
(`spec.approvedBy`, which `aiincident approve --by` sets) goes into the timeline and
the `Approved` condition.
"""

from __future__ import annotations

from typing import Any

from .. import egress
from ..actions import notify
from ..conditions import get_condition, now_iso
from .context import IncidentContext
from .decide import Decision

PAGE = "approvalPage"  # the status field: which channels were told, for which severity


def gate(ctx: IncidentContext, decision: Decision) -> bool:
    """Whether the response may be applied now; sets `Approved`, pages while it waits."""
    severity = decision.severity
    if decision.approval == "ApprovalRequired":
        ctx.condition("Approved", False, "ApprovalRequired",
                      f"severity {severity} responses need approval: set spec.approved to true")  # fmt: skip
        ctx.enter(
            "AwaitingApproval",
            f"severity {severity} response awaits approval",
            event=f"{command(ctx)} (or set spec.approved: true) applies the response",
        )
        page(ctx, decision)
        return False
    if decision.approval == "Approved":
        approved(ctx)
    else:
        ctx.condition(
            "Approved", True, "NotRequired", f"severity {severity} responses need no approval"
        )
    return True


def command(ctx: IncidentContext) -> str:
    return f"aiincident approve {ctx.name} -n {ctx.namespace}"


def channels(response: dict[str, Any]) -> list[str]:
    """The channels the response's Notify actions name, each once, in order."""
    names: list[str] = []
    for spec in response.get("actions") or []:
        if spec.get("type") == notify.Notify.type:
            names += [n for n in spec.get("channels") or [] if n not in names]
    return names


def page(ctx: IncidentContext, decision: Decision) -> None:
    """Tell the response's channels that it waits for approval: each channel once."""
    names = channels(decision.response)
    kept = dict(ctx.status.get(PAGE) or {})
    if kept.get("severity") != decision.severity:
        kept = {"severity": decision.severity}  # another response waits now: a new request
    reached = list(kept.get("channels") or [])
    todo = [n for n in names if n not in reached]
    if not todo or decision.dry_run or ctx.api.read_only:
        return  # a dry run, or a look that changes nothing, pages nobody
    body = {**ctx.body, "status": ctx.status}
    actions = [a.get("type", "?") for a in decision.response.get("actions") or []]
    deliveries = notify.deliver(
        ctx.api,
        todo,
        ctx.policy_spec,
        lambda channel: notify.approval_payload(
            channel.get("format", "Generic"), body, command(ctx), actions
        ),
        memo=(ctx.body["metadata"].get("uid") or ctx.holder, f"approval-{decision.severity}"),
        tenant=egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace),
    )
    reached += [d.channel for d in deliveries if d.ok]
    failed = "; ".join(f"{d.channel} ({d.detail})" for d in deliveries if not d.ok)
    words = f"{notify.report(deliveries, 'asked for approval on')}: {command(ctx)}"
    # A channel that keeps failing is tried on every retry; the timeline says it once.
    news = any(d.ok for d in deliveries) or failed != kept.get("failed", "")
    ctx.say("ApprovalRequested", words, warning=bool(failed), timeline=news)
    kept.update(channels=reached, notifiedAt=now_iso(ctx.now))
    if failed:
        kept["failed"] = failed
    else:
        kept.pop("failed", None)  # the apiserver reads an empty string here as null
    ctx.status[PAGE] = kept
    if failed:
        ctx.retry()


def approved(ctx: IncidentContext) -> None:
    """The Approved condition and, the first time, a timeline entry naming who approved."""
    who = ctx.spec.get("approvedBy")
    before = get_condition(ctx.status.get("conditions"), "Approved") or {}
    words = "spec.approved is true" + (f" (approved by {who})" if who else "")
    ctx.condition("Approved", True, "Approved", words)
    if before.get("status") != "True":
        ctx.say(
            "Approved",
            f"response approved by {who}"
            if who
            else "response approved (spec.approved set without spec.approvedBy: "
            "who approved is not recorded; aiincident approve --by WHO records it)",
        )
