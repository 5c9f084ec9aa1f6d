"""The seam between decisions and the apiserver: what the engine and the actions may ask of it.

`Access` is the small interface (read, list, write, post an Event); `kube.Cluster` is
the real one, `ReadOnly` wraps any of them for `simulate` (reads pass, writes are
refused before they leave the process), and the unit tests drive the state machine
with an in-memory one. `update` (read, change, write, retry on conflict) is built
here once on top of `get` and `replace`, for every implementation. Pure: no kopf, no
kubernetes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from . import retry
from .errors import ReadOnlyRefused
from .resources import Ref

Body = dict[str, Any]


class Access:
    """What the operator may ask of the cluster. Raises `errors.APIError` subclasses."""

    def get(self, ref: Ref) -> Body | None:
        """The object, or None when it (or its kind) does not exist."""
        raise NotImplementedError

    def list(
        self, kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[Body]:
        raise NotImplementedError

    def create(self, kind: str, namespace: str, body: Body) -> Body:
        raise NotImplementedError

    def replace(self, ref: Ref, body: Body) -> Body:
        """PUT: BODY carries metadata.resourceVersion, so a concurrent change is a Conflict."""
        raise NotImplementedError

    def patch(self, ref: Ref, body: Body) -> Body:
        """JSON merge patch."""
        raise NotImplementedError

    def json_patch(self, ref: Ref, operations: list[Body]) -> Body:
        """JSON Patch (RFC 6902); a `test` operation that does not hold is a Conflict."""
        raise NotImplementedError

    def delete(self, ref: Ref) -> bool:
        """Delete; False if it was already gone."""
        raise NotImplementedError

    def patch_status(self, ref: Ref, status: Body, resource_version: str | None = None) -> Body:
        """Merge-patch the status subresource; with a resourceVersion, Conflict if it changed."""
        raise NotImplementedError

    def dry_run_replace(self, ref: Ref, body: Body) -> Body:
        """BODY as the apiserver would store it (a server-side dry run); nothing is written."""
        raise NotImplementedError

    def kind_installed(self, kind: str) -> bool:
        raise NotImplementedError

    def event(self, obj: Body, reason: str, message: str, *, warning: bool = False) -> None:
        """A Kubernetes Event about OBJ; never raises."""
        raise NotImplementedError

    @property
    def read_only(self) -> bool:
        return False

    def update(
        self,
        ref: Ref,
        mutate: Callable[[Body], bool],
        current: Body | None = None,
        deadline: float = retry.DEADLINE,
    ) -> tuple[Body | None, bool]:
        """Read, MUTATE in place, write with the read resourceVersion; again on conflict.

        MUTATE returns whether it changed anything; nothing is written when it did not.
        CURRENT, a copy just read by the caller, saves the first read. Returns the
        object as last seen (None when it does not exist) and whether it was written.
        Conflicts are retried with backoff until DEADLINE, then `errors.Transient`.
        """
        first = [current]

        def attempt() -> tuple[Body | None, bool]:
            seed, first[0] = first[0], None
            obj = copy.deepcopy(seed) if seed is not None else self.get(ref)
            if obj is None:
                return None, False
            if not mutate(obj):
                return obj, False
            return self.replace(ref, obj), True

        return retry.on_conflict(attempt, deadline=deadline, what=f"update of {ref}")


class ReadOnly(Access):
    """INNER for reading; every write is refused here, before it reaches the apiserver."""

    def __init__(self, inner: Access) -> None:
        self.inner = inner
        self.events: list[tuple[str, str]] = []

    @property
    def read_only(self) -> bool:
        return True

    def get(self, ref: Ref) -> Body | None:
        return self.inner.get(ref)

    def list(
        self, kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[Body]:
        return self.inner.list(kind, namespace, label_selector, field_selector)

    def kind_installed(self, kind: str) -> bool:
        return self.inner.kind_installed(kind)

    def dry_run_replace(self, ref: Ref, body: Body) -> Body:
        return self.inner.dry_run_replace(ref, body)

    def create(self, kind: str, namespace: str, body: Body) -> Body:
        raise ReadOnlyRefused(f"create {kind} in {namespace}")

    def replace(self, ref: Ref, body: Body) -> Body:
        raise ReadOnlyRefused(f"update of {ref}")

    def patch(self, ref: Ref, body: Body) -> Body:
        raise ReadOnlyRefused(f"patch of {ref}")

    def json_patch(self, ref: Ref, operations: list[Body]) -> Body:
        raise ReadOnlyRefused(f"patch of {ref}")

    def delete(self, ref: Ref) -> bool:
        raise ReadOnlyRefused(f"delete of {ref}")

    def patch_status(self, ref: Ref, status: Body, resource_version: str | None = None) -> Body:
        raise ReadOnlyRefused(f"status of {ref}")

    def event(self, obj: Body, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))
