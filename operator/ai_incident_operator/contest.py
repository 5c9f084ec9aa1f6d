"""When a held mitigation is contested, and how the operator backs off (pure).

Someone (a GitOps sync, a person, an autoscaler) may put back a field a mitigation
holds. One revert is repaired at once. REVERTS reverts within WINDOW make a
*contest*: the incident is no longer `Mitigated` (`Mitigated=False/Contested`), the
response's channels are paged once, and each re-apply waits longer than the last
(BACKOFF doubling from BACKOFF_BASE up to BACKOFF_CAP), so the operator neither
fights forever at the actor's pace nor gives up. The contest is over when the
operator's last write has held for `quiet` (at least QUIET, and twice the longest
time the actor ever took to revert a write): the actor has stopped. Events about
it are aggregated: one per EVENT_INTERVAL with the count of reverts.

A revert is counted once per operator write (a write is reverted at most once), so
looking again at an object still reverted counts nothing. The state of one contest
(`Contest`) lives in the incident's `status.contests`, so a restarted operator
resumes the backoff where it was. No I/O here: `engine.contest` reads and writes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from .times import parse_time

REVERTS = 3  # reverts ...
WINDOW = timedelta(minutes=5)  # ... within this long make a contest
BACKOFF_BASE = timedelta(seconds=2)  # the wait before the first re-apply of a contest
BACKOFF_CAP = timedelta(minutes=5)
QUIET = timedelta(seconds=10)  # at least this long held before the contest is over
EVENT_INTERVAL = timedelta(minutes=1)  # at most one Event per contest this often


@dataclass(frozen=True)
class Contest:
    """Reverts of one action's fields on one object."""

    object: str  # "Deployment/chat-llm": what was reverted
    key: str  # the mitigation entry's action key
    target: str  # and its target ("Deployment/chat-llm")
    fields: tuple[str, ...] = ()  # the paths found reverted last
    manager: str = ""  # the field manager that last wrote them (the likely actor)
    reverts: tuple[datetime, ...] = ()  # the latest REVERTS reverts
    count: int = 0  # reverts seen since the first
    first: datetime | None = None  # the first revert
    since: datetime | None = None  # contested since; None: not (yet) a contest
    strikes: int = 0  # reverts counted since the contest began
    writes: int = 0  # the operator's writes of its values since the first revert
    reverted_write: int = -1  # the write whose revert was counted last
    applied_at: datetime | None = None  # the operator's last write
    reverted_at: datetime | None = None  # when a revert was last seen
    slowest: float = 0.0  # seconds: the longest an actor took to revert a write
    paged: bool = False
    reported_at: datetime | None = None  # the last Event about it
    unreported: int = 0  # reverts since that Event

    @property
    def contested(self) -> bool:
        return self.since is not None

    @property
    def holding(self) -> bool:
        """Whether the operator's last write has not been seen reverted."""
        return self.reverted_write != self.writes


def backoff(strikes: int) -> timedelta:
    """The wait before a re-apply after STRIKES reverts in a contest (0: none)."""
    if strikes <= 0:
        return timedelta(0)
    # Capped before doubling far: 2**strikes must not overflow a timedelta.
    doubled = BACKOFF_BASE * (2 ** min(strikes - 1, 32))
    return min(doubled, BACKOFF_CAP)


def quiet(c: Contest) -> timedelta:
    """How long a write must hold before the actor is taken to have stopped."""
    return min(max(QUIET, timedelta(seconds=2 * c.slowest)), WINDOW)


def reverted(c: Contest, now: datetime, fields: list[str], manager: str) -> Contest:
    """A look at the object found the operator's value gone (FIELDS, last written by MANAGER)."""
    c = replace(c, fields=tuple(sorted(fields)) or c.fields, manager=manager or c.manager)
    if not c.holding:
        return c  # this write's revert is already counted
    reverts = (*[t for t in c.reverts if now - t < WINDOW], now)[-REVERTS:]
    since = c.since or (now if len(reverts) >= REVERTS else None)
    took = (now - c.applied_at).total_seconds() if c.applied_at else 0.0
    return replace(
        c,
        reverts=reverts,
        count=c.count + 1,
        first=c.first or now,
        since=since,
        strikes=c.strikes + 1 if since else 0,
        reverted_write=c.writes,
        reverted_at=now,
        slowest=max(c.slowest, took),
        unreported=c.unreported + 1,
    )


