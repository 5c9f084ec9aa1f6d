"""The action interface, and `FieldAction`: actions that change fields of existing objects.

An action has `apply`, `revert` and `observe`. Most actions only set fields of
objects that exist (replicas, a selector, weights, env vars, a sidecar); they
subclass `FieldAction` and only say which fields get which values (`changes`).
`FieldAction` records the originals in each object's ledger in the same write,
retries on conflicts, repairs a mitigation someone reverted, and undoes exactly.
Actions reach the cluster only through `ctx.api` (an `access.Access`), so the same
code runs for real, read-only for `simulate`, and on an in-memory fake in unit tests.
Pure at import: no kopf, no kubernetes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import ledger, managers
from ..access import Access
from ..errors import APIError
from ..fieldpath import get
from ..resources import Ref

log = logging.getLogger(__name__)
REGISTRY: dict[str, Action] = {}
SENDING = "sending"  # an outside action's entry: a call claimed, its outcome not yet written


class ActionError(Exception):
    """The action cannot be applied as the policy says (e.g. the fallback does not exist)."""


class ActionSkipped(Exception):
    """The action does not apply here (e.g. the PrometheusRule CRD is not installed)."""


@dataclass
class ActionContext:
    """Everything an action may look at. `target` is the model workload (a Deployment dict)."""

    incident: dict[str, Any]  # the AIIncident body
    target: dict[str, Any]
    spec: dict[str, Any]  # this action's entry in the policy
    policy: dict[str, Any]  # the policy's spec
    dry_run: bool = False
    key: str = ""  # the action's key as recorded when applied; the engine sets it
    api: Access = None  # type: ignore[assignment]  # None: the real cluster
    # "Kind/name" -> {path: encoded original}, as kept in the status entry: used when an
    # object's ledger is gone while the incident still holds it (never the current value).
    known_originals: dict[str, dict[str, Any]] = field(default_factory=dict)
    # This action's status entry as last recorded (a copy): what an action that talks to
    # an outside service kept there (e.g. a status page's incident id, `Outcome.keep`).
    entry: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.api is None:
            from .. import kube  # the real cluster, for callers that bring no Access

            self.api = kube.cluster()
        if not self.key and self.spec.get("type") in REGISTRY:
            self.key = REGISTRY[self.spec["type"]].key(self.spec)

    @property
    def namespace(self) -> str:
        return self.incident["metadata"]["namespace"]

    @property
    def holder(self) -> str:
        return f"{self.namespace}/{self.incident['metadata']['name']}"

    @property
    def target_ref(self) -> Ref:
        return Ref(
            self.target.get("kind", "Deployment"), self.namespace, self.target["metadata"]["name"]
        )


@dataclass
class Revert:
    """A held value found reverted on one object, before it was re-applied."""

    object: str  # "Kind/name"
    paths: list[str]
    manager: str  # the field manager that last wrote them (the likely actor); "" unknown


@dataclass
class Outcome:
    state: str  # Applied | Reverted | Failed | DryRun | Skipped
    message: str
    objects: list[str] = field(default_factory=list)  # "Kind/name", in the order changed
    changed: bool = False  # whether anything was written
    contested: list[str] = field(default_factory=list)  # objects found reverted and re-applied
    # What was found reverted on each of them, and by whom: the engine counts the reverts
    # (a contest, backoff) and reports them, aggregated (engine.contest).
    reverts: list[Revert] = field(default_factory=list)
    # "Kind/name" -> {path: encoded original} of the fields this action holds there.
    originals: dict[str, dict[str, Any]] = field(default_factory=dict)
    relost: list[str] = field(default_factory=list)  # objects whose ledger had been removed
    # Seconds after which the action wants another look (what it changed has not yet
    # taken hold, e.g. an HPA that has not reported yet); None: it has.
    recheck: float | None = None
    # Fields written on this action's status entry (ids an outside service answered),
    # read back through `ActionContext.entry` on later passes and on undo.
    keep: dict[str, Any] = field(default_factory=dict)


@dataclass
class Change:
    """Field values one action wants on one object."""

    ref: Ref
    values: dict[str, Any]
    summary: str  # what a person reads, e.g. "replicas 3 -> 0"
    # When the values depend on the object itself (a route's other destinations), how to
    # work them out again from the object re-read after a write conflict.
    derive: Callable[[dict], dict[str, Any]] | None = None


class Action:
    """One mitigation type. Subclasses set `type` and are registered on definition."""

    type: ClassVar[str]
    # Done once per incident rather than once per target (a notification, a rule).
    per_incident: ClassVar[bool] = False
    # Not repeated while Applied (re-sending a notification is noise); others are re-applied
    # on every pass, which is free when nothing changed and repairs what someone reverted.
    once: ClassVar[bool] = False
    # Calls a service outside the cluster (a webhook, a status page, a tracker), which may
    # take seconds to time out: planned after the changes to the objects, and run after
    # the pass's status write, outside the incident's lock (engine.outside), so a dead
    # endpoint never delays taking a model offline nor recording that it was.
    outside: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type" in cls.__dict__:
            REGISTRY[cls.type] = cls()

    def key(self, spec: dict[str, Any]) -> str:
        """Names this action among the incident's, stable across re-plans."""
        return self.type

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        """Problems with SPEC that the CRD schema cannot catch (pure)."""
        return []

    def touches(self, ctx: ActionContext) -> list[Ref]:
        """Every object this action may change for CTX's target (so undo can find them)."""
        return []

    def apply(self, ctx: ActionContext) -> Outcome:
        raise NotImplementedError

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        raise NotImplementedError

    def calls(self, ctx: ActionContext) -> bool:
        """Whether an outside action's apply would call its service now (pure): one that
        would only say that all is as it was runs in the pass, with no call to wait for."""
        return True

    def claim(self, ctx: ActionContext, undo: bool = False) -> Outcome:
        """An outside action's entry while its call (apply, or revert with UNDO) is under way:
        written before the call is made. `keep` may hold a `SENDING` mark that a pass after a
        restart reads (Notify: a page that may have gone out)."""
        return Outcome("Skipped", f"{self.type}: {'undo' if undo else 'call'} under way")

    def merged(self, entry: dict[str, Any], outcome: Outcome) -> Outcome:
        """OUTCOME of a call made apart from the pass, to be recorded on ENTRY as it is now
        (another call's outcome may have been recorded there meanwhile)."""
        return outcome


