"""coverage: readiness means kopf watches every resource handled; what kopf missed is added.

The operator's own kopf handlers are registered (handlers imported), and kopf's insights
are the real structure that kopf's orchestrator reads; the watch tasks are named as
kopf's orchestrator names them. The live behaviour is in tests/integration/test_startup.py.
"""

from __future__ import annotations

import asyncio
import inspect

from kopf._cogs.structs import references
from kopf._core.reactor import observation, orchestration

from ai_incident_operator import GROUP, VERSION, coverage, handlers  # noqa: F401 - registers
from ai_incident_operator.coverage import (
    Coverage,
    describe,
    expected_watchers,
    required,
    running_watchers,
    unresolved,
)

VERBS = frozenset({"list", "watch", "patch", "get", "create", "update", "delete"})


def resource(group: str, plural: str, namespaced: bool = True) -> references.Resource:
    version = VERSION if group == GROUP else "v1"
    return references.Resource(
        group=group, version=version, plural=plural, namespaced=namespaced, verbs=VERBS,
        subresources=frozenset({"status"}),
    )  # fmt: skip


INCIDENTS = resource(GROUP, "aiincidents")
POLICIES = resource(GROUP, "mitigationpolicies")
CLUSTER_POLICIES = resource(GROUP, "clustermitigationpolicies", namespaced=False)
SERVICES = resource("", "services")
NAMESPACES = resource("", "namespaces", namespaced=False)
ALL = {INCIDENTS, POLICIES, CLUSTER_POLICIES, SERVICES, NAMESPACES}


def test_the_operator_needs_its_kinds_and_the_services_and_namespaces_watched() -> None:
    needed = required(coverage.registries.get_default_registry())
    assert {describe(s) for s in needed} == {
        "aiincidents.aiincident.io", "mitigationpolicies.aiincident.io",
        "clustermitigationpolicies.aiincident.io", "services", "namespaces",
    }  # fmt: skip
    assert unresolved(needed, ALL) == []
    missing = unresolved(needed, ALL - {POLICIES, CLUSTER_POLICIES})
    assert sorted(describe(s) for s in missing) == [
        "clustermitigationpolicies.aiincident.io", "mitigationpolicies.aiincident.io",
    ]  # fmt: skip


def test_a_watch_per_namespace_and_one_per_cluster_scoped_resource() -> None:
    assert expected_watchers({POLICIES, CLUSTER_POLICIES}, ["a", "b"]) == {
        "mitigationpolicies.v1alpha1.aiincident.io@a",
        "mitigationpolicies.v1alpha1.aiincident.io@b",
        "clustermitigationpolicies.v1alpha1.aiincident.io@None",
    }
    assert expected_watchers({POLICIES, CLUSTER_POLICIES}, [None]) == {
        "mitigationpolicies.v1alpha1.aiincident.io@None",
        "clustermitigationpolicies.v1alpha1.aiincident.io@None",
    }
    assert expected_watchers(ALL, []) == set()  # kopf watches nothing without a namespace


def test_kopfs_orchestrator_still_names_its_watch_tasks_as_read_here() -> None:
    # A kopf upgrade that renames them would leave /readyz false for ever: fail here first.
    source = inspect.getsource(orchestration.spawn_missing_watchers)
    assert 'what = f"{resource}@{namespace}"' in source
    assert 'name=f"watcher for {what}"' in source
    assert coverage.WATCHER_TASK == "watcher for "
    for name in ("revise_resources", "revise_namespaces"):
        assert callable(getattr(observation, name))


async def _watch(*whats: str) -> list[asyncio.Task]:
    never = asyncio.Event()
    tasks = [asyncio.create_task(never.wait(), name=f"watcher for {w}") for w in whats]
    await asyncio.sleep(0)
    return tasks


