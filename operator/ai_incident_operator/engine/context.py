"""The reconcile context: one incident's pass, with everything it needs on one object.

As Argo Rollouts' `rolloutContext`: the incident, the status being built, the chosen
policy, the targets, the `World` (what indexes know), the clock and the access to
the cluster live on `IncidentContext`, and the mitigate / resolve / close modules
take it instead of seven parameters. The mitigation entries live once, here, keyed
by (action key, target); `finish` writes them into the status. `say` records a
timeline entry, an Event and a log line together (Flagger's `recordEventInfof`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import policy as mitigation_policy
from ..access import Access
from ..actions import notify, ticket
from ..bounds import TenantBounds
from ..conditions import is_true, set_condition
from ..investigation.hypotheses import root_cause_identified
from ..lifecycle import add_timeline, enter_phase
from ..resources import Ref
from . import outside

log = logging.getLogger("ai_incident_operator.engine")
Body = dict[str, Any]
EntryId = tuple[str, str]  # (action key, "Kind/name" or "AIIncident/<name>")
HELD = ("Applied",)  # entry states whose changes are in force


def in_force(entry: dict[str, Any]) -> bool:
    """Whether ENTRY's change may be on the objects: applied, or a re-apply that failed."""
    if entry.get("state") in HELD:
        return True
    failed = entry.get("state") == "Failed"
    return failed and bool(entry.get("appliedAt")) and not entry.get("revertedAt")


def _no_labels(namespace: str) -> dict[str, str]:
    return {}


def _never_released(namespace: str, target: str, incident: str) -> datetime | None:
    return None


@dataclass
class World:
    """What the engine knows without asking the apiserver, and the slow services it may use.

    Policies, namespace labels and past releases come from kopf indexes. INVESTIGATE
    (evidence and hypotheses), VERIFY (PromQL checks) and WRITE_REVIEW (the review
    ConfigMap) are the real ones in the operator and stand-ins in unit tests.
    """

    policies: list[Body] = field(default_factory=list)
    namespace_labels: Callable[[str], dict[str, str]] = _no_labels
    # When a mitigation of (namespace, target) by another incident was last undone.
    last_released: Callable[[str, str, str], datetime | None] = _never_released
    protected_namespaces: frozenset[str] = mitigation_policy.BUILTIN_PROTECTED_NAMESPACES
    # What namespaced policies may ask (bounds.py); None: not checked (unit tests, tools).
    # The operator always passes its own (handlers._world).
    tenant_bounds: TenantBounds | None = None
    investigate: Callable[[IncidentContext], None] | None = None
    verify: Callable[[list, str, Any, datetime], tuple[bool, str]] | None = None
    write_review: Callable[[IncidentContext], None] | None = None
    # Runs a job apart from the caller's thread: the calls out after a pass and the pass
    # their outcomes ask for (engine.reconcile), so that a dead webhook holds no worker of
    # kopf's or the scheduler's. None: in the caller's thread, before reconcile returns.
    call_later: Callable[[Callable[[], None]], None] | None = None
    # What such a job's outcomes ask of the caller's scheduler (a retry, a recheck), by
    # (namespace, name); None: nothing (the job's Result is dropped).
    requeue: Callable[[str, str, Result], None] | None = None


@dataclass
class Result:
    """What a reconcile asks of its caller, as controller-runtime's `reconcile.Result`.

    RETRY: something failed (an action, an undo) and should be tried again with
    backoff. REQUEUE_AFTER: seconds until the incident next needs attention (an undo
    step, the end of a verification window, a cooldown, a deadline); None for never.
    WAITING_FOR: what a deletion still waits on, in words.
    """

    retry: bool = False
    requeue_after: float | None = None
    waiting_for: str = ""

    def merge(self, other: Result) -> Result:
        times = [t for t in (self.requeue_after, other.requeue_after) if t is not None]
        return Result(
            self.retry or other.retry,
            min(times) if times else None,
            "; ".join(w for w in (self.waiting_for, other.waiting_for) if w),
        )