class FieldAction(Action):
    """An action that sets fields on existing objects, with the ledger for exact undo."""

    def changes(self, ctx: ActionContext) -> list[Change]:
        """The fields to set, per object; raise ActionError or ActionSkipped when it cannot."""
        raise NotImplementedError

    def touches(self, ctx: ActionContext) -> list[Ref]:
        return [ctx.target_ref] if ctx.target.get("metadata", {}).get("name") else []

    def verify(self, ctx: ActionContext) -> str:
        """Extra words on how the change took hold (e.g. what the HPA reports); '' for none."""
        return ""

    def apply(self, ctx: ActionContext) -> Outcome:
        try:
            changes = self.changes(ctx)
        except ActionSkipped as err:
            return Outcome("Skipped", str(err))
        except ActionError as err:
            return Outcome("Failed", str(err))
        except APIError as err:
            return Outcome("Failed", f"reading what to change: {err}")
        summary = "; ".join(f"{c.ref}: {c.summary}" for c in changes)
        objects = [str(c.ref) for c in changes]
        if ctx.dry_run:
            return Outcome("DryRun", f"would set {summary}", objects)
        outcome = Outcome("Applied", summary, objects)
        for change in changes:
            try:
                self._hold(ctx, change, outcome)
            except ActionError as err:
                outcome.state, outcome.message = "Failed", str(err)
                return outcome
            except APIError as err:
                outcome.state = "Failed"
                outcome.message = f"{change.ref}: {err}"
                return outcome
            if outcome.state == "Failed":
                return outcome
        extra = self.verify(ctx)
        if extra:
            outcome.message += f" ({extra})"
        return outcome

    def _hold(self, ctx: ActionContext, change: Change, outcome: Outcome) -> None:
        """Write CHANGE with its ledger entry; note what was contested or lost on OUTCOME."""
        key, name = ctx.key, str(change.ref)
        reverted: list[str] = []
        actor: list[str] = [""]
        lost: list[bool] = [False]

        def mutate(obj: dict) -> bool:
            reverted[:] = ledger.contested(obj, ctx.holder, key)
            if reverted:  # read before the write moves the fields to the operator
                actor[0] = managers.likely_actor(obj, reverted)
            known = ctx.known_originals.get(name)
            lost[0] = bool(known) and ledger.holds(obj, ctx.holder, key) is None
            values = change.derive(obj) if change.derive else change.values
            return ledger.hold(obj, ctx.holder, key, values, known if lost[0] else None)

        current = ctx.target if change.ref == ctx.target_ref else None
        obj, changed = ctx.api.update(change.ref, mutate, current=current)
        if obj is None:
            outcome.state, outcome.message = "Failed", f"{change.ref} not found"
            return
        outcome.originals[name] = ledger.held_originals(obj, ctx.holder, key)
        if lost[0]:
            outcome.relost.append(name)
            message = (
                f"{ctx.holder}: the {ledger.ANNOTATION} annotation was removed while {self.type} "
                "held fields here; the originals kept in the incident's status were restored "
                "to it (the current values were not taken as the originals)"
            )
            ctx.api.event(obj, "LedgerRestored", message, warning=True)
            ctx.api.event(ctx.incident, "LedgerRestored", f"{change.ref}: {message}", warning=True)
        elif reverted:
            # Not an Event per revert: the engine reports them, one Event per interval.
            outcome.contested.append(name)
            outcome.reverts.append(Revert(name, list(reverted), actor[0]))
        elif changed:
            ctx.api.event(obj, "Mitigated", f"{ctx.holder}: {self.type}: {change.summary}")
        outcome.changed |= changed

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        key = ctx.key
        done: list[str] = []
        for name in reversed(objects):  # undo in the reverse order of apply
            ref = Ref.parse(ctx.namespace, name)
            known = ctx.known_originals.get(name) or {}
            restored: list[bool] = []

            def mutate(obj: dict, known: dict = known, restored: list = restored) -> bool:
                if known and ledger.holds(obj, ctx.holder, key) is None:
                    # The ledger lost this holder (someone removed the annotation): take it
                    # back with the originals the status kept, then let go as usual.
                    current = {p: get(obj, p) for p in known}
                    ledger.hold(obj, ctx.holder, key, current, known)
                    restored.append(True)
                return ledger.release(obj, ctx.holder, key)

            obj, changed = ctx.api.update(ref, mutate)
            if obj is not None and restored:
                message = (
                    f"{ctx.holder}: the {ledger.ANNOTATION} annotation no longer named "
                    f"{self.type}; undone from the originals kept in the incident's status"
                )
                ctx.api.event(obj, "LedgerRestored", message, warning=True)
                ctx.api.event(ctx.incident, "LedgerRestored", f"{ref}: {message}", warning=True)
            if obj is not None and changed:
                ctx.api.event(obj, "MitigationReverted", f"{ctx.holder}: {self.type} undone")
                done.append(name)
        return Outcome(
            "Reverted",
            f"undone on {', '.join(done) or 'nothing (already undone)'}",
            objects,
            bool(done),
        )
