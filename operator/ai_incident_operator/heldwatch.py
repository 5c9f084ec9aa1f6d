"""Repair reverted mitigations as they happen: watch exactly the objects the ledgers hold.

Every object a mitigation holds carries the label `aiincident.io/held` (the ledger
sets it with the first holder and removes it with the last), so one watch per kind
with that label selector sees only those objects, never the whole cluster. When
one of them no longer has the value a holder put there (a GitOps sync, a person),
that holder's incident is scheduled to run at once; the engine re-applies and says
`MitigationContested`. Kinds whose CRD is absent, or that the operator may not
watch, are skipped with a log line: repair then comes with the incident's next
scheduled pass (its evidence refresh).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable

from . import kube, ledger
from .errors import APIError, Forbidden, NotFound
from .resources import HELD_KINDS

log = logging.getLogger(__name__)
KINDS = HELD_KINDS
SELECTOR = ledger.HELD_LABEL
RETRY_SECONDS = 5.0


def contested_holders(obj: dict) -> list[tuple[str, str]]:
    """(namespace, incident) of every holder whose value OBJ no longer has (pure)."""
    found = []
    for holder, action in ledger.holders(obj):
        if ledger.contested(obj, holder, action):
            namespace, _, name = holder.partition("/")
            if (namespace, name) not in found:
                found.append((namespace, name))
    return found


def watched(namespace: str, patterns: list[str]) -> bool:
    """Whether kopf's namespace PATTERNS (globs; `!glob` excludes) take NAMESPACE (pure)."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    return (not include or any(fnmatch.fnmatchcase(namespace, p) for p in include)) and not any(
        fnmatch.fnmatchcase(namespace, p) for p in exclude
    )


class HeldWatch:
    """Watch threads, one per kind (and per namespace when the operator is limited)."""

    def __init__(self, on_contested: Callable[[tuple[str, str]], None],
                 namespaces: list[str] | None = None) -> None:  # fmt: skip
        self.on_contested = on_contested
        # kopf's --namespace may be a glob (`t-*`): then one cluster-wide watch, filtered here.
        self.patterns = [n for n in namespaces or [] if any(c in n for c in "*?[!")]
        self.namespaces = [None] if self.patterns or not namespaces else list(namespaces)
        self.wanted = list(namespaces or [])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for kind in KINDS:
            for namespace in self.namespaces:
                thread = threading.Thread(target=self._watch, args=(kind, namespace),
                                          name=f"aiincident-watch-{kind}", daemon=True)  # fmt: skip
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _watch(self, kind: str, namespace: str | None) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not kube.kind_installed(kind):
                    self._stop.wait(kube.INSTALLED_TTL)
                    continue
                if not version:
                    # Held objects changed while nothing watched (a restart) are checked once.
                    version = self._list(kind, namespace)
                for type_, obj in kube.watch(kind, namespace, SELECTOR, version):
                    version = obj.get("metadata", {}).get("resourceVersion") or version
                    if type_ in ("ADDED", "MODIFIED"):
                        self._check(obj)
                    if self._stop.is_set():
                        return
            except Forbidden as err:
                log.warning("cannot watch %s (%s): reverted mitigations on them are repaired "
                            "on the incident's next scheduled pass", kind, err.message)  # fmt: skip
                self._stop.wait(300)
            except NotFound:
                version = ""
                self._stop.wait(RETRY_SECONDS)
            except APIError as err:
                if err.status == 410:  # too old: list again from now
                    version = ""
                    continue
                log.debug("watch of %s ended: %s; again in %ss", kind, err, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)

    def _list(self, kind: str, namespace: str | None) -> str:
        """Check every held object of KIND; the list's resourceVersion, to watch from."""
        answer = kube.list_with_version(kind, namespace, SELECTOR)
        for obj in answer["items"]:
            self._check(obj)
        return (answer.get("metadata") or {}).get("resourceVersion", "")

    def _check(self, obj: dict) -> None:
        namespace = (obj.get("metadata") or {}).get("namespace", "")
        if self.patterns and not watched(namespace, self.wanted):
            return
        for key in contested_holders(obj):
            self.on_contested(key)
