"""The escalation ladder: who is paged next when the incident is not handled in time.

A response's `escalation: [{after: 10m, unless: Acknowledged, channels: [leadership]}]`
pages each level's channels (through Notify's send path) once `after` has passed since
detection, unless its condition holds then:

    Acknowledged  `spec.acknowledged` (`aiincident ack`) or the condition Acknowledged=True
    Mitigated     phase Mitigated or later, or the condition Mitigated=True
    Resolved      phase Resolved or Closed

The condition is looked at once, when the level comes due (the first pass at or after
it): a level found met then is recorded `Skipped` and never fires later, so withdrawing
an acknowledgement does not page leadership out of the blue. A resolved incident pages
nobody any more, whatever its levels say; a dry run pages nobody. Each level fires once per
incident, ever: `status.escalations` keeps one entry per (severity, level).

At most once, not at least once: a level's entry is written `Sending` in the pass's
status write *before* anything is posted; the post runs after the write, outside the
incident's lock (`send`), and its outcome is merged in afterwards (`Sent` / `Failed`).
An entry found `Sending` that no thread of this process is sending (`_in_flight`) was
left by a process that stopped between the two writes (a crash, a restart, a failover):
the page may or may not have gone out, and it is never sent again; it becomes `Unknown`,
with a warning Event, so a person can check. A page to leadership sent twice is the
failure the issue rules out; a possibly lost one is said, loudly.

Once the incident is resolved, each level that paged is told so (PagerDuty `resolve`,
Opsgenie close, a short "resolved" elsewhere), once, under the same claim: the entry's
`resolve` is written `Sending`, then posted, then `Sent` / `Failed` (`Unknown` after a
crash in between; not sent again).

`plan` and `problems` are pure; `escalate` is the engine's hook in the pass, `claim` and
`send` run around the status write (engine.reconcile).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..conditions import is_true, now_iso
from ..durations import parse_duration
from ..times import human, parse_time

Body = dict[str, Any]
log = logging.getLogger("ai_incident_operator.engine")
FIELD = "escalations"  # status.escalations
UNLESS = ("Acknowledged", "Mitigated", "Resolved")
MITIGATED_PHASES = frozenset({"Mitigated", "Resolving", "Resolved", "Closed"})
RESOLVED_PHASES = frozenset({"Resolved", "Closed"})
# Entry states. SENDING: claimed, maybe being posted; the others are final.
SENDING, SENT, FAILED, SKIPPED, UNKNOWN = "Sending", "Sent", "Failed", "Skipped", "Unknown"
_NOT_MET = {"Acknowledged": "not acknowledged", "Mitigated": "not mitigated",
            "Resolved": "not resolved"}  # fmt: skip


@dataclass(frozen=True)
class Level:
    number: int  # 1-based position in the response's ladder
    after: timedelta
    unless: str | None
    channels: tuple[str, ...]

    def words(self) -> str:
        """E.g. "not acknowledged 10m after detection"."""
        not_met = _NOT_MET.get(self.unless or "", "")
        return f"{not_met} {human(self.after)} after detection".strip()


@dataclass
class Plan:
    fire: list[Level] = field(default_factory=list)  # due, condition not met: page now
    skip: list[tuple[Level, str]] = field(default_factory=list)  # due, met (in words)
    next_due: datetime | None = None  # when the next level not yet due comes due


# --- Pure: the ladder, what holds, what is due ---------------------------------------------


def levels(response: Body) -> list[Level]:
    """The response's ladder; a level the policy check would refuse is left out."""
    found = []
    for i, raw in enumerate(response.get("escalation") or []):
        if not isinstance(raw, dict) or level_problems(raw, None):
            continue
        after = parse_duration(str(raw["after"]))
        found.append(Level(i + 1, after, raw.get("unless"), tuple(raw["channels"])))
    return found


