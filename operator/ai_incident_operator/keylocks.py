"""One lock per key, made when first wanted and dropped when nobody holds or waits for it.

For "one at a time per incident" (the engine's pass) and "one delivery at a time per alert
group" (the intake): a fixed set of striped locks would make unrelated keys wait for each
other whenever two hash alike, which in a flood of alerts means for the slowest write.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterator


class KeyLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, list] = {}  # key -> [lock, holders and waiters]
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[key]

    def __contains__(self, key: Hashable) -> bool:
        """Whether KEY is held or waited for right now."""
        with self._guard:
            return key in self._locks
