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
from ..actions import notify, pages
from ..conditions import get_condition, now_iso
from . import outside
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
    """Tell the response's channels that it waits for approval: each channel once.

    The channels are claimed (`sending`) in the pass's status write and paged after it
    (engine.outside); a claim that a stopped operator process left without an outcome is
    not paged again, but on PagerDuty and Opsgenie (one alert, whatever the repeats)."""
    what = f"approval-{decision.severity}"
    if decision.dry_run or ctx.api.read_only or outside.busy((ctx.uid, what)):
        return  # a dry run, or a look that changes nothing, pages nobody
    kept = dict(ctx.status.get(PAGE) or {})
    if kept.get("severity") != decision.severity:
        kept = {"severity": decision.severity}  # another response waits now: a new request
    reached = list(kept.get("channels") or [])
    _in_doubt(ctx, kept, reached)
    todo = [n for n in channels(decision.response) if n not in reached]
    if not todo:
        ctx.status[PAGE] = kept
        return
    body = {**ctx.body, "status": ctx.status}
    actions = [a.get("type", "?") for a in decision.response.get("actions") or []]
    api, spec, words = ctx.api, ctx.policy_spec, command(ctx)
    tenant = egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace)

    def call() -> list[notify.Delivery]:
        return notify.deliver(
            api,
            todo,
            spec,
            lambda channel: notify.approval_payload(
                channel.get("format", "Generic"), body, words, actions
            ),
            memo=(ctx.uid, what),
            tenant=tenant,
        )

    ctx.outside(what, call, lambda fresh, deliveries: _paged(fresh, decision.severity, deliveries))
    kept["sending"] = {"channels": todo, "at": now_iso(ctx.now), "by": notify.PROCESS}
    ctx.status[PAGE] = kept


def _in_doubt(ctx: IncidentContext, kept: dict[str, Any], reached: list[str]) -> None:
    """A claim left by an operator process that stopped mid-send: its channels count as
    reached (in `unsure`, said loudly), but PagerDuty and Opsgenie, which get it again."""
    claim = kept.pop("sending", None) or {}
    if claim.get("by") in (None, notify.PROCESS):
        return
    formats = {n: c.get("format") for n, c in notify.defined_channels(ctx.policy_spec).items()}
    doubt = [n for n in claim.get("channels") or []
             if n not in reached and formats.get(n) not in pages.DEDUPLICATED]  # fmt: skip
    if not doubt:
        return
    reached += doubt
    kept["channels"] = list(reached)
    kept["unsure"] = list(kept.get("unsure") or []) + doubt
    ctx.say("NotifyUnsure", f"approval page not sent again to {', '.join(doubt)}: the operator "
            f"stopped while sending it at {claim.get('at')}; it may have gone out, and a second "
            "copy is worse: look in the channel", warning=True)  # fmt: skip


def _paged(ctx: IncidentContext, severity: int, deliveries: list[notify.Delivery]) -> None:
    """Record the approval page's outcome (a fresh read's CTX)."""
    kept = dict(ctx.status.get(PAGE) or {})
    if kept.get("severity") != severity:
        return  # another response waits now: its own page says so
    kept.pop("sending", None)
    reached = list(kept.get("channels") or [])
    reached += [d.channel for d in deliveries if d.ok and d.channel not in reached]
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
