"""Repair reverted mitigations as they happen: watch exactly the objects the ledgers hold.

Every object a mitigation holds carries the label `aiincident.io/held` (the ledger
sets it with the first holder and removes it with the last), so one watch per kind
with that label selector sees only those objects, never the whole cluster. When
one of them no longer has the value a holder put there (a GitOps sync, a person),
that holder's incident is scheduled to run at once; the engine re-applies and says
`MitigationContested`. Kinds whose CRD is absent, or that the operator may not
watch, are skipped with a log line: repair then comes with the incident's next
scheduled pass (its evidence refresh).

A contested object is passed on once per change that matters (its generation or
the set of reverted fields moved), not for every status update the controllers
write while it stays reverted: during a contest's backoff the engine itself says
when it looks again. A held workload whose pod template a person changed (a
rollout: `investigation.changes`) is passed on too, so that the change reaches
the incident's timeline at once.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from . import kube, ledger
from .errors import APIError, Forbidden, NotFound
from .investigation import changes
from .resources import HELD_KINDS

log = logging.getLogger(__name__)
KINDS = tuple(dict.fromkeys(HELD_KINDS))  # one watch per kind, whatever lists it twice
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


@dataclass(frozen=True)
class Seen:
    """What the watch last saw of one held object."""

    generation: int | None
    contested: tuple[tuple[str, str], ...]  # (namespace, incident) of the holders reverted
    reverted: tuple[tuple[str, str, str], ...]  # (holder, action, path) found reverted
    template: str  # the pod template's fingerprint without the operator's changes; "" none


def seen(obj: dict) -> Seen:
    """The parts of OBJ that decide whether its holders need a pass (pure)."""
    reverted = tuple(
        (holder, action, path)
        for holder, action in ledger.holders(obj)
        for path in ledger.contested(obj, holder, action)
    )
    template = changes.template_fingerprint(obj)
    meta = obj.get("metadata") or {}
    return Seen(meta.get("generation"), tuple(contested_holders(obj)), reverted, template)


def due(before: Seen | None, after: Seen, obj: dict) -> list[tuple[str, str]]:
    """(namespace, incident) of the holders that need a pass now AFTER follows BEFORE (pure)."""
    keys: list[tuple[str, str]] = []
    moved = before is None or (before.generation, before.reverted) != (
        after.generation,
        after.reverted,
    )
    if after.contested and moved:
        keys += after.contested
    if before is not None and before.template and after.template != before.template:
        for holder, _ in ledger.holders(obj):  # a person rolled the workload out
            namespace, _, name = holder.partition("/")
            keys.append((namespace, name))
    return list(dict.fromkeys(keys))


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
        self._seen: dict[str, Seen] = {}  # uid -> as last seen
        self._seen_lock = threading.Lock()

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
                    elif type_ == "DELETED":  # gone, or no longer held (the label removed)
                        with self._seen_lock:
                            self._seen.pop(obj.get("metadata", {}).get("uid", ""), None)
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
        uid = (obj.get("metadata") or {}).get("uid", "")
        after = seen(obj)
        with self._seen_lock:
            before = self._seen.get(uid)
            self._seen[uid] = after
        for key in due(before, after, obj):
            self.on_contested(key)
