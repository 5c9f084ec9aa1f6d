"""Contested mitigations in the engine: count the reverts, back off, page once, report in bulk.

The rules are `contest` (pure); this module is their I/O. `steps.apply` asks
`held_back` before it re-applies a step (a step waiting out its contest's backoff
is not re-applied; its objects are only looked at, so that a revert is still
counted) and hands `applied` what a re-apply found reverted. `settle`, once per
mitigation pass, ends the contests whose last write has held, pages the response's
Notify channels when a contest begins, posts the aggregated `MitigationContested`
Events and asks for the next pass. The records live in `status.contests`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from .. import contest as rules
from .. import egress, ledger, managers
from ..actions import notify
from ..actions.base import Outcome
from ..errors import APIError
from ..lifecycle import add_timeline
from ..resources import KINDS, Ref
from ..times import human, iso
from .context import IncidentContext, log
from .decide import Decision, Step

STATUS = "contests"
Key = tuple[str, str, str]  # (action key, entry target, "Kind/name")


def records(ctx: IncidentContext) -> dict[Key, rules.Contest]:
    found = (rules.load(e) for e in ctx.status.get(STATUS) or [] if isinstance(e, dict))
    return {(c.key, c.target, c.object): c for c in found}


def save(ctx: IncidentContext, recs: dict[Key, rules.Contest]) -> None:
    if recs:
        ctx.status[STATUS] = [rules.dump(c) for c in recs.values()]
    else:
        ctx.status.pop(STATUS, None)


def held_back(ctx: IncidentContext, step: Step) -> bool:
    """Whether STEP waits out the backoff of a contest; its contested objects are looked at."""
    recs = records(ctx)
    waiting = [k for k, c in recs.items() if (c.key, c.target) == step.id
               and c.contested and not rules.may_apply(c, ctx.now)]  # fmt: skip
    if not waiting:
        return False
    for k in waiting:
        recs[k] = look(ctx, recs[k])
    save(ctx, recs)
    return True


def look(ctx: IncidentContext, c: rules.Contest) -> rules.Contest:
    """C after reading its object (no write): a revert seen, or the value back in force."""
    try:
        obj = ctx.api.get(Ref.parse(ctx.namespace, c.object))
    except APIError:
        return c  # looked at again on the next pass
    if obj is None:
        return c
    paths = ledger.contested(obj, ctx.holder, c.key)
    if paths:
        return rules.reverted(c, ctx.now, paths, managers.likely_actor(obj, paths))
    # In force again without the operator writing (the actor gave up and put it back).
    return c if c.holding else rules.wrote(c, ctx.now)


def applied(ctx: IncidentContext, step: Step, outcome: Outcome) -> None:
    """Count what OUTCOME's re-apply found reverted (it wrote the values back)."""
    if outcome.state != "Applied" or not outcome.reverts:
        return
    recs = records(ctx)
    key, target = step.id
    for revert in outcome.reverts:
        k = (key, target, revert.object)
        c = recs.get(k) or rules.Contest(object=revert.object, key=key, target=target)
        c = rules.reverted(c, ctx.now, revert.paths, revert.manager)
        recs[k] = rules.wrote(c, ctx.now)
    save(ctx, recs)


def settle(ctx: IncidentContext, decision: Decision) -> list[rules.Contest]:
    """End, report and page this pass's contests; those still going on."""
    recs = records(ctx)
    held = {(e.get("key") or e.get("action"), e.get("target")) for e in ctx.held()}
    for k, c in list(recs.items()):
        if (c.key, c.target) not in held:
            del recs[k]  # undone, or no longer in the plan: nothing left to contest
            continue
        if rules.over(c, ctx.now):
            if c.contested:
                _ended(ctx, c)
            elif c.unreported:
                _report(ctx, c)
            del recs[k]
            continue
        if c.since is not None and c.since >= rules.truncated(ctx.now):  # began this pass
            words = describe(c, ctx.now)
            add_timeline(ctx.status, "MitigationContested", words, ctx.now)
            log.warning("%s: MitigationContested: %s", ctx.holder, words)
            _event(ctx, c, words)
            c = rules.reported(c, ctx.now)
        elif rules.report_due(c, ctx.now):
            _report(ctx, c)
            c = rules.reported(c, ctx.now)
        if c.contested and not c.paged:
            c = _page(ctx, c, decision)
        recs[k] = c
        wake = rules.wake(c, ctx.now)
        if wake is not None:
            ctx.requeue_after(wake + 0.05)  # just after, so the rule holds when it runs
    save(ctx, recs)
    return [c for c in recs.values() if c.contested]


