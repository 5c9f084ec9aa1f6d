"""Typed Kubernetes API errors: the only exceptions the rest of the operator sees from the apiserver.

As kopf's `_cogs/clients/errors.py`: the access layer (`kube`) maps every non-2xx
answer, and every connection failure, to one of these, carrying the apiserver's own
message. Nothing outside `kube` names the client library's exception. Pure: no
kopf, no kubernetes.
"""

from __future__ import annotations


class APIError(Exception):
    """An answer from the apiserver that is not a success (or no answer at all)."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason  # the Status reason, e.g. "Forbidden", "Conflict"

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}" if self.reason else self.message


class NotFound(APIError):
    """404: the object, or its kind, does not exist."""


class Conflict(APIError):
    """409: the object changed since it was read (or already exists)."""


class Forbidden(APIError):
    """403: RBAC (or an admission policy) does not let the operator do this."""


class Invalid(APIError):
    """400 or 422: the request was refused as malformed or invalid."""


class Transient(APIError):
    """Worth trying again: 429, 5xx, a timeout, a dropped connection, a write that kept conflicting."""


class ReadOnlyRefused(APIError):
    """A write through a read-only access (simulate): nothing was sent to the apiserver."""

    def __init__(self, what: str) -> None:
        super().__init__(0, f"read-only: {what} not sent", "ReadOnly")


_BY_STATUS: dict[int, type[APIError]] = {
    400: Invalid,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
    429: Transient,
}


def from_status(status: int, message: str, reason: str = "") -> APIError:
    """The typed error for an HTTP STATUS."""
    if status in _BY_STATUS:
        return _BY_STATUS[status](status, message, reason)
    if status >= 500 or status == 0:
        return Transient(status, message, reason)
    return APIError(status, message, reason)
