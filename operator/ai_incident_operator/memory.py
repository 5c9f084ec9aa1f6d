"""Keep the process's memory near what it uses, not what it once used.

With glibc, each thread that allocates may get an arena of its own (up to eight per
core), and freed memory stays in them: after a burst (a thousand incidents at once, a
storm of alerts) the operator's two dozen threads would keep hundreds of MB they no
longer use. Two arenas are plenty for a process whose threads mostly wait on the
network, and a periodic `malloc_trim` gives back what a burst left free. Elsewhere
than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # mallopt parameter (glibc's malloc.h)
ARENAS = 2
TRIM_EVERY = 30.0  # seconds


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if libc is None or not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; call before the threads start. Whether it took."""
    libc = _libc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def trim() -> None:
    """Give the memory free in malloc's arenas back to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def start_trimming(every: float = TRIM_EVERY) -> threading.Event:
    """Trim every EVERY seconds on a daemon thread until the returned Event is set."""
    stop = threading.Event()
    libc = _libc()
    if libc is None:
        return stop

    def loop() -> None:
        while not stop.wait(every):
            libc.malloc_trim(0)

    threading.Thread(target=loop, name="aiincident-trim", daemon=True).start()
    return stop
