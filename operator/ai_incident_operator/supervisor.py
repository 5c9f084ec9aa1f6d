"""Keeping kopf running: a failed kopf run is logged and started again in the same process.

kopf ends the whole operator when one of its watchers fails: after a kube-apiserver
restart a watch can get a 404 while the custom-resource APIs are not served yet
("Multidimensional multitasker has failed: 404 page not found"), and kopf does not
restart failed watchers (nolar/kopf#1077, #1108). `supervise` runs kopf again after a
short backoff: kopf lists everything afresh, as after a restart of the pod, while the
webhook (which does not depend on kopf) keeps taking alerts. Failing again and again
is not something a restart in-process mends: after `Restarts.limit` failures within
`Restarts.window` seconds it returns 1, so that the process exits non-zero and its
Deployment restarts it, with the reason in the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


KOPF_SOURCES = f"{os.sep}kopf{os.sep}"
# After a failed watcher kopf's orchestrator ends and leaves its other watchers running;
# kopf then closes its credentials before it stops them, and they wait for new ones that
# never come, so that the run never ends. They are stopped first (`finish`); a run that
# still does not end within this many seconds is left behind (its tasks wait on nothing
# that matters) and a new one starts.
FAILED_RUN_GRACE = 15.0
WATCHER_TASK = "watcher for "  # how kopf's orchestrator names them


class StuckRun(RuntimeError):
    """kopf's run failed and did not end; the message says why it failed."""


def kopfs(task: asyncio.Task) -> bool:
    """Whether TASK runs kopf's code (its watchers, workers, daemons), by its coroutine's file."""
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and KOPF_SOURCES in code.co_filename


class NotKopfs(Collection[asyncio.Task]):
    """For `kopf.run_tasks(ignored=...)`: every task but kopf's own.

    When a run ends, kopf cancels every task created since it started, the webhook's (an
    alert being taken, its readiness probe) among them: only its own may go with it.
    """

    def __init__(self, before: Collection[asyncio.Task]) -> None:
        self.before = set(before)

    def __contains__(self, task: object) -> bool:
        return task in self.before or not (isinstance(task, asyncio.Task) and kopfs(task))

    def __iter__(self) -> Iterator[asyncio.Task]:
        return iter(self.before)

    def __len__(self) -> int:
        return len(self.before)


async def finish(
    runner: asyncio.Task,
    roots: Collection[asyncio.Task],
    stopping: asyncio.Event,
    older: Collection[asyncio.Task] = (),
) -> None:
    """Await RUNNER (`kopf.run_tasks` over ROOTS); once a root task has failed, not for long.

    A stop that was asked for (STOPPING) is awaited to its end. Tasks in OLDER are from
    before this run (a run left behind), not its own.
    """
    await asyncio.wait([runner, *roots], return_when=asyncio.FIRST_COMPLETED)
    if stopping.is_set():
        await runner
        return
    orphans = [
        t for t in asyncio.all_tasks()
        if t not in older and t.get_name().startswith(WATCHER_TASK) and kopfs(t)
    ]  # fmt: skip
    for task in orphans:
        task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(runner), FAILED_RUN_GRACE)
    except TimeoutError:
        errors = [t.exception() for t in roots if t.done() and not t.cancelled()]
        why = next((f"{type(e).__name__}: {e}" for e in errors if e), "a task of kopf ended")
        left = [t for t in asyncio.all_tasks() if t not in older and not t.done() and kopfs(t)]
        log.error(
            "kopf's failed run (%s) did not end within %.0fs: leaving %d of its tasks behind",
            why,
            FAILED_RUN_GRACE,
            len(left),
        )
        runner.cancel()
        raise StuckRun(why) from None


@dataclass
class Restarts:
    """How often kopf may fail before the process gives up (pure; times in seconds)."""

    limit: int = 5
    window: float = 600.0
    max_backoff: float = 30.0
    failures: list[float] = field(default_factory=list)

    def failed(self, now: float) -> float | None:
        """A failure at NOW: the seconds to wait before the next run, None when to give up."""
        self.failures = [t for t in self.failures if now - t < self.window] + [now]
        if len(self.failures) > self.limit:
            return None
        return min(2.0 ** (len(self.failures) - 1), self.max_backoff)


async def supervise(
    run_once: Callable[[], Awaitable[None]],
    stopping: asyncio.Event,
    restarts: Restarts | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Run RUN_ONCE (one kopf run) until STOPPING is set: the exit code, 0 or 1."""
    restarts = restarts or Restarts()
    while True:
        try:
            await run_once()
            reason = "kopf stopped by itself"
        except Exception as err:  # kopf re-raises what failed its run
            reason = f"{type(err).__name__}: {err}"
            if not stopping.is_set():
                log.debug("kopf's run failed", exc_info=True)
        if stopping.is_set():
            return 0
        delay = restarts.failed(clock())
        if delay is None:
            log.error(
                "kopf failed %d times within %.0f minutes (last: %s): exiting with 1 so that "
                "the operator is restarted",
                len(restarts.failures),
                restarts.window / 60,
                reason,
            )
            return 1
        log.error(
            "kopf failed (%s): starting it again in %.0fs (the webhook keeps serving)",
            reason,
            delay,
        )
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return 0
        except TimeoutError:
            pass
