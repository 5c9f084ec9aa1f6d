"""Retry on conflict, with backoff, until it is done or a deadline passes (pure).

The one loop for "read, change, write; on 409 read again": many incidents may hold
one object (eight deleted at once all release the same Deployment), so a write is
retried with jittered exponential backoff rather than a fixed number of times.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import Conflict, Transient

T = TypeVar("T")
DEADLINE = 60.0  # seconds; past it the caller is told to come back (Transient)


def on_conflict(
    attempt: Callable[[], T],
    *,
    deadline: float = DEADLINE,
    what: str = "the write",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ATTEMPT until it does not raise Conflict; Transient once DEADLINE seconds passed."""
    start = clock()
    delay = 0.01
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except Conflict as err:
            if clock() - start + delay > deadline:
                raise Transient(
                    409,
                    f"{what} conflicted {tries} times in {deadline:.0f}s: {err.message}",
                    "Conflict",
                ) from err
        sleep(delay * random.uniform(0.5, 1.5))
        delay = min(delay * 2, 2.0)
