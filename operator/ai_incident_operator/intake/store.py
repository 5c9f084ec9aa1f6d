"""Folds a group of alerts into its incident on the apiserver: the intake's only writes.

Synchronous, as the Kubernetes client is: `intake.server` runs `deliver` with
`asyncio.to_thread`. A group lands in the first open incident of its key (names
from `mapping.nth_name`), is created there when there is none, and is written in
one request with the resourceVersion it was read at, so that concurrent
deliveries (two requests, two replicas) never lose an alert: on a conflict it
reads again and retries. A redelivery that changes nothing writes nothing.
Resolved incidents of the key keep the alert instances they already hold (a late
resend does not open a new incident); the others go on to the next name.

The intake writes only into incidents it opened for the group's key
(`mapping.mismatch`): an incident under the key's name that someone else created,
or that holds another key (a hash collision), is passed over like a resolved one,
untouched, and the alerts go to the next free name, which records why
(`aiincident.io/intake-displaced` and the description). Alerts naming an incident
(IncreaseMonitoring's label) go there only if the intake opened it; a manual
incident is never changed, nor resolved, by an alert.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import kube, retry
from ..errors import APIError, Conflict, Invalid, NotFound, Transient
from ..kube import Ref
from ..lifecycle import OPEN_PHASES
from . import mapping
from .mapping import Group, Payload

log = logging.getLogger(__name__)
T = TypeVar("T")
# Seconds of conflicts (with backoff) before a group's write gives up with a 503: about
# a dozen tries, well inside the server's DELIVERY_TIMEOUT.
CONFLICT_DEADLINE = 5.0
MAX_CHAIN = 1000  # incidents per key; each resolved one costs a GET on the way to the open one


class Unavailable(Exception):
    """The apiserver cannot be reached or cannot take the write now: HTTP 503, Alertmanager retries."""


class Rejected(Exception):
    """The apiserver refused the incident for what the alerts say: HTTP 422."""


class _NamespaceMissing(Exception):
    pass


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


def deliver(group: Group, payload: Payload, operator_namespace: str) -> Delivery:
    """Fold GROUP into its incident. Raises Unavailable (the caller answers 503 and
    Alertmanager sends again) or Rejected (the apiserver refuses what the alerts say)."""
    try:
        note = None
        if group.incident:
            done = _retrying(lambda: _into_named(group))
            if isinstance(done, Delivery):
                return done
            note = done
        try:
            delivery = _retrying(lambda: _fold(group, payload))
            delivery.note = note
            return delivery
        except _NamespaceMissing:
            reason = f"namespace {group.key.namespace} does not exist"
            refiled = mapping.refile(group, operator_namespace, reason)
            try:
                return _retrying(lambda: _fold(refiled, payload))
            except _NamespaceMissing:
                raise Unavailable(
                    f"the operator's namespace {operator_namespace} does not exist: create it "
                    "or set AIINCIDENT_NAMESPACE"
                ) from None
    except APIError as err:
        if isinstance(err, Invalid) or err.status == 413 or "too large" in err.message:
            raise Rejected(err.message) from None
        if err.status == 0:  # no answer at all; the message says so
            raise Unavailable(err.message) from None
        raise Unavailable(f"the apiserver answered {err.status}: {err.message}") from None


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


def _write(ref: Ref, current: dict[str, Any], alerts: list[dict]) -> None:
    """Replace spec.alerts, only if the incident is still at the version we read."""
    body = {
        "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
        "spec": {"alerts": alerts},
    }
    try:
        kube.patch(ref, body)  # a Conflict when it changed since we read it: read again
    except NotFound as err:  # deleted since we read it: read again, as for a change
        raise Conflict(err.status, err.message, err.reason) from None


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


def _fold(group: Group, payload: Payload) -> Delivery:
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
            try:
                # A Conflict when another delivery or replica created it first: read again.
                kube.create("AIIncident", namespace, body)
            except NotFound as err:
                if _missing_namespace(err):
                    raise _NamespaceMissing from None
                raise
            return done(name, "created")
        alerts = (current.get("spec") or {}).get("alerts") or []
        if is_open(current):
            merged = mapping.merge_alerts(alerts, items)
            if merged == alerts:
                return done(name, "updated" if wrote else "unchanged")
            _write(ref, current, merged)
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


def _missing_namespace(err: NotFound) -> bool:
    # The apiserver's NotFound for the namespace (not the kind): `namespaces "x" not found`.
    return err.message.startswith('namespaces "')
