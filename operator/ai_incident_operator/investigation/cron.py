"""When a CronJob was due: standard five-field cron schedules, searched backwards (pure).

`evidence` asks for the last two times a pipeline's CronJob was due before
detection, to tell a stale pipeline (a whole period passed without a success)
from one that simply has not run yet. Times are UTC, as kube-controller-manager
runs them by default; a `CRON_TZ=`/`TZ=` prefix is read but the zone is ignored.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
NAMES = {**{m: i + 1 for i, m in enumerate(MONTHS)}, **{d: i for i, d in enumerate(DAYS)}}
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
SEARCH_DAYS = 400  # a yearly schedule still finds two past times


class CronError(ValueError):
    """A schedule this module cannot read."""


def _number(text: str) -> int:
    return NAMES[text] if text in NAMES else int(text)


def _field(text: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body in ("*", "?"):
            start, end = low, high
        elif "-" in body:
            a, b = body.split("-", 1)
            start, end = _number(a), _number(b)
        else:
            start = _number(body)
            end = high if step_text else start
        if start < low or end > high or start > end or step < 1:
            raise CronError(f"{part!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse(schedule: str) -> tuple[list[set[int]], bool, bool]:
    """The allowed values of each field, and whether day-of-month / day-of-week are restricted."""
    text = schedule.strip()
    if text.startswith(("CRON_TZ=", "TZ=")):
        text = text.split(None, 1)[1] if " " in text else ""
    text = MACROS.get(text.lower(), text)
    parts = text.split()
    if len(parts) != 5:
        raise CronError(f"{schedule!r} is not a five-field cron schedule")
    try:
        fields = [_field(p, lo, hi) for p, (lo, hi) in zip(parts, RANGES, strict=True)]
    except (KeyError, ValueError) as err:
        raise CronError(f"{schedule!r}: {err}") from None
    if 7 in fields[4]:
        fields[4].add(0)  # 7 is Sunday too
    return fields, parts[2] not in ("*", "?"), parts[4] not in ("*", "?")


def previous(schedule: str, before: datetime, count: int = 2) -> list[datetime]:
    """The last COUNT times SCHEDULE was due at or before BEFORE, newest first."""
    (minutes, hours, doms, months, dows), dom_set, dow_set = parse(schedule)
    found: list[datetime] = []
    day = before.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(SEARCH_DAYS):
        dom_ok = day.day in doms
        dow_ok = (day.isoweekday() % 7) in dows
        # cron's rule: when both day fields are restricted, either may match.
        day_ok = (dom_ok or dow_ok) if dom_set and dow_set else (dom_ok and dow_ok)
        if day.month in months and day_ok:
            for hour in sorted(hours, reverse=True):
                for minute in sorted(minutes, reverse=True):
                    when = day.replace(hour=hour, minute=minute)
                    if when <= before:
                        found.append(when)
                        if len(found) == count:
                            return found
        day -= timedelta(days=1)
    return found
