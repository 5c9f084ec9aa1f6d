"""The incident state machine: phases, their timestamps and the bounded timeline (pure).

Detected -> Triaged -> [AwaitingApproval] -> Mitigating -> Mitigated -> Resolving
-> Resolved -> Closed, and Failed when a mitigation cannot be applied. Functions
here take and return plain status dicts; `handlers` writes what they return.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .conditions import initial_conditions, now_iso
from .times import parse_time

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
# An open incident's evidence is gathered at triage, again EVIDENCE_REFRESH later (the
# picture once the mitigation holds), then every EVIDENCE_REFRESH_LATER: a thousand open
# incidents must not keep the apiserver busy.
EVIDENCE_REFRESH = timedelta(minutes=5)
EVIDENCE_REFRESH_LATER = timedelta(hours=1)

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


def merge_patch(before: Any, after: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns BEFORE into AFTER: removed keys are null.

    The status is written as a merge patch; without the nulls a key the engine dropped
    (`undoStep`, `policyRef`) would stay on the object.
    """
    if not isinstance(before, dict) or not isinstance(after, dict):
        return after
    patch = {key: None for key in before if key not in after}
    for key, value in after.items():
        if key not in before:
            patch[key] = value
        elif before[key] != value:
            patch[key] = merge_patch(before[key], value)
    return patch


def evidence_refresh(status: Status) -> timedelta:
    """How long after its last collection the evidence is gathered again."""
    last = parse_time(status.get("evidenceCollectedAt"))
    triaged = parse_time(status.get("triagedAt")) or parse_time(status.get("detectedAt"))
    if last is None or triaged is None or last - triaged < EVIDENCE_REFRESH:
        return EVIDENCE_REFRESH
    return EVIDENCE_REFRESH_LATER


def evidence_due_in(status: Status, now: datetime) -> float:
    """Seconds until an open incident's evidence is due again (0: now)."""
    last = parse_time(status.get("evidenceCollectedAt"))
    if last is None:
        return 0.0
    return max((last + evidence_refresh(status) - now).total_seconds(), 0.0)


def is_open(status: Status) -> bool:
    return status.get("phase", "Detected") in OPEN_PHASES
