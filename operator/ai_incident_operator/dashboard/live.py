"""The incidents the dashboard shows, kept current by watches (list, then watch from there).

Each watch runs in a thread of its own, with the dashboard's credentials; each change
wakes the pages' event streams on the server's loop (`changed`), which render and
send. A watch that fails (403, the apiserver gone) is retried with a backoff and its
reason is kept (`error`), so that the pages say their view may be stale, and why.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from .. import kube
from ..errors import APIError

log = logging.getLogger(__name__)
BACKOFF = (0.5, 1.0, 2.0, 5.0)  # seconds before each new attempt after a failure


class Incidents:
    """The AIIncidents of NAMESPACES (empty: every namespace), by (namespace, name): one
    watch per namespace (a user may be able to read only some), or one for all."""

    def __init__(self, namespaces: tuple[str, ...], loop: asyncio.AbstractEventLoop) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.errors: dict[str | None, str] = {}
        self._loop = loop
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._stop = threading.Event()
        self._synced = {namespace: threading.Event() for namespace in namespaces or (None,)}
        self._threads = [
            threading.Thread(target=self._run, args=(ns,), name="dashboard-watch", daemon=True)
            for ns in self._synced
        ]

    @property
    def error(self) -> str:
        return "; ".join(e for e in self.errors.values() if e)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> None:
        """Until every watch has listed once or failed (at most TIMEOUT seconds each)."""
        for event in self._synced.values():
            event.wait(timeout)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.items.values())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self.items.get((namespace, name))

    async def changed(self, timeout: float) -> bool:
        """Wait until something changes (True) or TIMEOUT seconds pass (False)."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # --- The watch threads ----------------------------------------------------------------

    def _notify(self) -> None:
        def wake() -> None:
            event, self._changed = self._changed, asyncio.Event()
            event.set()

        try:
            self._loop.call_soon_threadsafe(wake)
        except RuntimeError:  # the loop is closed: the server is stopping
            self._stop.set()

    def _run(self, namespace: str | None) -> None:
        failures = 0
        where = f" in {namespace}" if namespace else ""
        while not self._stop.is_set():
            try:
                self._list_and_watch(namespace)
                failures = 0
            except APIError as err:
                if err.status == 410:  # the version is too old: list again, no failure
                    continue
                why = f"{err.status} {err.reason}".strip() if err.status else "no answer"
                self._fail(namespace, f"cannot watch AIIncidents{where} ({why}): {err.message}")
                failures += 1
            except Exception as err:  # never let the view die silently
                log.exception("the dashboard's watch failed")
                self._fail(namespace, f"cannot watch AIIncidents{where}: {err}")
                failures += 1
            if failures:
                self._stop.wait(BACKOFF[min(failures, len(BACKOFF)) - 1])

    def _fail(self, namespace: str | None, message: str) -> None:
        message += "; what is shown may be stale"
        if message != self.errors.get(namespace):
            self.errors[namespace] = message
            self._notify()
        self._synced[namespace].set()  # the page says why rather than wait

    def _list_and_watch(self, namespace: str | None) -> None:
        answer = kube.list_with_version("AIIncident", namespace)
        listed = {(i["metadata"]["namespace"], i["metadata"]["name"]): i
                  for i in answer.get("items") or []}  # fmt: skip
        with self._lock:
            for key in [k for k in self.items if namespace in (None, k[0]) and k not in listed]:
                del self.items[key]  # deleted while the watch was down
            self.items.update(listed)
        self.errors.pop(namespace, None)
        self._synced[namespace].set()
        self._notify()
        version = (answer.get("metadata") or {}).get("resourceVersion", "")
        while not self._stop.is_set():
            for kind, obj in kube.watch("AIIncident", namespace, "", version):
                meta = obj.get("metadata") or {}
                version = meta.get("resourceVersion") or version
                if kind == "BOOKMARK":
                    continue
                key = (meta.get("namespace", ""), meta.get("name", ""))
                with self._lock:
                    if kind == "DELETED":
                        self.items.pop(key, None)
                    else:
                        self.items[key] = obj
                self._notify()
                if self._stop.is_set():
                    return
