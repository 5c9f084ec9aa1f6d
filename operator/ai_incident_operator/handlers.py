"""kopf registrations only: each handler hands its object to the engine and returns.

Handlers are plain `def`s, so kopf runs them in worker threads and the synchronous
Kubernetes client never blocks its event loop. kopf's own state (progress, the
last handled spec, the finalizer) lives in `aiincident.io/...` annotations, not in
the typed status, which would prune it. Policies, namespaces and past mitigations
are kept in kopf indexes, so handling an incident lists nothing.
"""

from __future__ import annotations

import copy
import logging
import os
from datetime import datetime
from typing import Any

import kopf

from . import GROUP, VERSION, engine, kube
from . import policy as policies
from .policy_status import check_policy
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


@kopf.index("", "v1", "namespaces")
def namespace_labels(name: str, labels: kopf.Labels, **_: Any) -> dict[str, dict]:
    return {name: dict(labels)}


@kopf.index(*INCIDENTS)
def releases(namespace: str, name: str, status: kopf.Status, **_: Any) -> dict[tuple, tuple]:
    """(namespace, target) -> (incident, when its mitigation there was undone), for cooldowns."""
    found: dict[tuple, tuple] = {}
    for entry in status.get("mitigations") or []:
        if entry.get("revertedAt") and entry.get("target", "").startswith("Deployment/"):
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
    )


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A deep plain-dict copy of a kopf body (its values are the raw dicts), safe to change."""
    return copy.deepcopy(dict(body))


# --- Incidents ----------------------------------------------------------------------------


def _reconcile(namespace: str, name: str, retry: int, body: kopf.Body, **kwargs: Any) -> None:
    try:
        again = engine.reconcile(namespace, name, _world(**kwargs), body=_plain(body))
    except kube.TransientError as err:
        raise kopf.TemporaryError(str(err), delay=1) from err
    if again and retry < 5:
        raise kopf.TemporaryError("some mitigations failed; retrying", delay=2**retry)


@kopf.on.create(*INCIDENTS, id="reconcile-on-create")
@kopf.on.resume(*INCIDENTS, id="reconcile-on-resume")
@kopf.on.update(*INCIDENTS, field="spec", id="reconcile-on-update")
def incident_changed(namespace: str, name: str, retry: int, **kwargs: Any) -> None:
    _reconcile(namespace, name, retry, **kwargs)


@kopf.timer(*INCIDENTS, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=0)
def incident_resync(namespace: str, name: str, status: kopf.Status, **kwargs: Any) -> None:
    """Re-check open incidents: repair reverted mitigations, pick up new policies and targets."""
    if status.get("phase") != "Closed":
        _reconcile(namespace, name, **kwargs)


@kopf.on.delete(*INCIDENTS, id="undo-on-delete")
def incident_deleted(namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    engine.finalize(namespace, name, _plain(body))


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
