"""Folds a group of alerts into its incident on the apiserver: the intake's only writes.

Synchronous, as the Kubernetes client is: `intake.server` runs `deliver` with
`asyncio.to_thread`. A group lands in the first open incident of its key (names
from `mapping.nth_name`), is created there when there is none, and is written in
one request that holds only if the spec is still at the generation it was read at,
so that concurrent deliveries (two requests, two replicas) never lose an alert: on
a conflict it reads again and retries. Deliveries of one key in this process take
turns (`_key_lock`), so they do not conflict with each other at all. A redelivery that changes nothing writes nothing.
Resolved incidents of the key keep the alert instances they already hold (a late
resend does not open a new incident); the others go on to the next name.

The intake writes only into incidents it opened for the group's key
(`mapping.mismatch`): an incident under the key's name that someone else created,
or that holds another key (a hash collision), is passed over like a resolved one,
untouched, and the alerts go to the next free name, which records why
(`aiincident.io/intake-displaced` and the description). Alerts naming an incident
(IncreaseMonitoring's label) go there only if the intake opened it; a manual
incident is never changed, nor resolved, by an alert.

Bounds (`Admission`): a new incident takes one from the per-minute budget (`Limited`,
429, when there is none: folding into an existing incident never needs one), and once
`max_unmapped` unmapped incidents are open in the operator's namespace, further
unmapped alerts fold into one record (`mapping.overflow`) that counts them. A 403 from
the apiserver is `Forbidden` (the operator's RBAC does not cover the namespace), not
`Unavailable`: sending again will not help.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .. import kube, retry
from ..errors import APIError, Conflict, Invalid, NotFound, Transient
from ..errors import Forbidden as _APIForbidden
from ..keylocks import KeyLocks
from ..kube import Ref
from ..lifecycle import OPEN_PHASES
from . import mapping
from .limits import Bucket
from .mapping import Group, Payload

log = logging.getLogger(__name__)
T = TypeVar("T")
# Seconds of conflicts (with backoff) before a group's write gives up with a 503: about
# a dozen tries, well inside the server's DELIVERY_TIMEOUT.
CONFLICT_DEADLINE = 5.0
COUNT_TTL = 10.0  # seconds a count of open unmapped incidents is trusted
MAX_CHAIN = 1000  # incidents per key; each resolved one costs a GET on the way to the open one


class Unavailable(Exception):
    """The apiserver cannot be reached or cannot take the write now: HTTP 503, Alertmanager retries."""


class Rejected(Exception):
    """The apiserver refused the incident for what the alerts say: HTTP 422."""


class Forbidden(Exception):
    """The operator's RBAC does not let it write AIIncidents in a namespace: HTTP 403 (a
    resend would be refused again; the operator's Role must change)."""

    def __init__(self, namespace: str) -> None:
        super().__init__(
            f"the operator may not write AIIncidents in namespace {namespace}: grant its "
            f"Role there or add {namespace} to watchNamespaces"
        )
        self.namespace = namespace


class Limited(Exception):
    """No new incident may be opened now (the per-minute budget is spent): HTTP 429."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many new incidents: the next may be opened in {wait:.1f}s")
        self.wait = wait


class _NamespaceMissing(Exception):
    pass


class _Overflow(Exception):
    """The operator's namespace holds max_unmapped open unmapped incidents already."""


@dataclass
class _Waiting:
    """One delivery's alerts waiting for the overflow record's next write."""

    group: Group
    payload: Payload
    done: bool = False
    result: Delivery | None = None
    error: BaseException | None = None


