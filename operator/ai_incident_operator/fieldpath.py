"""Addressing single fields inside Kubernetes objects (pure).

A path is written like a JSON pointer, with list items chosen by a key so that a
path keeps meaning the same item when others are added or reordered:

    /spec/replicas
    /spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]
    /metadata/annotations/autoscaling.keda.sh~1paused-replicas     (~1 is "/", ~0 is "~")
    /spec/http[0]/route                                               (by index)

`get` answers ABSENT for a field that is not there, and `put(obj, path, ABSENT)`
removes it, so "was absent" is restored as exactly that.
"""

from __future__ import annotations

import re
from typing import Any

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
_ITEM = re.compile(r"^(?P<field>[^\[]*)\[(?:(?P<key>[^=\]]+)=(?P<value>[^\]]*)|(?P<index>\d+))\]$")


class PathError(ValueError):
    """A path that does not fit the object (e.g. an index past the end of a list)."""


def escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


def join(*segments: str) -> str:
    return "".join("/" + s for s in segments)


def _parse(path: str) -> list[tuple[str, tuple[str, str] | int | None]]:
    if not path.startswith("/"):
        raise PathError(f"path {path!r} must start with /")
    steps: list[tuple[str, tuple[str, str] | int | None]] = []
    for raw in path[1:].split("/"):
        match = _ITEM.match(raw)
        if match:
            field = match["field"].replace("~1", "/").replace("~0", "~")
            item = (
                int(match["index"])
                if match["index"] is not None
                else (match["key"], match["value"])
            )
            steps.append((field, item))
        else:
            steps.append((raw.replace("~1", "/").replace("~0", "~"), None))
    return steps


def _find(items: list, item: tuple[str, str] | int) -> int | None:
    if isinstance(item, int):
        return item if item < len(items) else None
    key, value = item
    return next(
        (i for i, x in enumerate(items) if isinstance(x, dict) and x.get(key) == value), None
    )


def get(obj: Any, path: str) -> Any:
    node = obj
    for field, item in _parse(path):
        if not isinstance(node, dict) or field not in node:
            return ABSENT
        node = node[field]
        if item is not None:
            if not isinstance(node, list):
                return ABSENT
            index = _find(node, item)
            if index is None:
                return ABSENT
            node = node[index]
    return node


def put(obj: dict, path: str, value: Any) -> None:
    """Set the field at PATH to VALUE (creating parents), or remove it when VALUE is ABSENT."""
    steps = _parse(path)
    node: Any = obj
    for depth, (field, item) in enumerate(steps):
        last = depth == len(steps) - 1
        if item is None:
            if last:
                if value is ABSENT:
                    node.pop(field, None)
                else:
                    node[field] = value
                return
            if value is ABSENT and not isinstance(node.get(field), dict):
                return  # nothing to remove
            node = node.setdefault(field, {})
            continue
        items = node.get(field)
        if items is None:
            if value is ABSENT:
                return
            items = node[field] = []
        index = _find(items, item)
        if last:
            if value is ABSENT:
                if index is not None:
                    del items[index]
                if not items:
                    del node[field]  # Kubernetes omits empty lists; so does the original
            elif index is not None:
                items[index] = value
            elif isinstance(item, int):
                raise PathError(f"{path}: no item {item} in a list of {len(items)}")
            else:
                items.append(value)
            return
        if index is None:
            if value is ABSENT:
                return
            if isinstance(item, int):
                raise PathError(f"{path}: no item {item} in a list of {len(items)}")
            items.append({item[0]: item[1]})
            index = len(items) - 1
        node = items[index]
