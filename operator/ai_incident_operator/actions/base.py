"""The action interface, and `FieldAction`: actions that change fields of existing objects.

An action has `apply`, `revert` and `observe`. Most actions only set fields of
objects that exist (replicas, a selector, weights, env vars, a sidecar); they
subclass `FieldAction` and only say which fields get which values (`changes`).
`FieldAction` records the originals in each object's ledger in the same write,
retries on conflicts, repairs a mitigation someone reverted, and undoes exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import events, kube, ledger
from ..kube import Ref

log = logging.getLogger(__name__)
REGISTRY: dict[str, Action] = {}


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

    def __post_init__(self) -> None:
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
class Outcome:
    state: str  # Applied | Reverted | Failed | DryRun | Skipped
    message: str
    objects: list[str] = field(default_factory=list)  # "Kind/name", in the order changed
    changed: bool = False  # whether anything was written
    contested: list[str] = field(default_factory=list)  # objects found reverted and re-applied


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

    def apply(self, ctx: ActionContext) -> Outcome:
        raise NotImplementedError

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        raise NotImplementedError


class FieldAction(Action):
    """An action that sets fields on existing objects, with the ledger for exact undo."""

    def changes(self, ctx: ActionContext) -> list[Change]:
        """The fields to set, per object; raise ActionError or ActionSkipped when it cannot."""
        raise NotImplementedError

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
        summary = "; ".join(f"{c.ref}: {c.summary}" for c in changes)
        objects = [str(c.ref) for c in changes]
        if ctx.dry_run:
            return Outcome("DryRun", f"would set {summary}", objects)
        key = ctx.key
        outcome = Outcome("Applied", summary, objects)
        for change in changes:
            reverted: list[str] = []

            def mutate(obj: dict, change: Change = change, reverted: list[str] = reverted) -> bool:
                reverted[:] = ledger.contested(obj, ctx.holder, key)
                values = change.derive(obj) if change.derive else change.values
                return ledger.hold(obj, ctx.holder, key, values)

            current = ctx.target if change.ref == ctx.target_ref else None
            obj, changed = kube.update(change.ref, mutate, current=current)
            if obj is None:
                return Outcome("Failed", f"{change.ref} not found", objects)
            if reverted:
                outcome.contested.append(str(change.ref))
                message = (
                    f"{ctx.holder}: {self.type} was reverted ({', '.join(reverted)}); re-applied"
                )
                events.record(obj, "MitigationContested", message, warning=True)
                events.record(
                    ctx.incident, "MitigationContested", f"{change.ref}: {message}", warning=True
                )
            elif changed:
                events.record(obj, "Mitigated", f"{ctx.holder}: {self.type}: {change.summary}")
            outcome.changed |= changed
        extra = self.verify(ctx)
        if extra:
            outcome.message += f" ({extra})"
        return outcome

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        key = ctx.key
        done: list[str] = []
        for name in reversed(objects):  # undo in the reverse order of apply
            kind, _, obj_name = name.partition("/")
            ref = Ref(kind, ctx.namespace, obj_name)
            obj, changed = kube.update(ref, lambda o: ledger.release(o, ctx.holder, key))
            if obj is not None and changed:
                events.record(obj, "MitigationReverted", f"{ctx.holder}: {self.type} undone")
                done.append(name)
        return Outcome(
            "Reverted",
            f"undone on {', '.join(done) or 'nothing (already undone)'}",
            objects,
            bool(done),
        )
