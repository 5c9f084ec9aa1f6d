"""Durations as Kubernetes and Prometheus users write them: 90s, 10m, 1h30m, 168h, 7d (pure)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse '1h30m' and the like; ValueError with the offending text otherwise."""
    text = (text or "").strip()
    pos, seconds = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match[1]) * _UNITS[match[2]]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration (write e.g. 90s, 10m, 1h30m, 7d)")
    return timedelta(seconds=seconds)


def duration_or(text: str | None, default: timedelta) -> timedelta:
    return parse_duration(text) if text else default