def holding(status: Body, spec: Body) -> dict[str, str]:
    """The `unless` conditions that hold now, each with the words that say why."""
    phase = status.get("phase") or "Detected"
    conditions = status.get("conditions")
    found: dict[str, str] = {}
    acknowledged = spec.get("acknowledged")
    if acknowledged or is_true(conditions, "Acknowledged"):
        who = acknowledged.get("by") if isinstance(acknowledged, dict) else None
        found["Acknowledged"] = f"acknowledged by {who}" if who else "acknowledged"
    if phase in MITIGATED_PHASES or is_true(conditions, "Mitigated"):
        found["Mitigated"] = f"mitigated (phase {phase})"
    if phase in RESOLVED_PHASES:
        found["Resolved"] = f"resolved (phase {phase})"
    return found


def plan(
    ladder: list[Level],
    since: datetime,
    now: datetime,
    held: Mapping[str, str],
    done: Collection[int],
) -> Plan:
    """Which levels of LADDER fire or are skipped at NOW, and when the next comes due.

    SINCE: detection. HELD: `holding`'s result now. DONE: the levels already recorded
    (fired, skipped or claimed): they are never looked at again.
    """
    result = Plan()
    for level in ladder:
        if level.number in done:
            continue
        due = since + level.after
        if due > now:
            if result.next_due is None or due < result.next_due:
                result.next_due = due
        elif level.unless and level.unless in held:
            result.skip.append((level, held[level.unless]))
        else:
            result.fire.append(level)
    return result


def level_problems(raw: Body, channels: Collection[str] | None) -> list[str]:
    """What is wrong with one level; CHANNELS: the policy's channel names (None: not checked)."""
    problems = []
    try:
        if parse_duration(str(raw.get("after") or "")) < timedelta(0):
            problems.append("after: must not be negative")
    except ValueError as err:
        problems.append(f"after: {err}")
    unless = raw.get("unless")
    if unless is not None and unless not in UNLESS:
        problems.append(f"unless: {unless!r} is not one of {', '.join(UNLESS)}")
    names = raw.get("channels")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append("channels: name at least one of notifications.channels")
    elif channels is not None:
        known = ", ".join(channels) or "none defined"
        problems += [
            f"channel {n} is not in notifications.channels ({known})"
            for n in names
            if n not in channels
        ]
    return problems


def problems(spec: Body) -> list[str]:
    """Every bad level of a policy SPEC's responses, with where it is (pure)."""
    from ..actions.notify import Notify, defined_channels

    channels = defined_channels(spec)
    found = []
    for i, response in enumerate(spec.get("responses") or []):
        for j, raw in enumerate(response.get("escalation") or []):
            where = f"responses[{i}].escalation[{j}]"
            if not isinstance(raw, dict):
                found.append(f"{where}: must be an object with after and channels")
                continue
            bad = level_problems(raw, channels)
            if not bad:
                # The channels themselves as Notify checks them (a webhook URL or Secret).
                bad = [
                    p.removeprefix("Notify: ")
                    for p in Notify().validate({"channels": raw["channels"]}, spec)
                ]
            found += [f"{where}: {p}" for p in bad]
    return found


# --- The engine's hook ---------------------------------------------------------------------

# (incident uid, severity, level, PAGE | RESOLVE) being posted by a thread of this process.
_in_flight: set[tuple[str, int, int, str]] = set()
_in_flight_lock = threading.Lock()
PAGE, RESOLVE = "page", "resolve"  # what a claim posts: the level's page, or its "resolved"
RESOLVE_FIELD = "resolve"  # in an entry: the state of its "resolved" (Sending | Sent | ...)


@dataclass
class Claim:
    """A level whose `Sending` entry (or `resolve: Sending`) was written: what `send` needs,
    outside the lock."""

    key: tuple[str, int, int, str]
    entry: Body
    incident: Body  # with the status as written
    policy_spec: Body
    tenant: str | None

    @property
    def resolving(self) -> bool:
        return self.key[3] == RESOLVE


def _uid(ctx: Any) -> str:
    return ctx.body["metadata"].get("uid") or ctx.holder


def since(status: Body, body: Body, now: datetime) -> datetime:
    """Detection: status.detectedAt, else the object's creation, else NOW."""
    for text in (status.get("detectedAt"), (body.get("metadata") or {}).get("creationTimestamp")):
        when = parse_time(text)
        if when is not None:
            return when
    return now


