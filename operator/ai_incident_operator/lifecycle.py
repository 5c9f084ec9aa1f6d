"""The incident state machine: phases, their timestamps and the bounded timeline (pure).

Detected -> Triaged -> [AwaitingApproval] -> Mitigating -> Mitigated -> Resolving
-> Resolved -> Closed, and Failed when a mitigation cannot be applied. Functions
here take and return plain status dicts; `handlers` writes what they return.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .conditions import initial_conditions, now_iso

PHASES = (
    "Detected",
    "Triaged",
    "AwaitingApproval",
    "Mitigating",
    "Mitigated",
    "Resolving",
    "Resolved",
    "Closed",
    "Failed",
)
OPEN_PHASES = frozenset(PHASES) - {"Resolved", "Closed"}
# The status timestamp each phase stamps the first time it is reached.
PHASE_TIMESTAMPS = {
    "Detected": "detectedAt",
    "Triaged": "triagedAt",
    "Mitigated": "mitigatedAt",
    "Resolved": "resolvedAt",
    "Closed": "closedAt",
}
TIMELINE_LIMIT = 50

Status = dict[str, Any]


def add_timeline(status: Status, type_: str, message: str, now: datetime | None = None) -> None:
    """Append an entry, keeping the first one (detection) and the most recent others."""
    timeline = list(status.get("timeline") or [])
    timeline.append({"time": now_iso(now), "type": type_, "message": message})
    if len(timeline) > TIMELINE_LIMIT:
        timeline = timeline[:1] + timeline[-(TIMELINE_LIMIT - 1) :]
    status["timeline"] = timeline


def enter_phase(status: Status, phase: str, message: str, now: datetime | None = None) -> bool:
    """Move STATUS to PHASE, stamping its timestamp and the timeline; False if already there."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    if status.get("phase") == phase:
        return False
    status["phase"] = phase
    stamp = PHASE_TIMESTAMPS.get(phase)
    if stamp and not status.get(stamp):
        status[stamp] = now_iso(now)
    add_timeline(status, phase, message, now)
    return True


def detected_status(body: dict[str, Any], now: datetime | None = None) -> Status:
    """The first status of a new incident: Detected, every condition Unknown."""
    generation = body.get("metadata", {}).get("generation")
    spec = body.get("spec", {})
    source = (spec.get("source") or {}).get("type", "Manual")
    status: Status = {"conditions": initial_conditions(generation, now)}
    enter_phase(
        status, "Detected", f"{spec.get('category', 'Other')} incident reported by {source}", now
    )
    if generation is not None:
        status["observedGeneration"] = generation
    return status


def is_open(status: Status) -> bool:
    return status.get("phase", "Detected") in OPEN_PHASES
