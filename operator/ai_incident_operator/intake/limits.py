"""What one sender may make the intake do: its reach (namespaces) and its share of work (pure).

`Reach` says in which namespaces alerts may open incidents: the intersection of
`--webhook-namespaces`, the namespaces of the sender's token (a token file line
`TOKEN NS,NS`) and the operator's `--namespace` list, each a list of names or shell
patterns (`team-*`), None meaning "any". `Limits` bounds one request and one minute;
`Bucket` is the per-minute budget of new incidents (a token bucket, thread-safe: the
intake's writes run in threads). No I/O here: `intake.server` and `intake.store` use them.
"""

from __future__ import annotations

import fnmatch
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# A name or a shell pattern; a leading '!' excludes (kopf's --namespace syntax).
_NAMESPACE_PATTERN = re.compile(r"!?[a-z0-9*?\[\]-]{1,63}")


class TokenFileError(ValueError):
    """A token file line that cannot be read; the message names the line."""


@dataclass(frozen=True)
class Reach:
    """Namespaces where alerts may open incidents; each `allowed` entry a name or a shell
    pattern. A None list puts no bound; every bound given must allow a namespace."""

    bounds: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (what sets it, patterns)

    def within(self, what: str, patterns: Iterable[str] | None) -> Reach:
        """This reach, also bounded by PATTERNS (from WHAT); None adds no bound."""
        if patterns is None:
            return self
        return Reach((*self.bounds, (what, tuple(patterns))))

    @property
    def bounded(self) -> bool:
        return bool(self.bounds)

    def refuses(self, namespace: str) -> str | None:
        """Why alerts for NAMESPACE may not open incidents there, or None when they may."""
        for what, patterns in self.bounds:
            if not allows(patterns, namespace):
                shown = ", ".join(patterns[:10]) + (", ..." if len(patterns) > 10 else "")
                return (
                    f"namespace {namespace[:80]!r} is outside this webhook's reach: {what} "
                    f"allows only {shown or 'no namespace'}"
                )
        return None


def allows(patterns: tuple[str, ...], namespace: str) -> bool:
    """Whether NAMESPACE matches PATTERNS as kopf reads them: one of the others (or there are
    none but exclusions), and none of the '!' exclusions."""
    if not patterns:
        return False  # a bound with no namespace in it allows none
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    if include and not any(fnmatch.fnmatchcase(namespace, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(namespace, p) for p in exclude)


def namespace_list(values: Iterable[str] | None, flag: str) -> tuple[str, ...] | None:
    """Repeated and comma-separated namespace flags as one tuple; None when none were given.
    Raises ValueError naming FLAG for an entry that is no namespace name or pattern."""
    if not values:
        return None
    found: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if not _NAMESPACE_PATTERN.fullmatch(item):
                raise ValueError(f"{flag} {item!r} is not a namespace name or pattern")
            found.append(item)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class Token:
    """One accepted bearer token and the namespaces it may reach (None: any)."""

    value: str
    namespaces: tuple[str, ...] | None = None


def parse_tokens(text: str) -> list[Token]:
    """A token file: one token alone (the plain form), or lines `TOKEN [NS,NS,...]`, with
    blank lines and `#` comments. A token without namespaces may reach any namespace the
    webhook's other bounds allow."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    tokens: list[Token] = []
    for number, line in enumerate(lines, 1):
        value, _, rest = line.partition(" ")
        rest = rest.strip()
        try:
            namespaces = namespace_list([rest], "namespaces") if rest else None
        except ValueError as err:
            raise TokenFileError(f"line {number}: {err}") from None
        if rest and not namespaces:
            raise TokenFileError(f"line {number}: no namespace after the token")
        tokens.append(Token(value, namespaces))
    if len({t.value for t in tokens}) != len(tokens):
        raise TokenFileError("a token is listed twice")
    return tokens


@dataclass(frozen=True)
class Limits:
    """The intake's bounds per request, per connection and per minute (flags of `run`)."""

    max_body: int = 1 << 20  # bytes of one request body (413 beyond)
    max_alerts: int = 1000  # alerts in one payload (413 beyond: set Alertmanager's max_alerts)
    incidents_per_minute: int = 120  # new incidents, all senders together (429 beyond)
    max_unmapped: int = 100  # open unmapped incidents kept; beyond: one "more" record
    read_timeout: float = 10.0  # seconds to send a request's headers, and its body
    max_connections: int = 256  # open connections; beyond: a 503 and close

    def problems(self) -> list[str]:
        wrong = []
        for name in ("max_body", "max_alerts", "incidents_per_minute", "max_connections"):
            if getattr(self, name) < 1:
                wrong.append(f"{name} must be at least 1")
        if self.max_unmapped < 0:
            wrong.append("max_unmapped must be at least 0")
        if not 0 < self.read_timeout <= 3600:
            wrong.append("read_timeout must be more than 0 and at most 3600 seconds")
        return wrong


class Bucket:
    """RATE events per minute on average, at most RATE at once (a token bucket).

    `take` spends one or says how many seconds until one is there; `give_back` returns
    one that was not used (the incident existed after all)."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.clock = rate, clock
        self.level = float(rate)
        self.at = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(float(self.rate), self.level + (now - self.at) * self.rate / 60.0)
        self.at = now

    def take(self) -> float:
        """0 when one was taken; else the seconds to wait for one (more than 0)."""
        with self._lock:
            self._refill()
            if self.level >= 1.0:
                self.level -= 1.0
                return 0.0
            return (1.0 - self.level) * 60.0 / self.rate

    def give_back(self) -> None:
        with self._lock:
            self.level = min(float(self.rate), self.level + 1.0)


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
