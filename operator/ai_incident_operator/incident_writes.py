"""What a person's decision writes on an AIIncident: the one patch per decision (pure).

The CLI (`aiincident approve|ack|resolve`) and the dashboard make exactly these writes,
as merge patches of `spec` with the person's own credentials; the operator turns them
into the timeline, conditions and pages. WHO is kept in the spec because the apiserver
keeps no author for a field (managedFields name the client, not the person).
"""

from __future__ import annotations

from typing import Any

Patch = dict[str, Any]


def approve(who: str) -> Patch:
    return {"spec": {"approved": True, "approvedBy": who}}


def acknowledge(who: str, at: str) -> Patch:
    """AT: RFC 3339 UTC, when WHO took the incident."""
    return {"spec": {"acknowledged": {"by": who, "at": at}}}


def resolve(
    who: str, root_cause: str = "", fix: str = "", skip_verification: bool = False
) -> Patch:
    resolution: dict[str, Any] = {"requested": True}
    if root_cause:
        resolution["rootCause"] = root_cause
    if fix:
        resolution["fix"] = fix
    resolution["by"] = who
    if skip_verification:
        resolution["skipVerification"] = True
    return {"spec": {"resolution": resolution}}


def complete_review() -> Patch:
    """The review is done: the operator closes the incident (phase Closed)."""
    return {"spec": {"review": {"completed": True}}}