@dataclass
class IncidentContext:
    api: Access
    body: Body
    status: Body
    world: World
    now: datetime
    policy: Body | None = None
    targets: list[Body] = field(default_factory=list)
    entries: dict[EntryId, Body] = field(default_factory=dict)
    result: Result = field(default_factory=Result)
    # Calls to outside services this pass asks for, run after its status write (engine.outside).
    calls: list[outside.Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.entries:
            self.entries = {
                (e.get("key") or e["action"], e["target"]): e
                for e in self.status.get("mitigations") or []
            }

    # --- who and what ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.body["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.body["metadata"]["namespace"]

    @property
    def holder(self) -> str:
        """How the ledgers name this incident."""
        return f"{self.namespace}/{self.name}"

    @property
    def uid(self) -> str:
        return self.body["metadata"].get("uid") or self.holder

    @property
    def ref(self) -> Ref:
        return Ref("AIIncident", self.namespace, self.name)

    @property
    def spec(self) -> Body:
        return self.body.get("spec") or {}

    @property
    def policy_spec(self) -> Body:
        return (self.policy or {}).get("spec") or {}

    @property
    def generation(self) -> int | None:
        return self.body["metadata"].get("generation")

    def held(self) -> list[Body]:
        return [e for e in self.entries.values() if in_force(e)]

    # --- saying what happened -------------------------------------------------------------

    def condition(self, type_: str, state: str | bool, reason: str, message: str = "") -> None:
        self.status["conditions"] = set_condition(
            self.status.get("conditions"),
            type_,
            state,
            reason,
            message,
            generation=self.generation,
            now=self.now,
        )

    def root_cause(self) -> None:
        """RootCauseIdentified from the hypotheses, unless a person stated the cause (that wins).
        Before any evidence is in (no target, or not collected yet) it stays Unknown: "no
        hypothesis" would claim the evidence was looked at."""
        hypotheses = self.status.get("hypotheses") or []
        stated = (self.spec.get("resolution") or {}).get("rootCause")
        if not stated and not hypotheses and not is_true(self.status.get("conditions"), "EvidenceCollected"):  # fmt: skip
            return
        found, why, words = root_cause_identified(hypotheses, self.spec)
        self.condition("RootCauseIdentified", found, why, words)

    def say(
        self, reason: str, message: str, *, warning: bool = False, timeline: bool = True
    ) -> None:
        """One thing that happened: a timeline entry, an Event on the incident, a log line."""
        if timeline:
            add_timeline(self.status, reason, message, self.now)
        self.api.event(self.body, reason, message, warning=warning)
        (log.warning if warning else log.info)("%s: %s: %s", self.holder, reason, message)

    def enter(
        self,
        phase: str,
        message: str,
        *,
        reason: str = "",
        event: str = "",
        warning: bool = False,
    ) -> bool:
        """Move to PHASE (timeline entry and timestamp); an Event and a log line when it moved.

        The Event has REASON (default the phase) and EVENT (default MESSAGE) as its words.
        """
        if not enter_phase(self.status, phase, message, self.now):
            return False
        self.api.event(self.body, reason or phase, event or message, warning=warning)
        (log.warning if warning else log.info)("%s: %s: %s", self.holder, phase, message)
        return True

    def outside(self, what: str, run: Callable[[], Any],
                record: Callable[[IncidentContext, Any], None]) -> bool:  # fmt: skip
        """Ask for RUN (a call to an outside service) after this pass's status write, its
        result merged by RECORD into a fresh pass's context. False, and nothing asked, when
        WHAT is being called already (engine.outside.busy) or this pass may not call out."""
        key = (self.uid, what)
        if self.api.read_only or outside.busy(key):
            return False
        self.calls.append(outside.Call(key, run, record))
        return True

    def requeue_after(self, seconds: float) -> None:
        self.result = self.result.merge(Result(requeue_after=max(seconds, 0.0)))

    def retry(self) -> None:
        self.result.retry = True

    def finish(self) -> None:
        """Write the entries into the status (once, in the order they were first made)."""
        self._keep_pages()
        self.status["mitigations"] = list(self.entries.values())
        ticket.sync_tickets(self.status, self.status["mitigations"])  # status.tickets[]

    def _keep_pages(self) -> None:
        """Each page in force keeps its channels as the policy has them now, so that its
        "resolved" still goes out if the policy is deleted before the incident ends."""
        if self.policy is None:
            return
        for entry in self.entries.values():
            if entry.get("action") == notify.Notify.type and in_force(entry):
                kept = notify.sent_to(entry.get("key") or "", self.policy)
                if kept:
                    entry[notify.SENT_TO] = kept


def policy_by_ref(world: World, ref: dict[str, str] | None) -> Body | None:
    """The policy STATUS.policyRef names, if the indexes still have it."""
    if not ref:
        return None
    for body in world.policies:
        meta = body.get("metadata") or {}
        if (body.get("kind"), meta.get("name"), meta.get("namespace")) == (
            ref.get("kind"), ref.get("name"), ref.get("namespace"),
        ):  # fmt: skip
            return body
    return None
