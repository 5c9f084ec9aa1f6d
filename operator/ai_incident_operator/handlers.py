"""kopf registrations only: each handler hands its object to the engine and returns.

Handlers are plain `def`s, so kopf runs them in worker threads and the synchronous
Kubernetes client never blocks its event loop. kopf's own state (progress, the
last handled spec, the finalizer) lives in `aiincident.io/...` annotations, not in
the typed status, which would prune it. Policies, namespaces and past mitigations
are kept in kopf indexes, so handling an incident lists nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import kopf

from . import GROUP, VERSION, bounds, engine, kube, workloads
from . import policy as policies
from .heldwatch import HeldWatch
from .investigation.refresh import refresh as refresh_evidence
from .policy_status import check_policy
from .scheduler import Scheduler
from .times import parse_time

log = logging.getLogger(__name__)
RESYNC_SECONDS = float(os.environ.get("AIINCIDENT_RESYNC_SECONDS", "15"))
PROTECTED = policies.BUILTIN_PROTECTED_NAMESPACES | frozenset(
    n for n in os.environ.get("AIINCIDENT_PROTECTED_NAMESPACES", "").split(",") if n
)
INCIDENTS = (GROUP, VERSION, "aiincidents")
POLICY_KINDS = (
    (GROUP, VERSION, "mitigationpolicies"),
    (GROUP, VERSION, "clustermitigationpolicies"),
)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Without these a silently dead watch looks alive to the liveness probe (kopf #957, #787).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # kopf's other calls (patches, lists, Events) as kube.TIMEOUT bounds the operator's own:
    # by default a connect waits for the whole 5-minute request timeout.
    settings.networking.connect_timeout = kube.TIMEOUT[0]
    settings.networking.request_timeout = kube.TIMEOUT[1]
    # kopf would SIGKILL the process 10 minutes after any run that did not end by a signal,
    # and a failed run is started again in-process (supervisor); a signal sets the stop flag.
    settings.process.ultimate_exiting_timeout = None
    # kopf's own INFO lines stay in the log; the incident's Events are the operator's own.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 16


# --- Indexes: what the engine needs to know, kept current by watches ------------------------


def _policy(body: kopf.Body) -> dict[str, Any]:
    return {
        "kind": body.get("kind"),
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


@kopf.index(*POLICY_KINDS[0])
def namespaced_policies(body: kopf.Body, **_: Any) -> dict[None, dict]:
    return {None: _policy(body)}


@kopf.index(*POLICY_KINDS[1])
def cluster_policies(body: kopf.Body, **_: Any) -> dict[None, dict]:
    return {None: _policy(body)}


def named_services(spec: dict[str, Any]) -> set[str]:
    """The Services a namespaced policy's actions name (routers, fallbacks, sidecar ports)."""
    names: set[str] = set()
    for response in spec.get("responses") or []:
        for action in response.get("actions") or []:
            router = action.get("router") or {}
            if router.get("kind") == "Service" and router.get("name"):
                names.add(router["name"])
            for part in ("fallback", "servicePort"):
                if (action.get(part) or {}).get("service"):
                    names.add(action[part]["service"])
    return names


@kopf.index(*POLICY_KINDS[0])
def policy_services(
    namespace: str, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str, str], str]:
    """(namespace, Service) -> the policies that name it, so that its arrival re-checks them."""
    return {(namespace, service): name for service in named_services(dict(spec))}


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict]:
    return {name: dict(labels)}