@dataclass
class Admission:
    """What a delivery may still create: BUCKET, new incidents per minute (None: no bound);
    MAX_UNMAPPED, open unmapped incidents kept (None: no bound)."""

    bucket: Bucket | None = None
    max_unmapped: int | None = None
    unmapped_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # One writer at a time for the overflow record: every unmapped alert beyond the cap
    # goes there, and concurrent writes would only conflict. The writer takes every
    # delivery waiting (`overflow_queue`) in one write: a group commit.
    overflow_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    overflow_queue: list[_Waiting] = field(default_factory=list, repr=False)
    queue_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # The last count of open unmapped incidents, and when (monotonic): a flood beyond the
    # cap must not list the namespace once per alert.
    counted: tuple[int, float] | None = field(default=None, repr=False)

    def open_unmapped(self, namespace: str) -> int:
        """Open unmapped incidents in NAMESPACE, listed at most every COUNT_TTL seconds
        (call with unmapped_lock held)."""
        now = time.monotonic()
        if self.counted is None or now - self.counted[1] > COUNT_TTL:
            self.counted = (_open_unmapped(namespace), now)
        return self.counted[0]

    def created_unmapped(self) -> None:
        if self.counted is not None:
            self.counted = (self.counted[0] + 1, self.counted[1])


@dataclass
class Delivery:
    """Where a group's alerts went."""

    namespace: str
    name: str
    result: str  # created | updated | unchanged
    alerts: int
    unmapped: str | None = None
    displaced: str | None = None  # why names before this one were passed over
    note: str | None = None  # why the incident the alerts name did not take them

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "result": self.result,
            "alerts": self.alerts,
        }
        if self.unmapped:
            found["unmapped"] = self.unmapped
        if self.displaced:
            found["displaced"] = self.displaced
        if self.note:
            found["note"] = self.note
        return found


def deliver(
    group: Group, payload: Payload, operator_namespace: str, admission: Admission | None = None
) -> Delivery:
    """Fold GROUP into its incident. Raises Unavailable (the caller answers 503 and
    Alertmanager sends again), Rejected (the apiserver refuses what the alerts say),
    Forbidden (the operator may not write there) or Limited (no new incident now)."""
    admission = admission or Admission()
    where = group.key.namespace  # where the write that fails was aimed, for Forbidden
    try:
        note = None
        if group.incident:
            try:
                done = _retrying(lambda: _into_named(group))
            except _APIForbidden:  # not readable there: it was not ours to write anyway
                done = f"the operator may not read AIIncidents in namespace {group.incident[0]}"
            if isinstance(done, Delivery):
                return done
            note = done
        try:
            delivery = _unmapped_bounded(group, payload, operator_namespace, admission)
            delivery.note = note
            return delivery
        except _NamespaceMissing:
            reason = f"namespace {group.key.namespace} does not exist"
            refiled = mapping.refile(group, operator_namespace, reason)
            where = operator_namespace
            try:
                return _unmapped_bounded(refiled, payload, operator_namespace, admission)
            except _NamespaceMissing:
                raise Unavailable(
                    f"the operator's namespace {operator_namespace} does not exist: create it "
                    "or set AIINCIDENT_NAMESPACE"
                ) from None
    except _APIForbidden:
        raise Forbidden(where) from None
    except APIError as err:
        if isinstance(err, Invalid) or err.status == 413 or "too large" in err.message:
            raise Rejected(err.message) from None
        if err.status == 0:  # no answer at all; the message says so
            raise Unavailable(err.message) from None
        raise Unavailable(f"the apiserver answered {err.status}: {err.message}") from None


def _unmapped_bounded(
    group: Group, payload: Payload, operator_namespace: str, admission: Admission
) -> Delivery:
    """GROUP folded by its key; an unmapped one beyond max_unmapped into the overflow record."""
    try:
        return _retrying(lambda: _fold(group, payload, admission))
    except _Overflow:
        more = mapping.overflow(group, operator_namespace, admission.max_unmapped or 0)
        return _overflow_commit(more, payload, admission)


def _overflow_commit(more: Group, payload: Payload, admission: Admission) -> Delivery:
    """MORE folded into the overflow record, in one write with every delivery waiting for
    it: a flood of unmapped alerts costs one write per round, not one per request. Each
    delivery is answered only once the write that holds its alerts is done."""
    mine = _Waiting(more, payload)
    with admission.queue_lock:
        admission.overflow_queue.append(mine)
    with admission.overflow_lock:
        if not mine.done:  # else a writer before us took our alerts along
            with admission.queue_lock:
                batch, admission.overflow_queue = admission.overflow_queue, []
            merged = Group(
                more.key,
                {},
                [alert for waiting in batch for alert in waiting.group.alerts],
                more.unmapped,
                overflow=True,
            )
            try:
                delivery = _retrying(lambda: _fold(merged, batch[0].payload, admission))
            except BaseException as err:  # every delivery of the batch answers the same
                for waiting in batch:
                    waiting.error, waiting.done = err, True
            else:
                for waiting in batch:
                    waiting.result = replace(delivery, alerts=len(waiting.group.alerts))
                    waiting.done = True
    if mine.error is not None:
        raise mine.error
    assert mine.result is not None
    return mine.result


