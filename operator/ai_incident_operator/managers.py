"""Who wrote a field: the field managers of an object's `metadata.managedFields` (pure).

The apiserver records, per field manager (`kubectl-edit`, `argocd-controller`,
`kustomize-controller`, `helm`, the operator's own `ai-incident-operator`), which
fields it owns; an update that changes a field moves it to the updater. So the
owner of a reverted field names the likely actor of the revert, and the owner of a
changed pod template or ConfigMap key names who changed it. Paths are
`fieldpath` paths (`/spec/template/spec/containers[name=llm]/image`).

Before Kubernetes 1.25 (kubernetes#110058) an entry's `time` moves only when its
set of fields changes: callers treat a time older than their last look as unknown.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .times import parse_time

OPERATOR = "ai-incident-operator"  # kube.FIELD_MANAGER: the operator's own writes
_ITEM = re.compile(r"^(?P<field>[^\[]*)\[(?:(?P<key>[^=\]]+)=(?P<value>[^\]]*)|(?P<index>\d+))\]$")


@dataclass(frozen=True)
class Writer:
    manager: str
    operation: str  # Update | Apply
    time: datetime | None


def _segments(path: str) -> list[tuple[str, tuple[str, str] | None]]:
    """The path as (field, keyed item or None); an index item ends what managedFields can tell."""
    out: list[tuple[str, tuple[str, str] | None]] = []
    for raw in path.strip("/").split("/"):
        if not raw:
            continue
        match = _ITEM.match(raw)
        field = (match["field"] if match else raw).replace("~1", "/").replace("~0", "~")
        if match and match["index"] is not None:
            out.append((field, None))
            break  # a list by index is atomic in managedFields: its owner owns the items
        out.append((field, (match["key"], match["value"]) if match else None))
    return out


def _keyed(node: dict, key: str, value: str) -> dict | None:
    """The `k:{...}` child of NODE whose key KEY has VALUE."""
    for name, child in node.items():
        if not name.startswith("k:"):
            continue
        try:
            keys = json.loads(name[2:])
        except ValueError:
            continue
        if isinstance(keys, dict) and str(keys.get(key)) == value:
            return child if isinstance(child, dict) else {}
    return None


def owns(fields: Any, path: str) -> bool:
    """Whether a FieldsV1 set owns PATH, or an atomic field above it, or a field below it."""
    node = fields if isinstance(fields, dict) else {}
    for field, item in _segments(path):
        child = node.get(f"f:{field}")
        if child is None:
            return False
        if not isinstance(child, dict) or not child:
            return True  # a leaf: an atomic value (a whole list or map) that contains PATH
        node = child
        if item is not None:
            found = _keyed(node, *item)
            if found is None:
                return False
            node = found
    return True


def writers(obj: dict, path: str) -> list[Writer]:
    """The managers that own PATH on OBJ (or an atomic field holding it), newest first."""
    found = []
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("subresource") == "status" or not owns(entry.get("fieldsV1"), path):
            continue
        found.append(Writer(entry.get("manager", ""), entry.get("operation", ""),
                            parse_time(entry.get("time"))))  # fmt: skip
    return sorted(found, key=lambda w: w.time.timestamp() if w.time else 0.0, reverse=True)


def last_writer(
    obj: dict, paths: list[str], exclude: tuple[str, ...] = (OPERATOR,)
) -> Writer | None:
    """The newest manager other than EXCLUDE that owns any of PATHS on OBJ, or None."""
    candidates = [w for p in paths for w in writers(obj, p) if w.manager not in exclude]
    if not candidates:
        return None
    return max(candidates, key=lambda w: w.time.timestamp() if w.time else 0.0)


def describe(writer: Writer | None) -> str:
    """How a person reads the actor, e.g. "field manager kubectl-edit"."""
    return f"field manager {writer.manager}" if writer and writer.manager else "an unknown writer"


def newest_writer(obj: dict, exclude: tuple[str, ...] = (OPERATOR,)) -> Writer | None:
    """The manager other than EXCLUDE that wrote OBJ last (its spec or metadata), or None.

    For a field someone removed: nobody owns an absent field, so the newest writer is the
    best guess at who removed it.
    """
    found = [
        Writer(e.get("manager", ""), e.get("operation", ""), parse_time(e.get("time")))
        for e in (obj.get("metadata") or {}).get("managedFields") or []
        if e.get("subresource") != "status" and e.get("manager") not in exclude
        and set(e.get("fieldsV1") or {}) - {"f:status"}
    ]  # fmt: skip
    return max(found, key=lambda w: w.time.timestamp() if w.time else 0.0, default=None)


def likely_actor(obj: dict, paths: list[str]) -> str:
    """The manager that most likely wrote PATHS last on OBJ (its owner; for removed fields,
    the newest writer), or "" when managedFields do not say."""
    writer = last_writer(obj, paths) or newest_writer(obj)
    return writer.manager if writer else ""
