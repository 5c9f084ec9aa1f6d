"""Time as the operator reads and writes it: RFC 3339 in UTC, and durations for people.

The one place timestamps are parsed and formatted (status fields, alerts, review).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 (Z or offset, any fraction: Alertmanager writes nanoseconds) to aware UTC."""
    if not text:
        return None
    text = _FRACTION.sub(lambda m: "." + m[1][:6].ljust(6, "0"), text.strip(), count=1)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.year <= 1:  # Go's zero time: "0001-01-01T00:00:00Z" means unset
        return None
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def iso(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "never"


def human(delta: timedelta) -> str:
    """45s, 12m, 3h05m, 2d4h: how people read a duration."""
    seconds = round(abs(delta).total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600}h"
