"""supervisor: a failed kopf run is started again in-process, within a budget (issue 12 item 14)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from kopf._cogs.aiokits import aiotasks

from ai_incident_operator import supervisor
from ai_incident_operator.supervisor import NotKopfs, Restarts, StuckRun, finish, supervise


def test_backoff_doubles_up_to_its_cap_and_the_budget_ends_it() -> None:
    restarts = Restarts(limit=4, window=600, max_backoff=5)
    assert [restarts.failed(t) for t in (0, 1, 2, 3)] == [1, 2, 4, 5]
    assert restarts.failed(4) is None  # a fifth failure within 10 minutes: give up


def test_failures_long_ago_do_not_count() -> None:
    restarts = Restarts(limit=2, window=60)
    assert restarts.failed(0) == 1
    assert restarts.failed(10) == 2
    assert restarts.failed(100) == 1  # the two before are out of the window


class Runs:
    """kopf runs that fail FAILURES times with a 404, then end as a signal ends them."""

    def __init__(self, failures: int, stopping: asyncio.Event) -> None:
        self.failures, self.stopping, self.count = failures, stopping, 0

    async def __call__(self) -> None:
        self.count += 1
        if self.count <= self.failures:
            raise RuntimeError("404 page not found")
        self.stopping.set()


def test_a_failed_run_is_logged_and_run_again(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> tuple[int, int]:
        stopping = asyncio.Event()
        runs = Runs(2, stopping)
        code = await supervise(runs, stopping, Restarts(max_backoff=0.01))
        return code, runs.count

    with caplog.at_level(logging.ERROR, logger=supervisor.__name__):
        assert asyncio.run(main()) == (0, 3)
    failed = [r.getMessage() for r in caplog.records]
    assert len(failed) == 2
    assert "kopf failed (RuntimeError: 404 page not found): starting it again" in failed[0]


def test_failing_again_and_again_exits_non_zero_with_the_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> tuple[int, int]:
        stopping = asyncio.Event()
        runs = Runs(100, stopping)
        code = await supervise(runs, stopping, Restarts(limit=3, max_backoff=0.01))
        return code, runs.count

    with caplog.at_level(logging.ERROR, logger=supervisor.__name__):
        assert asyncio.run(main()) == (1, 4)
    last = caplog.records[-1].getMessage()
    assert "kopf failed 4 times within 10 minutes (last: RuntimeError: 404 page not found)" in last
    assert "exiting with 1" in last


def test_a_signal_during_the_backoff_ends_at_once() -> None:
    async def main() -> int:
        stopping = asyncio.Event()

        async def fails() -> None:
            asyncio.get_running_loop().call_later(0.05, stopping.set)
            raise RuntimeError("boom")

        return await asyncio.wait_for(supervise(fails, stopping, Restarts(max_backoff=60)), 5)

    assert asyncio.run(main()) == 0


def test_only_kopfs_own_tasks_go_with_its_run() -> None:
    async def main() -> tuple[bool, bool]:
        kopfs = asyncio.create_task(aiotasks.guard(asyncio.sleep(10), "a watcher"))
        ours = asyncio.create_task(asyncio.sleep(10))  # the webhook's, say
        await asyncio.sleep(0)
        ignored = NotKopfs(set())
        result = kopfs in ignored, ours in ignored
        kopfs.cancel()
        ours.cancel()
        await asyncio.gather(kopfs, ours, return_exceptions=True)
        return result

    assert asyncio.run(main()) == (False, True)


def test_a_failed_run_that_does_not_end_is_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "FAILED_RUN_GRACE", 0.1)

    async def main() -> str:
        async def fails() -> None:
            raise RuntimeError("404 page not found")

        root = asyncio.create_task(fails())
        never = asyncio.Event()
        runner = asyncio.create_task(never.wait())  # kopf's run_tasks, stuck in its clean-up
        with pytest.raises(StuckRun) as stuck:
            await finish(runner, [root], asyncio.Event())
        await asyncio.sleep(0)
        assert runner.cancelled()
        return str(stuck.value)

    assert asyncio.run(main()) == "RuntimeError: 404 page not found"


def test_a_stop_asked_for_is_awaited_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "FAILED_RUN_GRACE", 0.01)

    async def main() -> bool:
        stopping = asyncio.Event()
        stopping.set()
        root = asyncio.create_task(asyncio.sleep(0))

        async def slow_stop() -> None:
            await asyncio.sleep(0.2)  # longer than the grace of a failed run

        runner = asyncio.create_task(slow_stop())
        await finish(runner, [root], stopping)
        return runner.done() and not runner.cancelled()

    assert asyncio.run(main())


def test_a_failed_runs_other_watchers_are_stopped_before_kopf_closes_its_credentials() -> None:
    async def main() -> tuple[bool, bool]:
        async def fails() -> None:
            raise RuntimeError("404 page not found")

        never = asyncio.Event()
        before = asyncio.create_task(
            aiotasks.guard(never.wait(), "old"), name="watcher for services.v1@old"
        )
        await asyncio.sleep(0)
        older = set(asyncio.all_tasks())
        orphan = asyncio.create_task(
            aiotasks.guard(never.wait(), "w"), name="watcher for services.v1@ns-a"
        )
        root = asyncio.create_task(fails())

        async def run_tasks() -> None:  # as kopf's: it ends once its tasks are gone
            await asyncio.gather(orphan, return_exceptions=True)
            raise RuntimeError("404 page not found")

        runner = asyncio.create_task(run_tasks())
        with pytest.raises(RuntimeError, match="404"):
            await finish(runner, [root], asyncio.Event(), older=older)
        result = orphan.cancelled(), before.done()
        before.cancel()
        assert isinstance(root.exception(), RuntimeError)
        return result

    assert asyncio.run(main()) == (True, False)