def escalate(ctx: Any, response: Body, severity: int, dry_run: bool) -> None:
    """Record what the ladder asks now (CTX: an engine.IncidentContext), and requeue.

    Fired levels are only claimed here (`Sending`); nothing is posted in the pass.
    """
    if ctx.api.read_only:
        return  # a look that changes nothing decides nothing either
    entries: list[Body] = [dict(e) for e in ctx.status.get(FIELD) or []]
    uid = _uid(ctx)
    for entry in entries:
        key = (uid, entry.get("severity"), entry.get("level"), PAGE)
        _unknown_resolve(ctx, entry, (*key[:3], RESOLVE))
        if entry.get("state") == SENDING and not _busy(key):
            entry["state"] = UNKNOWN
            entry["message"] = (
                f"the operator stopped while paging {', '.join(entry.get('channels') or [])} "
                f"(claimed at {entry.get('at')}): it may not have gone out, and is not sent "
                "again (at most once)"
            )
            ctx.say("EscalationUnknown", f"escalation level {entry.get('level')}: "
                    f"{entry['message']}", warning=True)  # fmt: skip
    # A resolved incident pages nobody any more, whatever its levels say; the levels that
    # paged are told it is resolved (PagerDuty resolve, Opsgenie close), once each.
    resolved = ctx.status.get("phase") in RESOLVED_PHASES
    if resolved and not dry_run:
        for entry in entries:
            if entry.get("state") == SENT and not entry.get(RESOLVE_FIELD):
                entry[RESOLVE_FIELD] = SENDING
    ladder = [] if resolved else levels(response)
    if ladder and not dry_run:
        detected = since(ctx.status, ctx.body, ctx.now)
        done = {e.get("level") for e in entries if e.get("severity") == severity}
        decided = plan(ladder, detected, ctx.now, holding(ctx.status, ctx.spec), done)
        for level, why in decided.skip:
            words = f"{why} when due ({human(level.after)} after detection)"
            entries.append(_entry(level, severity, detected, ctx.now, SKIPPED, words))
            ctx.say("EscalationSkipped", f"escalation level {level.number} to "
                    f"{', '.join(level.channels)} not needed: {words}")  # fmt: skip
        for level in decided.fire:
            entries.append(_entry(level, severity, detected, ctx.now, SENDING, level.words()))
        if decided.next_due is not None:
            ctx.requeue_after((decided.next_due - ctx.now).total_seconds() + 0.5)
    if entries:
        ctx.status[FIELD] = entries


def _entry(
    level: Level, severity: int, detected: datetime, now: datetime, state: str, message: str
) -> Body:
    entry: Body = {"severity": severity, "level": level.number, "after": human(level.after)}
    if level.unless:
        entry["unless"] = level.unless
    entry.update(channels=list(level.channels), dueAt=now_iso(detected + level.after),
                 at=now_iso(now), state=state, message=message)  # fmt: skip
    return entry


def _unknown_resolve(ctx: Any, entry: Body, key: tuple[str, int, int, str]) -> None:
    if entry.get(RESOLVE_FIELD) != SENDING or _busy(key):
        return
    entry[RESOLVE_FIELD] = UNKNOWN
    ctx.say("EscalationUnknown", f"escalation level {entry.get('level')}: the operator stopped "
            f"while telling {', '.join(entry.get('channels') or [])} the incident is resolved; "
            "it may not have gone out, and is not sent again", warning=True)  # fmt: skip


def _busy(key: tuple[str, int, int, str]) -> bool:
    with _in_flight_lock:
        return key in _in_flight


