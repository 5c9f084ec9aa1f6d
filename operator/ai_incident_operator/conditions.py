"""metav1.Condition helpers: the one place conditions are built (like `meta.SetStatusCondition`).

kopf patches status with a JSON merge patch, which replaces lists whole, so callers
always pass the complete current list and write back the complete result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .times import iso

# The contract's condition types for AIIncident, in the order a person reads them.
INCIDENT_CONDITION_TYPES = (
    "Triaged",
    "Approved",
    "Mitigated",
    "EvidenceCollected",
    "RootCauseIdentified",
    "Verified",
    "Resolved",
    "Reviewed",
)

# Set only on incidents whose policy has a `reproduction` (so not among the initial ones):
# whether the incident's examples fail on the serving model (investigation.reproduce).
REPRODUCED = "Reproduced"
# Set once a person acknowledges the incident (`spec.acknowledged`, `aiincident ack`):
# who has it; the escalation ladder's `unless: Acknowledged` reads it (engine.acknowledge).
ACKNOWLEDGED = "Acknowledged"

Condition = dict[str, Any]


def now_iso(now: datetime | None = None) -> str:
    """RFC 3339 UTC timestamp with second precision, as Kubernetes writes them."""
    return iso(now or datetime.now(UTC))


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: str | bool,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    now: datetime | None = None,
) -> list[Condition]:
    """Return a new list with condition TYPE set; lastTransitionTime moves only when status does."""
    if isinstance(status, bool):
        status = "True" if status else "False"
    result: list[Condition] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type_:
            result.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status
        result.append(
            _condition(
                type_,
                status,
                reason,
                message,
                generation,
                now_iso(now) if changed else cond.get("lastTransitionTime") or now_iso(now),
            )
        )
    if not found:
        result.append(_condition(type_, status, reason, message, generation, now_iso(now)))
    return result


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int | None, time: str
) -> Condition:
    cond: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": time,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def is_true(conditions: list[Condition] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond) and cond.get("status") == "True"


def initial_conditions(generation: int | None, now: datetime | None = None) -> list[Condition]:
    """All contract conditions as Unknown: nothing has been decided yet."""
    conditions: list[Condition] = []
    for type_ in INCIDENT_CONDITION_TYPES:
        conditions = set_condition(
            conditions,
            type_,
            "Unknown",
            "Pending",
            "not evaluated yet",
            generation=generation,
            now=now,
        )
    return conditions
