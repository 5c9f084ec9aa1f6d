"""Exact undo: the originals of the fields a mitigation changes, recorded on the object.

Before an action changes an object, the original value of each field it changes
is kept in the object's `aiincident.io/ledger` annotation, together with who holds
which value (incident and action). Undo puts back only those fields, so anything
else changed meanwhile (a new image shipped as the fix) survives. Several holders
stack: the most recent holder's value is in force, and the original comes back
only when the last holder lets go. The value and its ledger are written in one
update of the object, so a crash can never separate them.

All functions are pure: they take an object dict, change it in place and say
whether anything changed; `actions.base` reads and writes the objects.
"""

from __future__ import annotations

import json
from typing import Any

from . import GROUP
from .fieldpath import ABSENT, get, put

ANNOTATION = f"{GROUP}/ledger"
# On every object the ledger holds anything for, so that the operator can watch exactly
# those (a label selector) and repair a mitigation someone reverts.
HELD_LABEL = f"{GROUP}/held"
_ABSENT_MARK = {"$absent": True}


def _encode(value: Any) -> Any:
    return _ABSENT_MARK if value is ABSENT else value


def decode(value: Any) -> Any:
    """A value as `held_originals` gives it, back to a field value (ABSENT for "was absent")."""
    return _decode(value)


def _decode(value: Any) -> Any:
    return ABSENT if value == _ABSENT_MARK else value


def read(obj: dict) -> dict[str, Any]:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return {"originals": {}, "holders": []}
    ledger = json.loads(raw)
    ledger.setdefault("originals", {})
    ledger.setdefault("holders", [])
    return ledger


def _write(obj: dict, ledger: dict[str, Any]) -> None:
    meta = obj.setdefault("metadata", {})
    annotations = dict(meta.get("annotations") or {})
    labels = dict(meta.get("labels") or {})
    if ledger["holders"]:
        annotations[ANNOTATION] = json.dumps(ledger, sort_keys=True, separators=(",", ":"))
        labels[HELD_LABEL] = "true"
    else:
        annotations.pop(ANNOTATION, None)
        labels.pop(HELD_LABEL, None)
    for key, values in (("annotations", annotations), ("labels", labels)):
        if values:
            meta[key] = values
        else:
            meta.pop(key, None)  # it was absent before the first hold


def _find(ledger: dict, incident: str, action: str) -> dict | None:
    return next(
        (h for h in ledger["holders"] if h["incident"] == incident and h["action"] == action), None
    )


def _effective(ledger: dict, path: str) -> Any:
    """The value PATH should have: the latest holder's, else the original."""
    for holder in reversed(ledger["holders"]):
        if path in holder["values"]:
            return _decode(holder["values"][path])
    return _decode(ledger["originals"][path])


def hold(
    obj: dict,
    incident: str,
    action: str,
    values: dict[str, Any],
    known: dict[str, Any] | None = None,
) -> bool:
    """INCIDENT's ACTION wants these field VALUES (ABSENT removes a field). True if OBJ changed.

    KNOWN, originals kept elsewhere (encoded, as `held_originals` gives them), is used
    for the paths it has instead of the current values: after the ledger annotation was
    removed, the current values are the mitigated ones, not the originals.
    """
    before = json.dumps(obj, sort_keys=True)
    ledger = read(obj)
    holder = _find(ledger, incident, action)
    dropped = set(holder["values"]) - set(values) if holder else set()
    for path in values:
        if path not in ledger["originals"]:
            if known and path in known:
                ledger["originals"][path] = known[path]
            else:
                ledger["originals"][path] = _encode(get(obj, path))
    if holder is None:
        holder = {"incident": incident, "action": action, "values": {}}
        ledger["holders"].append(holder)
    holder["values"] = {path: _encode(v) for path, v in values.items()}
    for path in dropped:
        _settle(obj, ledger, path)
    for path in values:
        put(obj, path, _effective(ledger, path))  # a later holder's value stays in force
    _write(obj, ledger)
    return json.dumps(obj, sort_keys=True) != before


def release(obj: dict, incident: str, action: str | None = None) -> bool:
    """INCIDENT lets go of ACTION (all its actions when None). True if OBJ changed."""
    before = json.dumps(obj, sort_keys=True)
    ledger = read(obj)
    leaving = [
        h for h in ledger["holders"] if h["incident"] == incident and action in (None, h["action"])
    ]
    if not leaving:
        return False
    ledger["holders"] = [h for h in ledger["holders"] if h not in leaving]
    for path in {p for h in leaving for p in h["values"]}:
        _settle(obj, ledger, path)
    _write(obj, ledger)
    return json.dumps(obj, sort_keys=True) != before


def _settle(obj: dict, ledger: dict, path: str) -> None:
    """Give PATH its effective value; forget the original once nobody holds it."""
    put(obj, path, _effective(ledger, path))
    if not any(path in h["values"] for h in ledger["holders"]):
        del ledger["originals"][path]


def holds(obj: dict, incident: str, action: str) -> dict[str, Any] | None:
    """The values INCIDENT's ACTION holds on OBJ, or None if it holds nothing there."""
    holder = _find(read(obj), incident, action)
    return {p: _decode(v) for p, v in holder["values"].items()} if holder else None


def contested(obj: dict, incident: str, action: str) -> list[str]:
    """Paths where OBJ no longer has the value in force for this holder (someone reverted it)."""
    ledger = read(obj)
    holder = _find(ledger, incident, action)
    if holder is None:
        return []
    return sorted(p for p in holder["values"] if get(obj, p) != _effective(ledger, p))


def originals(obj: dict) -> dict[str, Any]:
    """The value each held path had before any mitigation (ABSENT: the field was not there).

    Evidence uses it to show what was serving before the operator changed anything.
    """
    return {path: _decode(value) for path, value in read(obj)["originals"].items()}


def held_originals(obj: dict, incident: str, action: str) -> dict[str, Any]:
    """The originals (encoded, JSON-safe) of the paths INCIDENT's ACTION holds on OBJ."""
    ledger = read(obj)
    holder = _find(ledger, incident, action)
    if holder is None:
        return {}
    return {p: ledger["originals"][p] for p in holder["values"] if p in ledger["originals"]}


def held_by(obj: dict, incident: str) -> list[str]:
    """The actions INCIDENT holds on OBJ, in the order they took hold."""
    return [h["action"] for h in read(obj)["holders"] if h["incident"] == incident]


def holders(obj: dict) -> list[tuple[str, str]]:
    return [(h["incident"], h["action"]) for h in read(obj)["holders"]]