def _open_unmapped(namespace: str) -> int:
    """Open unmapped incidents of the intake in NAMESPACE (the overflow record not counted)."""
    found = kube.list_objects(
        "AIIncident", namespace, label_selector=f"{mapping.SOURCE_LABEL}=alertmanager"
    )
    return sum(
        1
        for i in found
        if mapping.UNMAPPED_ANNOTATION in (i["metadata"].get("annotations") or {})
        and mapping.MORE_ANNOTATION not in (i["metadata"].get("annotations") or {})
        and is_open(i)
    )


def _admit(group: Group, admission: Admission) -> None:
    """Before creating GROUP's incident: _Overflow or Limited when it may not be created."""
    if (
        group.unmapped
        and not group.overflow
        and admission.max_unmapped is not None
        and admission.open_unmapped(group.key.namespace) >= admission.max_unmapped
    ):
        raise _Overflow
    if admission.bucket is not None and (wait := admission.bucket.take()) > 0:
        raise Limited(wait)


_KEY_LOCKS = KeyLocks()


def _key_lock(namespace: str, name: str) -> contextlib.AbstractContextManager[None]:
    """The lock of a group's key: one delivery of a key at a time in this process (a flood
    of one alert group would otherwise read the same version and conflict in turn); other
    keys never wait for it."""
    return _KEY_LOCKS.hold((namespace, name))


def _retrying(attempt: Callable[[], T]) -> T:
    """ATTEMPT again (read, then write) while it conflicts; jittered backoff: replicas interleave."""
    try:
        return retry.on_conflict(attempt, deadline=CONFLICT_DEADLINE, what="the alerts' write")
    except Transient as err:
        if isinstance(err.__cause__, Conflict):  # retry gave up on the conflicts
            raise Unavailable(
                "the incident kept changing while the alerts were written; try again"
            ) from None
        raise


def is_open(incident: dict[str, Any]) -> bool:
    if incident["metadata"].get("deletionTimestamp"):
        return False
    return (incident.get("status") or {}).get("phase", "Detected") in OPEN_PHASES


def _write(ref: Ref, current: dict[str, Any], alerts: list[dict], more: int | None = None) -> None:
    """Replace spec.alerts (and the overflow record's count MORE), only if no one changed
    the spec (or the count) since we read it.

    The precondition is the spec's generation, not the resourceVersion: the operator's own
    status and annotation writes after every change move the resourceVersion, and on a busy
    incident a resourceVersion precondition would conflict with them until the deadline."""
    meta = current["metadata"]
    operations: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/generation", "value": meta.get("generation", 1)},
        {"op": "add", "path": "/spec/alerts", "value": alerts},
    ]
    if more is not None:
        annotations = meta.get("annotations")
        held = (annotations or {}).get(mapping.MORE_ANNOTATION)
        if annotations is None:
            operations.append(
                {"op": "add", "path": "/metadata/annotations",
                 "value": {mapping.MORE_ANNOTATION: str(more)}}
            )  # fmt: skip
        else:
            path = "/metadata/annotations/" + _pointer(mapping.MORE_ANNOTATION)
            if held is not None:  # annotations are not in the generation: test the count itself
                operations.append({"op": "test", "path": path, "value": held})
            operations.append({"op": "add", "path": path, "value": str(more)})
    try:
        kube.json_patch(ref, operations)  # a Conflict when it changed since we read it: read again
    except NotFound as err:  # deleted since we read it: read again, as for a change
        raise Conflict(err.status, err.message, err.reason) from None


