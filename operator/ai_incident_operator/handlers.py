"""kopf registrations only: each handler hands its object to the engine and returns.

Handlers are plain `def`s, so kopf runs them in worker threads and the synchronous
Kubernetes client never blocks its event loop. kopf's own state (progress, the
last handled spec, the finalizer) lives in `aiincident.io/...` annotations, not in
the typed status, which would prune it.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import GROUP, VERSION, events, kube
from .lifecycle import detected_status

log = logging.getLogger(__name__)


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
    settings.peering.standalone = True


@kopf.on.create(GROUP, VERSION, "aiincidents", id="detect")
@kopf.on.resume(GROUP, VERSION, "aiincidents", id="detect-on-resume")
def detect(body: kopf.Body, namespace: str, name: str, **_: Any) -> None:
    """A new incident: record detection once (a resumed one that has a phase is left alone)."""
    if (body.get("status") or {}).get("phase"):
        return
    status = detected_status(dict(body))
    ref = kube.Ref("AIIncident", namespace, name)
    kube.patch_status(ref, status, body["metadata"].get("resourceVersion"))
    events.record(dict(body), "Detected", status["timeline"][0]["message"])
