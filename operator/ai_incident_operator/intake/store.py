"""Folds a group of alerts into its incident on the apiserver: the intake's only writes.

Synchronous, as the Kubernetes client is: `intake.server` runs `deliver` with
`asyncio.to_thread`. A group lands in the first open incident of its key (names
from `mapping.nth_name`), is created there when there is none, and is written in
one request with the resourceVersion it was read at, so that concurrent
deliveries (two requests, two replicas) never lose an alert: on a conflict it
reads again and retries. A redelivery that changes nothing writes nothing.
Resolved incidents of the key keep the alert instances they already hold (a late
resend does not open a new incident); the others go on to the next name.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from .. import kube
from ..kube import Ref
from ..lifecycle import OPEN_PHASES
from . import mapping
from .mapping import Group, Payload

log = logging.getLogger(__name__)
CONFLICT_ATTEMPTS = 12
MAX_CHAIN = 1000  # incidents per key; each resolved one costs a GET on the way to the open one


class Unavailable(Exception):
    """The apiserver cannot be reached or cannot take the write now: HTTP 503, Alertmanager retries."""


class Rejected(Exception):
    """The apiserver refused the incident for what the alerts say: HTTP 422."""


class _Conflict(Exception):
    """Someone else wrote the incident between our read and write: read again."""


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

    def as_dict(self) -> dict[str, Any]:
        found = {
            "namespace": self.namespace,
            "name": self.name,
            "result": self.result,
            "alerts": self.alerts,
        }
        if self.unmapped:
            found["unmapped"] = self.unmapped
        return found


def deliver(group: Group, payload: Payload, operator_namespace: str) -> Delivery:
    """Fold GROUP into its incident. Raises Unavailable (the caller answers 503 and
    Alertmanager sends again) or Rejected (the apiserver refuses what the alerts say)."""
    try:
        if group.incident:
            done = _retrying(lambda: _into_named(group))
            if done is not None:
                return done
        try:
            return _retrying(lambda: _fold(group, payload))
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
    except ApiException as err:
        if err.status in (400, 413, 422) or "too large" in _message(err):
            raise Rejected(_message(err)) from None
        raise Unavailable(f"the apiserver answered {err.status}: {_message(err)}") from None
    except (urllib3.exceptions.HTTPError, OSError) as err:
        raise Unavailable(f"the apiserver cannot be reached: {err}") from None


def _message(err: ApiException) -> str:
    try:
        return json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(err.reason)


def _retrying(attempt: Any) -> Any:
    for i in range(CONFLICT_ATTEMPTS):
        try:
            return attempt()
        except _Conflict:
            time.sleep(random.uniform(0, 0.005 * 2 ** min(i, 6)))  # jitter: replicas interleave
    raise Unavailable("the incident kept changing while the alerts were written; try again")


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
        kube.patch(ref, body)
    except ApiException as err:
        if err.status in (404, 409):  # changed or deleted since we read it
            raise _Conflict from None
        raise


def _into_named(group: Group) -> Delivery | None:
    """Alerts of an IncreaseMonitoring rule: into the incident they name, while it is open."""
    assert group.incident
    ref = Ref("AIIncident", *group.incident)
    current = kube.get(ref)
    if current is None or not is_open(current):
        return None
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

    def done(name: str, result: str) -> Delivery:
        return Delivery(namespace, name, result, len(group.alerts), group.unmapped)

    for n in range(1, MAX_CHAIN + 1):
        name = mapping.nth_name(group.name, n)
        ref = Ref("AIIncident", namespace, name)
        current = kube.get(ref)
        if current is None:
            if not items:  # every alert is already held by a resolved incident
                return done(last, "updated" if wrote else "unchanged")
            body = mapping.new_incident(group, name, payload, items)
            try:
                kube.create("AIIncident", namespace, body)
            except ApiException as err:
                if err.status == 409:  # another delivery or replica created it first
                    raise _Conflict from None
                if err.status == 404 and _missing_namespace(err):
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
    raise Unavailable(f"{MAX_CHAIN} incidents of {group.name} are resolved; delete old ones")


def _missing_namespace(err: ApiException) -> bool:
    try:
        return json.loads(err.body)["details"]["kind"] == "namespaces"
    except (TypeError, ValueError, KeyError):
        return False