# --- Words --------------------------------------------------------------------------------


def _action(c: rules.Contest) -> str:
    return c.key.partition(":")[0]


def _actor(c: rules.Contest) -> str:
    return f"field manager {c.manager}" if c.manager else "an unknown writer (no managedFields)"


def describe(c: rules.Contest, now: datetime) -> str:
    """What the Mitigated condition and the page say about a contest."""
    fields = ", ".join(c.fields) or "its fields"
    nxt = rules.next_apply(c)
    when = f"next re-apply at {iso(nxt)}" if nxt and nxt > now else "re-applied"
    return (
        f"{c.object}: {_action(c)} is contested: {fields} reverted {c.count} times since "
        f"{iso(c.first)}, last by {_actor(c)} (the likely actor); re-applying with backoff "
        f"({when}). Stop that actor or make it ignore these fields (docs/gitops.md)"
    )


def _report(ctx: IncidentContext, c: rules.Contest) -> None:
    """The reverts since the last Event, in one Event."""
    fields = ", ".join(c.fields)
    if c.reported_at is None:
        words = f"{ctx.holder}: {_action(c)} was reverted ({fields}) by {_actor(c)}; re-applied"
    else:
        times = "time" if c.unreported == 1 else "times"
        words = (
            f"{ctx.holder}: {_action(c)} was reverted {c.unreported} more {times} since "
            f"{iso(c.reported_at)} ({fields}), last by {_actor(c)}; "
            + ("contested, re-applied with backoff" if c.contested else "re-applied")
        )
    _event(ctx, c, words)


def _event(ctx: IncidentContext, c: rules.Contest, words: str) -> None:
    """A Warning Event on the object and on the incident."""
    kind, _, name = c.object.partition("/")
    found = KINDS.get(kind)
    obj = {"apiVersion": found.api_version if found else "", "kind": kind,
           "metadata": {"name": name, "namespace": ctx.namespace}}  # fmt: skip
    ctx.api.event(obj, "MitigationContested", words, warning=True)
    ctx.api.event(ctx.body, "MitigationContested", f"{c.object}: {words}", warning=True)


def _ended(ctx: IncidentContext, c: rules.Contest) -> None:
    more = f"; {c.unreported} of them since the last Event" if c.unreported else ""
    words = (
        f"{c.object}: {_action(c)} has held for {human(rules.quiet(c))} since "
        f"{iso(c.applied_at)}: the contest is over ({c.count} reverts since {iso(c.first)}, "
        f"last by {_actor(c)}{more})"
    )
    ctx.say("MitigationHolds", words)


def _channels(decision: Decision) -> list[str]:
    names: list[str] = []
    for spec in decision.response.get("actions") or []:
        if spec.get("type") == "Notify":
            names += [n for n in spec.get("channels") or [] if n not in names]
    return names


def _page(ctx: IncidentContext, c: rules.Contest, decision: Decision) -> rules.Contest:
    """Tell the response's channels, once per contest (whatever the outcome)."""
    names = _channels(decision)
    if not names:
        return replace(c, paged=True)
    words = describe(c, ctx.now)
    incident = {**ctx.body, "status": ctx.status}

    def body(channel: dict[str, Any]) -> dict[str, Any]:
        fmt = channel.get("format", "Generic")
        base = notify.payload(fmt, incident, ctx.targets[0] if ctx.targets else None)
        if fmt == "Slack":
            escaped = words.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            return {"text": f"{base['text']}: MITIGATION CONTESTED: {escaped}"}
        return {**base, "event": "contested", "message": words,
                "contested": {"object": c.object, "action": _action(c), "fields": list(c.fields),
                              "reverts": c.count, "manager": c.manager}}  # fmt: skip

    what = f"contested {c.object} {rules.stamp(c.since or ctx.now)}"
    api, spec = ctx.api, ctx.policy_spec
    tenant = egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace)

    def call() -> list[notify.Delivery]:
        return notify.deliver(api, names, spec, body, memo=(ctx.uid, what), tenant=tenant)

    def record(fresh: IncidentContext, deliveries: list[notify.Delivery]) -> None:
        failed = any(not d.ok for d in deliveries)
        fresh.say("NotifyFailed" if failed else "Notified",
                  f"mitigation contested on {c.object}: {notify.report(deliveries, 'paged')}",
                  warning=failed, timeline=False)  # fmt: skip

    # Paged after the status write (engine.outside), which records it as paged: at most once.
    ctx.outside(what, call, record)
    return replace(c, paged=True)