@kopf.index(*INCIDENTS)
def releases(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[tuple, tuple]:
    """(namespace, target) -> (incident, when its mitigation there was undone), for cooldowns."""
    found: dict[tuple, tuple] = {}
    for entry in status.get("mitigations") or []:
        kind = entry.get("target", "").partition("/")[0]
        if entry.get("revertedAt") and kind in workloads.ADAPTERS:  # a workload of any kind
            target = entry["target"].partition("/")[2]
            when = entry["revertedAt"]
            if (namespace, target) not in found or found[(namespace, target)][1] < when:
                found[(namespace, target)] = (name, when)
    return found


def _world(
    namespaced_policies: kopf.Index,
    cluster_policies: kopf.Index,
    namespace_labels: kopf.Index,
    releases: kopf.Index,
    **_: Any,
) -> engine.World:
    def labels(ns: str) -> dict[str, str]:
        return next(iter(namespace_labels.get(ns, [])), {})

    def last_released(ns: str, target: str, incident: str) -> datetime | None:
        times = [when for name, when in releases.get((ns, target), []) if name != incident]
        return parse_time(max(times)) if times else None

    return engine.World(
        policies=[*namespaced_policies.get(None, []), *cluster_policies.get(None, [])],
        namespace_labels=labels,
        last_released=last_released,
        protected_namespaces=PROTECTED,
        tenant_bounds=bounds.current(),  # namespaced policies are held to them
        call_later=_call_later,
        requeue=_after_calls,
    )


# The calls to outside services (pages, status pages, trackers) run on their own threads:
# a dead webhook (4 tries of 5 s) holds neither kopf's workers nor the scheduler's.
OUTSIDE_WORKERS = int(os.environ.get("AIINCIDENT_OUTSIDE_WORKERS", "8"))
_OUTSIDE = ThreadPoolExecutor(OUTSIDE_WORKERS, thread_name_prefix="outside")
_call_failures: dict[tuple[str, str], int] = {}  # incident -> calls out failed in a row


def _call_later(job: Callable[[], None]) -> None:
    # In the caller's context, kopf's: the job's Events are posted.
    _OUTSIDE.submit(contextvars.copy_context().run, job)


def _after_calls(namespace: str, name: str, result: engine.Result) -> None:
    """What the calls out of a pass ask: a retry with a backoff of its own (the passes in
    between succeed and must not reset it), a recheck, or nothing."""
    key = (namespace, name)
    if not result.retry:
        _call_failures.pop(key, None)
        _want_engine(key, result.requeue_after)
        return
    _call_failures[key] = _call_failures.get(key, 0) + 1
    backoff = min(2.0 ** _call_failures[key], MAX_BACKOFF)
    _want_engine(
        key, backoff if result.requeue_after is None else min(backoff, result.requeue_after)
    )


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A deep plain-dict copy of a kopf body (its values are the raw dicts), safe to change."""
    return copy.deepcopy(dict(body))


# --- Incidents ----------------------------------------------------------------------------
# Events (create, spec change, deletion) run in kopf's workers, at once. Everything an
# incident needs later (the next undo step, a retry, the evidence refresh, a deadline, a
# repair) is asked of the scheduler, which runs it on its own few workers: periodic work
# can never hold up a new incident, and nothing runs between the times asked for.

MAX_BACKOFF = 60.0  # seconds between retries of a failing action, at most
PERIODIC_WORKERS = int(os.environ.get("AIINCIDENT_PERIODIC_WORKERS", "2"))
EVIDENCE_DELAY = 1.0  # seconds after an event before its evidence is gathered
REPAIR_DELAY = 0.2  # seconds: a burst of writes to one object makes one repair
ENGINE_SLACK = 0.05  # seconds early the engine may run, as the scheduler wakes a little late
INDEXES = ("namespaced_policies", "cluster_policies", "namespace_labels", "releases")
_indexes: dict[str, Any] = {}  # kopf's live index views, as the first handler got them
# kopf's context (its Event poster lives in context variables), as a handler thread has
# it: the scheduler's threads run in a copy, so that Events they record are posted.
_kopf_context: list[contextvars.Context] = []
WATCH_NAMESPACES: list[str] = []  # the operator's --namespace list; empty: all
_failures: dict[tuple[str, str], int] = {}  # consecutive failed passes, for backoff
# When the engine next needs each incident (monotonic seconds). A scheduled pass runs
# the engine only when it is due: the pass right after an event gathers the evidence
# alone, without reading and deciding everything the event's pass just did.
_engine_due: dict[tuple[str, str], float] = {}
_engine_lock = threading.Lock()


def _want_engine(key: tuple[str, str], seconds: float | None) -> None:
    """The engine is due on KEY in SECONDS (None: not, as far as this caller knows)."""
    if seconds is None:
        return
    when = time.monotonic() + max(seconds, 0.0)
    with _engine_lock:
        if key not in _engine_due or when < _engine_due[key]:
            _engine_due[key] = when
    SCHEDULER.after(key, seconds)


def _engine_now(key: tuple[str, str]) -> tuple[bool, float | None]:
    """(whether the engine is due on KEY now, and if not, in how many seconds)."""
    now = time.monotonic()
    with _engine_lock:
        when = _engine_due.get(key)
        if when is not None and when <= now + ENGINE_SLACK:
            del _engine_due[key]
            return True, None
    return False, None if when is None else when - now


def _next_in(key: tuple[str, str], result: engine.Result) -> float | None:
    """When KEY should run again after RESULT: backoff while failing, else what it asked."""
    if not result.retry:
        _failures.pop(key, None)
        return result.requeue_after
    _failures[key] = _failures.get(key, 0) + 1
    backoff = min(2.0 ** _failures[key], MAX_BACKOFF)
    return min(backoff, result.requeue_after) if result.requeue_after is not None else backoff


def _periodic(key: tuple[str, str]) -> float | None:
    """A scheduled pass, in kopf's context (so that its Events are posted)."""
    if not _indexes or not _kopf_context:
        return 1.0  # kopf has not served a handler yet
    return _kopf_context[0].copy().run(_scheduled_pass, key)


def _scheduled_pass(key: tuple[str, str]) -> float | None:
    """The engine if it is due, then the evidence if it is due (outside the incident's lock)."""
    namespace, name = key
    world = _world(**_indexes)
    api = kube.cluster()
    due, next_in = _engine_now(key)
    if due:
        try:
            result = engine.reconcile(namespace, name, world, api=api)
        except kube.Transient as err:
            log.info("incident %s/%s: %s; again later", namespace, name, err)
            result = engine.Result(retry=True)
        next_in = _next_in(key, result)
        _want_engine(key, next_in)
    evidence_in = refresh_evidence(namespace, name, world, api)
    times = [t for t in (next_in, evidence_in) if t is not None]
    return min(times) if times else None


_events_in_flight = [0]  # incident events being handled by kopf's workers right now
_events_lock = threading.Lock()


@contextlib.contextmanager
def _event() -> Iterator[None]:
    """An incident event is being handled: the scheduler starts nothing new meanwhile."""
    with _events_lock:
        _events_in_flight[0] += 1
    try:
        yield
    finally:
        with _events_lock:
            _events_in_flight[0] -= 1


SCHEDULER = Scheduler(
    _periodic, workers=PERIODIC_WORKERS, yield_to=lambda: _events_in_flight[0] > 0
)
_held: list[HeldWatch] = []


@kopf.on.startup(id="start-scheduler")
def start_scheduler(**_: Any) -> None:
    # A kopf run started again after a failure (supervisor) has new indexes and context.
    _indexes.clear()
    _kopf_context.clear()
    SCHEDULER.start()
    watch = HeldWatch(lambda key: _want_engine(key, REPAIR_DELAY), WATCH_NAMESPACES or None)
    watch.start()
    _held[:] = [watch]


@kopf.on.cleanup(id="stop-scheduler")
def stop_scheduler(**_: Any) -> None:
    for watch in _held:
        watch.stop()
    SCHEDULER.stop()


def _capture(kwargs: dict[str, Any]) -> None:
    if not _indexes:
        _indexes.update({k: kwargs[k] for k in INDEXES if k in kwargs})
    if not _kopf_context:
        _kopf_context.append(contextvars.copy_context())


@kopf.on.create(*INCIDENTS, id="reconcile-on-create")
@kopf.on.update(*INCIDENTS, field="spec", id="reconcile-on-update")
def incident_changed(namespace: str, name: str, body: kopf.Body, **kwargs: Any) -> None:
    _capture(kwargs)
    key = (namespace, name)
    try:
        with _event():
            result = engine.reconcile(
                namespace, name, _world(**kwargs), body=_plain(body), api=kube.cluster()
            )
    except kube.Transient as err:
        log.info("incident %s/%s: %s; again later", namespace, name, err)
        result = engine.Result(retry=True)
    _want_engine(key, _next_in(key, result))
    # The evidence comes right after, on the scheduler.
    SCHEDULER.after(key, EVIDENCE_DELAY)


@kopf.on.resume(*INCIDENTS, id="reconcile-on-resume")
def incident_resumed(namespace: str, name: str, **kwargs: Any) -> None:
    """At start-up every incident is looked at once, on the scheduler's workers."""
    _capture(kwargs)
    _want_engine((namespace, name), 0)


@kopf.on.delete(*INCIDENTS, id="undo-on-delete")
def incident_deleted(namespace: str, name: str, body: kopf.Body, retry: int, **kwargs: Any) -> None:
    """Undo what the incident holds; the finalizer stays until every holder is released."""
    _capture(kwargs)
    result = engine.finalize(namespace, name, _plain(body), _world(**kwargs), kube.cluster())
    if result.waiting_for:
        raise kopf.TemporaryError(
            f"waiting to undo: {result.waiting_for}", delay=min(2**retry, MAX_BACKOFF)
        )
    SCHEDULER.forget((namespace, name))
    _failures.pop((namespace, name), None)
    _call_failures.pop((namespace, name), None)
    with _engine_lock:
        _engine_due.pop((namespace, name), None)


@kopf.index(*INCIDENTS)
def open_incidents(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[str, str]:
    """namespace -> names of its open incidents: those a new or changed policy concerns."""
    return {namespace: name} if status.get("phase") not in ("Resolved", "Closed") else {}


# --- Policies -----------------------------------------------------------------------------


@kopf.on.create(*POLICY_KINDS[0], id="check")
@kopf.on.update(*POLICY_KINDS[0], field="spec", id="check-on-update")
@kopf.on.resume(*POLICY_KINDS[0], id="check-on-resume")
@kopf.timer(*POLICY_KINDS[0], interval=RESYNC_SECONDS * 2, id="recheck")
@kopf.on.create(*POLICY_KINDS[1], id="check")
@kopf.on.update(*POLICY_KINDS[1], field="spec", id="check-on-update")
@kopf.on.resume(*POLICY_KINDS[1], id="check-on-resume")
@kopf.timer(*POLICY_KINDS[1], interval=RESYNC_SECONDS * 2, id="recheck")
def policy_changed(body: kopf.Body, **_: Any) -> None:
    check_policy(dict(body))


def _named_by_a_policy(namespace: str, name: str, policy_services: kopf.Index, **_: Any) -> bool:
    return (namespace, name) in policy_services


@kopf.on.event("", "v1", "services", when=_named_by_a_policy, id="policy-service")
def policy_service_changed(
    namespace: str, name: str, policy_services: kopf.Index, namespaced_policies: kopf.Index,
    **_: Any,
) -> None:  # fmt: skip
    """A Service a policy names appeared, changed or went: that policy's Ready is checked again
    at once (a fallback created after its policy, a fallback label set), not at the recheck."""
    wanted = set(policy_services.get((namespace, name), []))
    for body in list(namespaced_policies.get(None, [])):  # the index may change meanwhile
        meta = body.get("metadata") or {}
        if meta.get("namespace") == namespace and meta.get("name") in wanted:
            with contextlib.suppress(kube.NotFound):  # the policy went meanwhile
                check_policy(copy.deepcopy(body))


POLICY_SETTLE = 0.5  # seconds for the index to take the policy's new status


@kopf.on.event(*POLICY_KINDS[0], id="replan-namespace")
@kopf.on.event(*POLICY_KINDS[1], id="replan-cluster")
def policy_event(body: kopf.Body, open_incidents: kopf.Index, **_: Any) -> None:
    """A policy appeared, changed or became Ready: its open incidents are planned again."""
    namespace = body.get("metadata", {}).get("namespace")
    spaces = [namespace] if namespace else list(open_incidents)
    for ns in spaces:
        for name in open_incidents.get(ns, []):
            _want_engine((ns, name), POLICY_SETTLE)