def wrote(c: Contest, now: datetime) -> Contest:
    """The operator wrote its values to the object again."""
    return replace(c, writes=c.writes + 1, applied_at=now)


def next_apply(c: Contest) -> datetime | None:
    """The earliest time of the next re-apply; None: at once (not a contest)."""
    if not c.contested or c.applied_at is None:
        return None
    return c.applied_at + backoff(c.strikes)


def may_apply(c: Contest, now: datetime) -> bool:
    when = next_apply(c)
    return when is None or now >= when


def over(c: Contest, now: datetime) -> bool:
    """Whether the record can go: the last write has held long enough (a contest), or
    the reverts are older than WINDOW (not a contest)."""
    if not c.holding:
        return False
    if c.contested:
        return c.applied_at is not None and now - c.applied_at >= quiet(c)
    return not c.reverts or now - c.reverts[-1] >= WINDOW


def report_due(c: Contest, now: datetime) -> bool:
    """Whether an Event should say the reverts not yet reported."""
    if c.unreported <= 0:
        return False
    return c.reported_at is None or now - c.reported_at >= EVENT_INTERVAL


def reported(c: Contest, now: datetime) -> Contest:
    return replace(c, reported_at=now, unreported=0)


def wake(c: Contest, now: datetime) -> float | None:
    """Seconds until C next needs a look (a re-apply, the end, an Event); None: never."""
    times = []
    if not c.holding and (when := next_apply(c)) is not None:
        times.append(when)
    if c.holding and c.contested and c.applied_at is not None:
        times.append(c.applied_at + quiet(c))
    if c.holding and not c.contested and c.reverts:
        times.append(c.reverts[-1] + WINDOW)
    if c.unreported > 0 and c.reported_at is not None:
        times.append(c.reported_at + EVENT_INTERVAL)
    if not times:
        return None
    return max(0.0, (min(times) - now).total_seconds())


# --- In the status ------------------------------------------------------------------------


def _time(text: Any) -> datetime | None:
    return parse_time(text) if isinstance(text, str) else None


def stamp(when: datetime) -> str:
    """RFC 3339 to the millisecond: a backoff of seconds must survive the round trip."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def truncated(when: datetime) -> datetime:
    """WHEN as `stamp` keeps it."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def load(entry: dict[str, Any]) -> Contest:
    """A `status.contests` item as a Contest."""
    return Contest(
        object=str(entry.get("object", "")),
        key=str(entry.get("key", "")),
        target=str(entry.get("target", "")),
        fields=tuple(entry.get("fields") or ()),
        manager=str(entry.get("manager") or ""),
        reverts=tuple(t for t in map(_time, entry.get("reverts") or []) if t),
        count=int(entry.get("count") or 0),
        first=_time(entry.get("firstRevertAt")),
        since=_time(entry.get("contestedSince")),
        strikes=int(entry.get("strikes") or 0),
        writes=int(entry.get("writes") or 0),
        reverted_write=int(entry.get("revertedWrite", -1)),
        applied_at=_time(entry.get("appliedAt")),
        reverted_at=_time(entry.get("revertedAt")),
        slowest=float(entry.get("slowestSeconds") or 0),
        paged=bool(entry.get("paged")),
        reported_at=_time(entry.get("reportedAt")),
        unreported=int(entry.get("unreported") or 0),
    )


def dump(c: Contest) -> dict[str, Any]:
    """C as a `status.contests` item."""
    out: dict[str, Any] = {
        "object": c.object,
        "key": c.key,
        "target": c.target,
        "fields": list(c.fields),
        "manager": c.manager,
        "reverts": [stamp(t) for t in c.reverts],
        "count": c.count,
        "strikes": c.strikes,
        "writes": c.writes,
        "revertedWrite": c.reverted_write,
        "slowestSeconds": round(c.slowest, 1),
        "paged": c.paged,
        "unreported": c.unreported,
    }
    for name, when in (("firstRevertAt", c.first), ("contestedSince", c.since),
                       ("appliedAt", c.applied_at), ("revertedAt", c.reverted_at),
                       ("nextApplyAt", next_apply(c)), ("reportedAt", c.reported_at)):  # fmt: skip
        if when is not None:
            out[name] = stamp(when)
    return out
