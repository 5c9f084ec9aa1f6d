"""The incident engine: from an AIIncident and the policies to changed workloads and a status.

    reconcile.py  read, decide, act, write the status once; finalize on deletion
    context.py    IncidentContext (one pass's state and `say`), World, Result
    decide.py     the pure decision: triage, policy, gates, steps (shared with simulate)
    steps.py      running steps and recording their outcomes as entries
    mitigate.py   apply the response, undo what it lacks
    resolve.py    verification, stepped traffic undo, Resolved
    undo.py       undo from the ledgers on the objects
    close.py      the review document, Closed, an overdue review
    regulatory.py the regulatory clock
    targets.py    the workloads an incident names

Importing the package loads neither kopf nor kubernetes; `reconcile` and `finalize`
are handed an `access.Access` (the real cluster when none is given).
"""

from __future__ import annotations

from .context import HELD, IncidentContext, Result, World
from .decide import DEFAULT_COOLDOWN, Decision, Step, cooling, decide, gate, plan, resolution_reason
from .reconcile import amend, finalize, policy_by_ref, reconcile
from .targets import missing_target_message, resolve_targets

__all__ = [
    "DEFAULT_COOLDOWN",
    "HELD",
    "Decision",
    "IncidentContext",
    "Result",
    "Step",
    "World",
    "amend",
    "cooling",
    "decide",
    "finalize",
    "gate",
    "missing_target_message",
    "plan",
    "policy_by_ref",
    "reconcile",
    "resolution_reason",
    "resolve_targets",
]  # fmt: skip
