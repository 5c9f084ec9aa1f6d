"""When each incident next needs attention, and a small pool of its own to run it then.

The engine's `Result` says when an incident wants to run again (an undo step, the
end of a verification window, a cooldown, the evidence refresh, a review or
regulatory deadline, a retry with backoff). `Scheduler` keeps one due time per
incident (the earliest asked for) and runs it then on `workers` threads of its own,
apart from kopf's workers, so that periodic work can never hold up a new incident's
first response, however many incidents are open. Nothing runs in between. A key
that is due while it runs is run once more when it ends. Pure: no kopf, no
kubernetes; `handlers` wires it to the engine.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)
YIELD_PAUSE = 0.02  # seconds between looks while new events are being handled


class Scheduler:
    def __init__(
        self,
        run: Callable[[tuple[str, str]], float | None],
        workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        yield_to: Callable[[], bool] = lambda: False,
    ) -> None:
        """RUN(key) does the work and returns the seconds until it is due again (None: never).

        While YIELD_TO() is true (new events are being handled), nothing more is started:
        periodic work gives the CPU and the apiserver to them.
        """
        self._run = run
        self._yield_to = yield_to
        self._clock = clock
        self._workers = workers
        self._due: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._running: set[tuple[str, str]] = set()
        self._again: set[tuple[str, str]] = set()
        self._gone: set[tuple[str, str]] = set()  # forgotten while running
        self._cond = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # --- asking -------------------------------------------------------------------------

    def after(self, key: tuple[str, str], seconds: float | None) -> None:
        """KEY is due in SECONDS (None: not at all, as far as this caller knows)."""
        if seconds is None:
            return
        when = self._clock() + max(seconds, 0.0)
        with self._cond:
            if key in self._due and self._due[key] <= when:
                return
            self._due[key] = when
            heapq.heappush(self._heap, (when, key))
            self._cond.notify()

    def forget(self, key: tuple[str, str]) -> None:
        """KEY is gone (the incident was deleted): nothing more is kept for it."""
        with self._cond:
            self._due.pop(key, None)
            self._again.discard(key)
            if key in self._running:
                self._gone.add(key)

    def due(self, key: tuple[str, str]) -> float | None:
        """Seconds until KEY is due, or None."""
        with self._cond:
            when = self._due.get(key)
        return None if when is None else max(when - self._clock(), 0.0)

    def __len__(self) -> int:
        with self._cond:
            return len(self._due)

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="aiincident-periodic")
        self._thread = threading.Thread(target=self._dispatch, name="aiincident-scheduler",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        while True:
            while self._yield_to() and not self._stopping:
                time.sleep(YIELD_PAUSE)
            with self._cond:
                key = self._next_due()
                if key is None:
                    return
                if key in self._running:
                    self._again.add(key)
                    continue
                self._running.add(key)
                self._gone.discard(key)
            assert self._pool is not None
            self._pool.submit(self._work, key)

    def _next_due(self) -> tuple[str, str] | None:
        """Wait for the earliest due key and take it off the queue; None when stopping."""
        while not self._stopping:
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # superseded by an earlier time, or forgotten
            if not self._heap:
                self._cond.wait()
                continue
            when, key = self._heap[0]
            wait = when - self._clock()
            if wait > 0:
                self._cond.wait(timeout=min(wait, 60.0))
                continue
            heapq.heappop(self._heap)
            del self._due[key]
            return key
        return None

    def _work(self, key: tuple[str, str]) -> None:
        try:
            next_in = self._run(key)
        except Exception:  # the next event or deadline brings it back; never lose the pool
            log.exception("periodic work on %s/%s failed", *key)
            next_in = 30.0
        with self._cond:
            self._running.discard(key)
            again = key in self._again
            self._again.discard(key)
            gone = key in self._gone
            self._gone.discard(key)
        if gone:
            return
        self.after(key, 0.0 if again else next_in)
