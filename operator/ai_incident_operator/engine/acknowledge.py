"""Acknowledgement: a person says they have the incident; the paging services hear it.

`aiincident ack NAME --by WHO` sets `spec.acknowledged: {by, at}`. Each pass then
sets `Acknowledged=True/AcknowledgedBy` (a timeline entry the first time) and passes
it on, once per channel, to every channel a Notify entry in force has paged
(`delivered.trigger`): PagerDuty gets `event_action: acknowledge` and Opsgenie its
acknowledge call, both for the incident's one alert (its dedup key), so that on-call
stops being paged; Slack, MSTeams and Generic channels get a short "acknowledged by WHO"
so the people watching them know someone has it. The channels reached are kept in the
entry (`delivered.acknowledge`): neither a later pass nor a restart sends it again.
A page sent after the acknowledgement (a later trigger) is acknowledged by the pass that
follows its outcome. The escalation levels that paged hear it too (`escalations[].
acknowledged`), so that leadership's pager stops as well. Sending is Notify's send path
(parallel, with timeouts and retries), after the pass's status write (engine.outside); a
failed channel is tried again with the pass's backoff. Removing `spec.acknowledged` sets `Acknowledged=False`; the services
are not told (PagerDuty's Events API cannot un-acknowledge).

An approval wait paged to PagerDuty or Opsgenie opens the incident's alert too
(`approval.page`); resolved before the response's own page went out (a false alarm
resolved while it waited), that alert is resolved here, once (`approvalPage.resolved`).
"""

from __future__ import annotations

from typing import Any

from .. import egress
from ..actions import Outcome, notify, pages
from ..conditions import ACKNOWLEDGED, get_condition
from . import escalation
from .approval import PAGE
from .context import IncidentContext, policy_by_ref
from .steps import action_context

ALERTS = (pages.PAGERDUTY, pages.OPSGENIE)  # formats whose page stays open until resolved
LEVEL_ACKNOWLEDGED = "acknowledged"  # an escalation entry's channels told of the acknowledgement


def who(spec: dict[str, Any]) -> str | None:
    """Who acknowledged, '' when nobody is named; None when not acknowledged."""
    ack = spec.get("acknowledged")
    if not isinstance(ack, dict) or not ack:
        return None
    return str(ack.get("by") or "")


def acknowledge(ctx: IncidentContext) -> None:
    """The Acknowledged condition from spec.acknowledged, and the acknowledgement passed on."""
    resolve_approval_page(ctx)
    by = who(ctx.spec)
    before = get_condition(ctx.status.get("conditions"), ACKNOWLEDGED) or {}
    if by is None:
        if before.get("status") == "True":
            words = "spec.acknowledged was removed"
            ctx.condition(ACKNOWLEDGED, False, "AcknowledgementWithdrawn", words)
            ctx.say("AcknowledgementWithdrawn", words)
        return
    at = (ctx.spec.get("acknowledged") or {}).get("at")
    words = (f"acknowledged by {by}" if by else "acknowledged (spec.acknowledged.by not set)") + (
        f" at {at}" if at else ""
    )
    ctx.condition(ACKNOWLEDGED, True, "AcknowledgedBy", words)
    if before.get("status") != "True":
        ctx.say(ACKNOWLEDGED, words)
    if not ctx.api.read_only:
        pass_on(ctx, by)
        pass_on_to_levels(ctx, by)


def pass_on(ctx: IncidentContext, by: str) -> None:
    """Send the acknowledgement to what each Notify entry paged and has not yet been told."""
    action = notify.Notify()
    for entry in list(ctx.entries.values()):
        if entry.get("action") != notify.Notify.type or not action.delivered(entry).get("trigger"):
            continue  # not a page, undone, or nothing reached yet
        key = entry.get("key") or entry["action"]
        spec = _spec(ctx, key)
        actx = action_context(ctx, spec or {"type": action.type}, {}, key=key, entry=entry)
        if spec is None and entry.get(notify.SENT_TO):
            actx = notify.as_sent(actx, entry[notify.SENT_TO])  # the policy is gone or changed
        if not action.acknowledging(actx):
            continue
        entry_id = (key, entry["target"])
        ctx.outside(f"acknowledge {key}", lambda actx=actx: action.acknowledge(actx, by),
                    lambda fresh, sent, entry_id=entry_id: _acknowledged(fresh, entry_id, sent))  # fmt: skip


def _acknowledged(
    ctx: IncidentContext, entry_id: tuple[str, str], sent: tuple[list[notify.Delivery], dict]
) -> None:
    """Record what passing the acknowledgement on reached (a fresh read's CTX)."""
    deliveries, kept = sent
    entry = ctx.entries.get(entry_id)
    if not deliveries or entry is None:
        return
    action = notify.Notify()
    entry.update(action.merged(entry, Outcome("Applied", "", keep=kept)).keep)
    failed = any(not d.ok for d in deliveries)
    message = notify.report(deliveries, "acknowledgement sent to")
    news = any(d.ok and not d.earlier for d in deliveries)
    ctx.say("NotifyFailed" if failed else "AcknowledgementSent", message, warning=failed,
            timeline=news)  # fmt: skip
    if failed:
        ctx.retry()