def _pointer(key: str) -> str:
    """KEY as one JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _into_named(group: Group) -> Delivery | str | None:
    """Alerts of an IncreaseMonitoring rule: into the incident they name, while it is open
    and if the intake opened it. Else None, or why it may not take them (words)."""
    assert group.incident
    ref = Ref("AIIncident", *group.incident)
    current = kube.get(ref)
    if current is None or not is_open(current):
        return None
    if refused := mapping.opened_by_intake(current):
        log.warning("alerts for %s: %s", group.name, refused)
        return refused
    alerts = (current.get("spec") or {}).get("alerts") or []
    merged = mapping.merge_alerts(alerts, group.items())
    if merged == alerts:
        return Delivery(ref.namespace, ref.name, "unchanged", len(group.alerts))
    _write(ref, current, merged)
    return Delivery(ref.namespace, ref.name, "updated", len(group.alerts))


def _more(current: dict[str, Any], alerts: list[dict], items: list[dict]) -> int:
    """The overflow record's count once ITEMS are in: alerts it did not hold yet added."""
    annotations = current["metadata"].get("annotations") or {}
    try:
        before = int(annotations.get(mapping.MORE_ANNOTATION, "0"))
    except ValueError:
        before = len(alerts)
    held = {a.get("fingerprint") for a in alerts}
    return before + sum(1 for a in items if a["fingerprint"] not in held)


def _fold(group: Group, payload: Payload, admission: Admission | None = None) -> Delivery:
    with _key_lock(group.key.namespace, group.name):
        return _fold_locked(group, payload, admission)


def _fold_locked(group: Group, payload: Payload, admission: Admission | None) -> Delivery:
    namespace = group.key.namespace
    items = group.items()
    wrote, last = False, group.name
    passed: list[str] = []  # names taken by incidents that are not this key's: why

    def done(name: str, result: str) -> Delivery:
        displaced = "; ".join(passed) or None
        return Delivery(namespace, name, result, len(group.alerts), group.unmapped, displaced)

    for n in range(1, MAX_CHAIN + 1):
        name = mapping.nth_name(group.name, n)
        ref = Ref("AIIncident", namespace, name)
        current = kube.get(ref)
        if current is not None and (why := mapping.mismatch(current, group.key)):
            # Someone else's incident under this name, or another key's: never touched.
            if len(passed) < 5:
                passed.append(why)
            continue
        if current is None:
            if not items:  # every alert is already held by a resolved incident
                return done(last, "updated" if wrote else "unchanged")
            displaced = "; ".join(passed) or None
            if displaced:
                log.warning("alerts for %s filed as %s: %s", group.name, name, displaced)
            body = mapping.new_incident(group, name, payload, items, displaced)
            admission = admission or Admission()
            # Count and create as one step in this process: concurrent deliveries would
            # all see room under the cap (other replicas each keep their own cap).
            with admission.unmapped_lock if group.unmapped else contextlib.nullcontext():
                _admit(group, admission)
                try:
                    # A Conflict when another delivery or replica created it first: read again.
                    kube.create("AIIncident", namespace, body)
                except NotFound as err:
                    _refund(admission)
                    if _missing_namespace(err):
                        raise _NamespaceMissing from None
                    raise
                except Exception:
                    _refund(admission)
                    raise
                if group.unmapped and not group.overflow:
                    admission.created_unmapped()
            return done(name, "created")
        alerts = (current.get("spec") or {}).get("alerts") or []
        if is_open(current):
            merged = mapping.merge_alerts(alerts, items)
            more = _more(current, alerts, items) if group.overflow else None
            if merged == alerts and (more is None or more == _more(current, alerts, [])):
                return done(name, "updated" if wrote else "unchanged")
            _write(ref, current, merged, more)
            return done(name, "updated")
        merged, items = mapping.absorb(alerts, items)
        if merged != alerts:
            _write(ref, current, merged)
            wrote = True
        last = name
    raise Unavailable(
        f"{MAX_CHAIN} incidents under the names of {group.name} are resolved or not the "
        "intake's; delete old ones"
    )


def _refund(admission: Admission | None) -> None:
    if admission is not None and admission.bucket is not None:
        admission.bucket.give_back()


def _missing_namespace(err: NotFound) -> bool:
    # The apiserver's NotFound for the namespace (not the kind): `namespaces "x" not found`.
    return err.message.startswith('namespaces "')