def test_not_ready_until_every_resource_is_served_and_watched() -> None:
    async def main() -> list[str | None]:
        insights = references.Insights()
        watched = Coverage(insights, clusterwide=False, namespaces=["ns-*"])
        watched._listed = True  # the namespaces follower has listed them
        says = []
        insights.watched_resources.update({SERVICES, NAMESPACES, INCIDENTS})
        insights.namespaces.add("ns-a")
        says.append(watched._why_not_ready())  # the CRDs are not served
        insights.watched_resources.update({POLICIES, CLUSTER_POLICIES})
        says.append(watched._why_not_ready())  # served, but kopf has no watches yet
        tasks = await _watch(*expected_watchers(insights.watched_resources, ["ns-a"]))
        says.append(watched._why_not_ready())
        tasks[0].cancel()  # one watch ended
        await asyncio.sleep(0)
        says.append(watched._why_not_ready())
        for task in tasks:
            task.cancel()
        return says

    missing, unwatched, ready, one_gone = asyncio.run(main())
    assert missing == (
        "not served by the apiserver yet: clustermitigationpolicies.aiincident.io, "
        "mitigationpolicies.aiincident.io (are the CRDs installed?)"
    )
    assert unwatched.startswith("kopf is not watching yet: ") and "and 2 more" in unwatched
    assert ready is None
    assert one_gone and one_gone.startswith("kopf is not watching yet: ")


def test_once_ready_a_new_namespace_has_a_while_to_get_its_watches() -> None:
    # /readyz takes the webhook out of its Service: a namespace someone just created must not
    # cut off every alert for the moment kopf takes to watch it. One that never gets its
    # watches, or a watch that ends where it ran, still counts.
    async def main() -> list[str | None]:
        insights = references.Insights()
        watched = Coverage(insights, clusterwide=False, namespaces=["ns-*"])
        watched._listed = True
        insights.watched_resources.update(ALL)
        insights.namespaces.add("ns-a")
        says = []
        watched._look()
        says.append(watched.reason)  # before the first ready: ns-a counts
        tasks = await _watch(*expected_watchers(ALL, ["ns-a"]))
        watched._look()
        says.append(watched.reason)  # ready
        now = asyncio.get_running_loop().time()
        watched._seen["ns-b"] = watched._noticed["ns-b"] = now  # the follower saw it first
        watched._look()
        says.append(watched.reason)
        insights.namespaces.add("ns-b")  # kopf serves it, but does not watch it yet
        watched._look()
        says.append(watched.reason)
        watched._noticed["ns-b"] = now - coverage.SETTLE  # ... and never does
        watched._seen.pop("ns-b")
        watched._look()
        says.append(watched.reason)
        tasks += await _watch(*expected_watchers(ALL, ["ns-b"]))
        watched._look()
        says.append(watched.reason)
        next(t for t in tasks if t.get_name().endswith("@ns-a")).cancel()  # served all along
        await asyncio.sleep(0)
        watched._look()
        says.append(watched.reason)
        for task in tasks:
            task.cancel()
        return says

    first, ready, seen_only, unwatched, too_long, watched_now, ended = asyncio.run(main())
    assert first and first.startswith("kopf is not watching yet: ")
    assert ready is None and seen_only is None and unwatched is None
    assert too_long and too_long.startswith("kopf is not watching yet: ") and "@ns-b" in too_long
    assert watched_now is None
    assert ended and ended.startswith("kopf is not watching yet: ") and "@ns-a" in ended


def test_the_running_watches_are_read_from_kopfs_task_names() -> None:
    async def main() -> set[str]:
        tasks = await _watch("services.v1@ns-a", "namespaces.v1@None")
        other = asyncio.create_task(asyncio.sleep(1), name="webhook")
        found = running_watchers()
        for task in [*tasks, other]:
            task.cancel()
        return found

    assert asyncio.run(main()) == {"services.v1@ns-a", "namespaces.v1@None"}


def test_a_namespace_kopf_missed_is_served_after_a_grace() -> None:
    async def main() -> tuple[set, set, bool]:
        insights = references.Insights()
        insights.namespaces.add("ns-a")
        watched = Coverage(insights, clusterwide=False, namespaces=["ns-*"])
        now = asyncio.get_running_loop().time()
        watched._seen = {"ns-a": now - 5, "ns-late": now - 5, "ns-new": now}
        await watched._namespaces()
        # ns-a kopf has; ns-new may still reach kopf by its own watch: only ns-late is added.
        first = set(insights.namespaces)
        await watched._namespaces()
        return first, set(watched._seen), "ns-a" in watched._seen

    first, seen, kept = asyncio.run(main())
    assert first == {"ns-a", "ns-late"}
    assert seen == {"ns-new"} and not kept
