"""Kubernetes Events on incidents and on every object the operator changes.

Posted through kopf's background poster, so a handler never waits for them, from
any thread. Only inside the running operator (kopf's context); elsewhere, a no-op.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

log = logging.getLogger(__name__)
MESSAGE_LIMIT = 1024  # the apiserver rejects far longer messages


def record(obj: dict[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """Post an Event about OBJ (a dict with apiVersion, kind and metadata)."""
    try:
        kopf.event(
            obj,
            type="Warning" if warning else "Normal",
            reason=reason,
            message=message[:MESSAGE_LIMIT],
        )
    except LookupError:  # outside kopf (a CLI or a test): there is no poster
        log.debug("event %s on %s not posted outside the operator", reason, obj.get("kind"))