def pass_on_to_levels(ctx: IncidentContext, by: str) -> None:
    """Send the acknowledgement to the escalation levels that paged (`Sent`), so that
    leadership's pager stops too: each channel once (the entry's `acknowledged`), but those
    a Notify entry already told. Not once the incident is resolved: they hear that instead."""
    if ctx.status.get("phase") in escalation.RESOLVED_PHASES:
        return
    told = {
        name
        for entry in ctx.entries.values()
        if entry.get("action") == notify.Notify.type
        for name in notify.Notify.delivered(entry).get(pages.ACKNOWLEDGE, [])
    }
    incident = {**ctx.body, "status": ctx.status}
    api, spec = ctx.api, ctx.policy_spec
    tenant = egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace)
    for entry in ctx.status.get(escalation.FIELD) or []:
        done = set(entry.get(LEVEL_ACKNOWLEDGED) or []) | told
        todo = [n for n in entry.get("channels") or [] if n not in done]
        if entry.get("state") != escalation.SENT or not todo:
            continue
        level = (entry.get("severity"), entry.get("level"))
        what = f"acknowledge level {level[0]}-{level[1]}"

        def call(todo: list[str] = todo, what: str = what) -> list[notify.Delivery]:
            return notify.deliver(
                api,
                todo,
                spec,
                lambda channel: notify.request(
                    channel.get("format", "Generic"), pages.ACKNOWLEDGE, incident, who=by
                ),
                memo=(ctx.uid, what),
                tenant=tenant,
            )

        ctx.outside(what, call, lambda fresh, sent, level=level: _level_told(fresh, level, sent))


def _level_told(
    ctx: IncidentContext, level: tuple[Any, Any], deliveries: list[notify.Delivery]
) -> None:
    """Record which of a level's channels heard the acknowledgement (a fresh read's CTX)."""
    entry = next((e for e in ctx.status.get(escalation.FIELD) or []
                  if (e.get("severity"), e.get("level")) == level), None)  # fmt: skip
    if entry is None or not deliveries:
        return
    reached = list(entry.get(LEVEL_ACKNOWLEDGED) or [])
    reached += [d.channel for d in deliveries if d.ok and d.channel not in reached]
    entry[LEVEL_ACKNOWLEDGED] = reached
    failed = any(not d.ok for d in deliveries)
    message = f"escalation level {level[1]}: " + notify.report(
        deliveries, "acknowledgement sent to"
    )
    ctx.say("NotifyFailed" if failed else "AcknowledgementSent", message, warning=failed,
            timeline=any(d.ok and not d.earlier for d in deliveries))  # fmt: skip
    if failed:
        ctx.retry()


def _spec(ctx: IncidentContext, key: str) -> dict[str, Any] | None:
    """The policy's Notify (a response's or the regulatory one) whose entry is KEY."""
    return next((s for s in notify.notify_specs(ctx.policy_spec)
                 if notify.Notify().key(s) == key), None)  # fmt: skip


def resolve_approval_page(ctx: IncidentContext) -> None:
    """Resolve the alert an approval wait opened, once the incident is resolved, on the
    channels no Notify page of the incident covers (whose undo resolves the alert)."""
    kept = ctx.status.get(PAGE) or {}
    if (
        ctx.status.get("phase") not in ("Resolved", "Closed")
        or "resolved" in kept
        or not kept.get("channels")
        or ctx.api.read_only
    ):
        return
    policy = ctx.policy or policy_by_ref(ctx.world, ctx.status.get("policyRef")) or {}
    spec = policy.get("spec") or {}
    defined = notify.defined_channels(spec)
    paged = {
        name
        for entry in ctx.entries.values()
        if entry.get("action") == notify.Notify.type
        for name in (entry.get(notify.DELIVERED) or {}).get(pages.TRIGGER) or []
    }
    todo = [
        n
        for n in kept["channels"]
        if (defined.get(n) or {}).get("format") in ALERTS and n not in paged
    ]
    if not todo:
        ctx.status[PAGE] = {**kept, "resolved": []}
        return
    incident = {**ctx.body, "status": ctx.status}
    api, tenant = ctx.api, egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace)

    def call() -> list[notify.Delivery]:
        return notify.deliver(
            api,
            todo,
            spec,
            lambda channel: notify.request(
                channel.get("format", "Generic"), pages.RESOLVE, incident
            ),
            memo=(ctx.uid, "approval-resolve"),
            tenant=tenant,
        )

    def record(fresh: IncidentContext, deliveries: list[notify.Delivery]) -> None:
        page = fresh.status.get(PAGE) or {}
        fresh.status[PAGE] = {**page, "resolved": [d.channel for d in deliveries if d.ok]}
        if deliveries:
            failed = any(not d.ok for d in deliveries)
            fresh.say("NotifyFailed" if failed else "Notified",
                      f"approval page: {notify.report(deliveries, 'resolved sent to')}",
                      warning=failed)  # fmt: skip

    # Once, as an undo's "resolved", claimed before it is sent: a lost one must not keep
    # the incident coming back here, nor a restart send it twice.
    if ctx.outside("approval-resolve", call, record):
        ctx.status[PAGE] = {**kept, "resolved": []}