def claim(ctx: Any, before: Body) -> list[Claim]:
    """The levels this pass's status write just claimed (called once it succeeded, under the
    incident's lock): marked in flight before the lock goes, so no other pass of this
    process takes their `Sending` entry for a stopped one."""
    if ctx.api.read_only:
        return []
    was = {
        (e.get("severity"), e.get("level"), what)
        for e in before.get(FIELD) or []
        for what, sending in ((PAGE, e.get("state")), (RESOLVE, e.get(RESOLVE_FIELD)))
        if sending == SENDING
    }
    uid = _uid(ctx)
    from .. import egress

    tenant = egress.scope_of_ref(ctx.status.get("policyRef"), ctx.namespace)
    claims = []
    incident = {**ctx.body, "status": ctx.status}
    for entry in ctx.status.get(FIELD) or []:
        for what, sending in ((PAGE, entry.get("state")), (RESOLVE, entry.get(RESOLVE_FIELD))):
            if sending != SENDING or (entry["severity"], entry["level"], what) in was:
                continue
            key = (uid, entry["severity"], entry["level"], what)
            with _in_flight_lock:
                _in_flight.add(key)
            claims.append(Claim(key, dict(entry), incident, ctx.policy_spec, tenant))
    return claims


def page(claim: Claim) -> dict[str, Any]:
    """What the escalation page says about itself (level, what was not met, since when)."""
    entry = claim.entry
    return {
        "level": entry["level"],
        "unless": entry.get("unless"),
        "notMet": entry["message"],
        "since": (claim.incident.get("status") or {}).get("detectedAt"),
        "dueAt": entry["dueAt"],
        "channels": entry["channels"],
    }


def send(api: Any, claims: list[Claim], amend: Callable[[Callable[[Any], None]], None]) -> None:
    """Post each claimed level through Notify's send path, then merge the outcome into the
    status with AMEND (engine.amend for this incident). Runs outside the incident's lock."""
    if not claims:
        return
    from ..actions import notify, pages

    outcomes: list[tuple[Claim, list[notify.Delivery]]] = []
    try:
        for claimed in claims:
            about = page(claimed)

            def body(channel: Body, about: Body = about, claimed: Claim = claimed) -> Any:
                fmt = channel.get("format", "Generic")
                if claimed.resolving:
                    return notify.request(fmt, pages.RESOLVE, claimed.incident)
                return notify.escalation_payload(fmt, claimed.incident, about)

            what = "escalation-resolve" if claimed.resolving else "escalation"
            deliveries = notify.deliver(
                api,
                list(claimed.entry["channels"]),
                claimed.policy_spec,
                body,
                memo=(claimed.key[0], f"{what}-{claimed.key[1]}-{claimed.key[2]}"),
                tenant=claimed.tenant,
            )
            outcomes.append((claimed, deliveries))

        def record(ctx: Any) -> None:
            entries = [dict(e) for e in ctx.status.get(FIELD) or []]
            for claimed, deliveries in outcomes:
                _record(ctx, entries, claimed, deliveries, notify.report)
            ctx.status[FIELD] = entries

        try:
            amend(record)
        except Exception as err:  # the outcome is lost, the page is not: the next pass says so
            log.warning("escalation outcome of %s not recorded: %s", claims[0].key[0], err)
    finally:
        with _in_flight_lock:
            for claimed in claims:
                _in_flight.discard(claimed.key)


def _record(
    ctx: Any,
    entries: list[Body],
    claimed: Claim,
    deliveries: list[Any],
    report: Callable[[list[Any], str], str],
) -> None:
    level, severity = claimed.entry["level"], claimed.entry["severity"]
    entry = next(
        (e for e in entries if (e.get("severity"), e.get("level")) == (severity, level)), None
    )
    if entry is None:
        entry = dict(claimed.entry)
        entries.append(entry)
    failed = any(not d.ok for d in deliveries) or not deliveries
    channels = ", ".join(claimed.entry["channels"])
    if claimed.resolving:
        outcome = report(deliveries, "resolved sent to")
        entry.update({RESOLVE_FIELD: FAILED if failed else SENT, "resolvedAt": now_iso(ctx.now)})
        words = f"escalation level {level}: {outcome}"
        ctx.say("EscalationResolveFailed" if failed else "EscalationResolved", words,
                warning=failed)  # fmt: skip
        return
    words = f"escalated to {channels}: {claimed.entry['message']}"
    outcome = report(deliveries, "paged")
    entry.update(state=FAILED if failed else SENT, sentAt=now_iso(ctx.now), result=outcome)
    if failed:
        ctx.say("EscalationFailed", f"{words}; {outcome}", warning=True)
    else:
        ctx.say("Escalated", words)
