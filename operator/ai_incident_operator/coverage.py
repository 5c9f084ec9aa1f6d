"""Whether kopf watches every resource the operator handles, and putting right what it missed.

kopf learns which resources exist from one discovery scan at start-up and then from
CRD watch events, and which namespaces to serve from one listing and then namespace
watch events. Both can miss, silently and for good:

- a CRD applied while the operator runs (a GitOps sync applying the CRDs and the
  operator at once) is scanned at its watch events, which may all come before
  discovery serves it (kubernetes#125471; azimuth-cloud/zenith#15): MitigationPolicies
  are then never served;
- kopf's observers start their watch with a second listing and ignore the objects in
  it (they take them as the start-up listing): a namespace or CRD created between the
  two listings, or while a watch lists again (after a 410, an apiserver restart), is
  never noticed. That is the start-up race of issue 12 item 10: a test namespace
  created right after the operator started was never served.

`Coverage` follows the namespaces with a watch of its own that counts its listings
too, and every few seconds scans discovery again for what kopf has not resolved; it
adds what kopf missed through kopf's own revise functions (so that resources and
namespaces are chosen as kopf chooses them), and says whether every (resource,
namespace) has its kopf watcher. The webhook's `/readyz` is false until it does
(`not_ready_because`). Once it has been true, a namespace that has just appeared is given
`SETTLE` seconds to get its watches before it counts: readiness takes the webhook out of
its Service, and a test or tenant creating a namespace must not cut off everybody's
alerts for the moment kopf takes to start watching it. A resource that stops being
served, or a watch that ends in a namespace served for longer, still counts at once.

kopf has no public API for any of this: the internals used are imported here only,
and tests/unit/test_startup_coverage.py fails if a kopf upgrade moves them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable

import kopf
from kopf._cogs.clients import errors as kopf_errors
from kopf._cogs.clients import scanning, watching
from kopf._cogs.structs import references
from kopf._core.intents import registries
from kopf._core.reactor import observation

log = logging.getLogger(__name__)
# kopf logs each retry of a request at ERROR: while the apiserver is away its own watches
# say so already; `Coverage.run` logs a look that failed, once.
_requests = logging.getLogger(f"{__name__}.requests")
_requests.setLevel(logging.CRITICAL)
EVERY = 2.0  # seconds between looks (a discovery scan only while something is unresolved)
CHECK_TIMEOUT = 30.0  # seconds for one look; kopf's own retries can take longer
# Seconds a namespace seen here may take to reach kopf's insights through kopf's own
# watch: only later is it taken as missed (kopf's event may simply come after ours).
NAMESPACE_GRACE = 1.0
FOLLOW_RETRY = 5.0  # seconds before following the namespaces again after an error
SETTLE = 30.0  # seconds a namespace that just appeared may lack its watches, once ready
WATCHER_TASK = "watcher for "  # how kopf's orchestrator names its watch tasks
NOT_LOOKED = "the operator has not yet checked what kopf watches"

Insights = references.Insights  # kopf.spawn_tasks(insights=...) takes one


def required(registry: registries.OperatorRegistry) -> frozenset[references.Selector]:
    """The resources the operator's handlers need watched (kopf's own 'watched' selectors)."""
    return (
        registry._indexing.get_all_selectors()
        | registry._watching.get_all_selectors()
        | registry._spawning.get_all_selectors()
        | registry._changing.get_all_selectors()
    )


def unresolved(
    selectors: Iterable[references.Selector], resources: Collection[references.Resource]
) -> list[references.Selector]:
    """The SELECTORS that match none of RESOURCES (kopf serves nothing for them)."""
    return [s for s in selectors if not s.select(resources)]


def expected_watchers(
    resources: Iterable[references.Resource], namespaces: Iterable[references.Namespace]
) -> set[str]:
    """`resource@namespace` for each watch kopf's orchestrator runs (its task names' tail).

    As kopf does, a cluster-scoped resource is watched once (`@None`), and nothing is
    watched while no namespace is served.
    """
    spaces = list(namespaces)
    return {f"{r}@{ns if r.namespaced else None}" for r in resources for ns in spaces}


def running_watchers(older: Collection[asyncio.Task] = ()) -> set[str]:
    """`resource@namespace` of every kopf watch task alive in this event loop, but OLDER ones
    (those of a failed run left behind: see supervisor)."""
    names = (task.get_name() for task in asyncio.all_tasks() if task not in older)
    return {n[len(WATCHER_TASK) :] for n in names if n.startswith(WATCHER_TASK)}


def describe(selector: references.Selector) -> str:
    """A selector as a person names it: `mitigationpolicies.aiincident.io`, `namespaces`."""
    name = selector.plural or selector.any_name or selector.kind or "?"
    return f"{name}.{selector.group}" if selector.group else str(name)


class Coverage:
    """Keeps kopf's INSIGHTS (one `kopf.spawn_tasks` run's) in step with the cluster."""

    def __init__(
        self,
        insights: references.Insights,
        *,
        clusterwide: bool,
        namespaces: Collection[str] = (),
        registry: registries.OperatorRegistry | None = None,
        older: Collection[asyncio.Task] = (),
    ) -> None:
        self.insights = insights
        self.older = set(older)  # tasks from before this kopf run: not its watches
        self.clusterwide = clusterwide
        self.patterns = list(namespaces)
        self.registry = registry or registries.get_default_registry()
        self.reason: str | None = NOT_LOOKED
        self._tried: dict[str | None, frozenset[references.Resource]] = {}
        self._seen: dict[str, float] = {}  # namespaces to serve -> when this watch saw them
        self._listed = clusterwide  # whether that watch has listed the namespaces once
        self._last_error = ""
        self._ready_once = False  # whether every watch has run at once in this kopf run
        self._noticed: dict[str, float] = {}  # namespace -> when kopf began serving it
        self._served: set[str] = set()  # kopf's namespaces at the previous look

    def not_ready_because(self) -> str | None:
        """None when every resource the operator handles is watched, else why not."""
        return self.reason

    async def run(self, settings: kopf.OperatorSettings) -> None:
        """Look, put right, and say, forever (cancelled with its kopf run).

        Runs in the context `kopf.spawn_tasks` set (its credentials vault), with its SETTINGS.
        """
        await self.insights.ready_resources.wait()  # kopf's own first scan comes first
        await self.insights.ready_namespaces.wait()
        follower = None if self.clusterwide else asyncio.create_task(self.follow(settings))
        try:
            while True:
                try:
                    await asyncio.wait_for(self.check(settings), CHECK_TIMEOUT)
                    self._last_error = ""
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the apiserver away or refusing: say so, look again
                    if str(err) != self._last_error:
                        log.warning("cannot check what kopf watches: %s", err or repr(err))
                        self._last_error = str(err)
                    self._say("the operator cannot check what kopf watches; see its log")
                await asyncio.sleep(EVERY)
        finally:
            if follower:
                follower.cancel()

    async def follow(self, settings: kopf.OperatorSettings) -> None:
        """Note every namespace to serve, from a watch whose listings count too (kopf's don't)."""
        resource = await self.insights.backbone.wait_for(references.NAMESPACES)
        loop = asyncio.get_running_loop()
        while True:
            try:
                async for event in watching.infinite_watch(
                    settings=settings, resource=resource, namespace=None
                ):
                    if event is watching.Bookmark.LISTED:
                        self._listed = True
                    if isinstance(event, watching.Bookmark) or event.get("type") == "BOOKMARK":
                        continue
                    probe = references.Insights()
                    observation.revise_namespaces(
                        insights=probe, namespaces=self.patterns, raw_events=[event]
                    )
                    name = event["object"]["metadata"]["name"]
                    if name in probe.namespaces:  # to serve (kopf's rules: patterns, deletion)
                        self._seen.setdefault(name, loop.time())
                    else:
                        self._seen.pop(name, None)
            except asyncio.CancelledError:
                raise
            except kopf_errors.APIForbiddenError:
                self._listed = True  # kopf then serves the exact names it was given, as kopf
                return
            except Exception as err:
                log.warning("cannot follow the namespaces: %s; again in %.0fs", err, FOLLOW_RETRY)
            await asyncio.sleep(FOLLOW_RETRY)

    async def check(self, settings: kopf.OperatorSettings) -> None:
        """One look: resources, then the namespaces seen, then whether each watch runs."""
        await self._resources(settings)
        await self._namespaces()
        self._look()

    def _look(self) -> None:
        """Say whether every watch runs now (the part of a look that asks nothing)."""
        self._notice()
        reason = self._why_not_ready()
        if reason is None and not self._ready_once:
            self._ready_once = True
            self._noticed.clear()  # all there now is watched: no grace for any of it later
        self._say(reason)

    def _notice(self) -> None:
        """Note when each namespace kopf serves first appeared; forget what has settled."""
        now = asyncio.get_running_loop().time()
        served = {str(ns) for ns in self.insights.namespaces}
        for name in served - self._served:
            self._noticed.setdefault(name, now)
        self._served = served
        for name in [n for n, at in self._noticed.items() if now - at >= SETTLE]:
            del self._noticed[name]

    def _settling(self) -> set[str]:
        """The namespaces whose missing watches do not count yet (none before first ready):
        seen by the follower or served by kopf less than SETTLE ago."""
        if not self._ready_once:
            return set()
        now = asyncio.get_running_loop().time()
        since = {**self._noticed, **self._seen}
        return {n for n, at in since.items() if now - at < SETTLE}

    async def _resources(self, settings: kopf.OperatorSettings) -> None:
        missing = unresolved(required(self.registry), self.insights.watched_resources)
        for group in set(self._tried) - {s.group for s in missing}:
            del self._tried[group]  # resolved: if its CRD goes and comes back, look again
        for group in sorted({s.group for s in missing}, key=str):
            wanted = [s for s in missing if s.group == group]
            groups = None if group is None else {group}
            found = await scanning.scan_resources(
                groups=groups, settings=settings, logger=_requests
            )
            selected = frozenset(r for s in wanted for r in s.select(found))
            # kopf warns on each revision that leaves something unresolved: revise only when
            # discovery shows something new for what is missing, not every few seconds.
            if not selected or self._tried.get(group) == selected:
                continue
            self._tried[group] = selected
            async with self.insights.revised:
                before = set(self.insights.watched_resources)
                observation.revise_resources(
                    resources=found, insights=self.insights, registry=self.registry, group=group
                )
                await self.insights.backbone.fill(resources=found)
                added = self.insights.watched_resources - before
                if added:
                    log.warning(
                        "kopf had missed %s (created or served after it looked): watching now",
                        ", ".join(sorted(map(str, added))),
                    )
                self.insights.revised.notify_all()

    async def _namespaces(self) -> None:
        """Serve the namespaces seen a while ago that kopf still lacks."""
        served = {str(ns) for ns in self.insights.namespaces}
        for name in [n for n in self._seen if n in served]:
            del self._seen[name]
        now = asyncio.get_running_loop().time()
        missed = {n for n, seen in self._seen.items() if now - seen >= NAMESPACE_GRACE}
        if not missed:
            return
        async with self.insights.revised:
            self.insights.namespaces.update(references.NamespaceName(n) for n in missed)
            self.insights.revised.notify_all()
        log.warning(
            "kopf had missed namespace(s) %s (created while it listed): serving them now",
            ", ".join(sorted(missed)),
        )

    def _why_not_ready(self) -> str | None:
        missing = unresolved(required(self.registry), self.insights.watched_resources)
        if missing:
            names = ", ".join(sorted(describe(s) for s in missing))
            return f"not served by the apiserver yet: {names} (are the CRDs installed?)"
        if not self._listed:
            return "the operator has not listed the namespaces yet"
        settling = self._settling()
        unserved = sorted(n for n in self._seen if n not in settling)
        if unserved:
            return f"namespaces not served yet: {', '.join(unserved[:3])}"
        absent = expected_watchers(self.insights.watched_resources, self.insights.namespaces)
        absent -= running_watchers(self.older)
        absent = {w for w in absent if w.rpartition("@")[2] not in settling}
        if absent:
            shown = sorted(absent)
            more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
            return f"kopf is not watching yet: {', '.join(shown[:3])}{more}"
        return None

    def _say(self, reason: str | None) -> None:
        if reason != self.reason:
            if reason is None:
                log.info("kopf watches every resource the operator handles")
            else:
                log.warning("not ready: %s", reason)
        self.reason = reason
