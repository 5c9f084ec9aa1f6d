"""Undo from the ledgers: what an incident holds is read off the objects, not only its status.

The status is written last in a pass; a crash between a change and that write
leaves a change that only the object's `aiincident.io/ledger` knows about. So the
final undo (resolution, deletion) reads every object the incident may have
touched (its targets, the objects its entries name, the objects its policy's
actions name) and releases every holder of this incident found there, in the
reverse order of apply. Entries the status never recorded are added, as Reverted,
so the record says what was found. A failure is returned in words, never ignored.
"""

from __future__ import annotations

from typing import Any

from .. import actions, ledger
from ..actions import Outcome, notify
from ..conditions import now_iso
from ..errors import APIError
from ..lifecycle import add_timeline
from ..resources import HELD_KINDS, Ref
from .context import EntryId, IncidentContext, in_force
from .decide import spec_for
from .steps import action_context, action_of, call_key, calls_out

Body = dict[str, Any]


def candidates(ctx: IncidentContext, labelled: bool = False) -> list[Ref]:
    """Every object the incident may hold, in a stable order (targets first).

    LABELLED adds every object of the namespace that carries the ledger's held label:
    what a crash before the first status write changed, even when neither the status
    nor a policy names it any more.
    """
    refs: list[Ref] = []

    def add(ref: Ref) -> None:
        if ref not in refs and ref.kind != "AIIncident":
            refs.append(ref)

    for target in ctx.targets:
        add(Ref(target.get("kind", "Deployment"), ctx.namespace, target["metadata"]["name"]))
    for target in ctx.status.get("targets") or []:
        add(Ref(target.get("kind", "Deployment"), ctx.namespace, target["name"]))
    for entry in ctx.entries.values():
        add(Ref.parse(ctx.namespace, entry["target"]))
        for name in entry.get("objects") or []:
            add(Ref.parse(ctx.namespace, name))
    for response in ctx.policy_spec.get("responses") or []:
        for spec in response.get("actions") or []:
            action = action_of({"action": spec["type"]})
            for target in ctx.targets or [{}]:
                try:
                    for ref in action.touches(action_context(ctx, spec, target)):
                        add(ref)
                except APIError:
                    continue  # what cannot be listed is still found through the entries
    for kind in HELD_KINDS if labelled else ():
        if not ctx.api.kind_installed(kind):
            continue
        try:
            for obj in ctx.api.list(kind, ctx.namespace, ledger.HELD_LABEL):
                if ledger.held_by(obj, ctx.holder):
                    add(Ref(kind, ctx.namespace, obj["metadata"]["name"]))
        except APIError:
            continue  # no right to list it: the entries and the policy still name it
    return refs


def holdings(ctx: IncidentContext, labelled: bool = True) -> dict[str, list[str]]:
    """Action key -> the objects ("Kind/name") whose ledgers name this incident with it."""
    found: dict[str, list[str]] = {}
    bodies = {
        Ref(t.get("kind", "Deployment"), ctx.namespace, t["metadata"]["name"]): t
        for t in ctx.targets
    }
    for ref in candidates(ctx, labelled):
        obj = bodies[ref] if ref in bodies else ctx.api.get(ref)
        for key in ledger.held_by(obj or {}, ctx.holder):
            found.setdefault(key, []).append(str(ref))
    return found


def revert(ctx: IncidentContext, keep: set[EntryId], *, sweep: bool = False) -> list[str]:
    """Undo held entries not in KEEP, newest first; with SWEEP, whatever the ledgers hold too.

    Returns the failures, in words.
    """
    found = holdings(ctx) if sweep else {}
    kept_keys = {key for key, _ in keep}
    todo: list[tuple[EntryId, Body, list[str]]] = []
    for entry_id, entry in reversed(list(ctx.entries.items())):
        key = entry.get("key") or entry["action"]
        extra = [] if key in kept_keys else found.pop(key, [])
        claimed = bool(entry.get(actions.SENDING))  # a page that may have gone out
        if entry_id in keep or (not in_force(entry) and not extra and not claimed):
            continue
        objects = list(entry.get("objects") or [])
        todo.append((entry_id, entry, objects + [o for o in extra if o not in objects]))
    for key, objects in found.items():
        if key in kept_keys:
            continue
        # Changed before a crash and never written to the status: known from the ledger only.
        entry = {"action": action_of({"key": key}).type, "key": key, "target": objects[0]}
        ctx.entries[(key, objects[0])] = entry
        todo.append(((key, objects[0]), entry, objects))
        ctx.say(
            "LedgerHoldingFound",
            f"{key} held on {', '.join(objects)} with no status entry (a crash before the "
            "status write): undoing it from the ledger",
            warning=True,
        )
    for _entry_id, entry, objects in todo:
        failure = _revert_one(ctx, entry, objects)
        if failure:
            # Undo is a stack: what was applied before this stays until this is undone
            # (traffic never returns to a model whose capacity could not be restored).
            return [failure]
    return []


def _revert_one(ctx: IncidentContext, entry: Body, objects: list[str]) -> str:
    action = action_of(entry)
    key = entry.get("key") or entry["action"]
    spec = spec_for(ctx.policy_spec, entry)
    name = entry["target"].partition("/")[2]
    target = {"kind": entry["target"].partition("/")[0], "metadata": {"name": name}}
    actx = action_context(ctx, spec or {"type": action.type}, target, key=key, entry=entry)
    if spec is None and entry.get(notify.SENT_TO):
        actx = notify.as_sent(actx, entry[notify.SENT_TO])  # the policy is gone or changed
    if calls_out(ctx, action):
        return _undo_after_the_write(ctx, (key, entry["target"]), action, actx, objects)
    try:
        outcome = action.revert(actx, objects)
    except APIError as err:
        return f"{entry['action']} on {entry['target']}: {err}"
    _reverted(ctx, entry, outcome, objects)
    return ""


def _undo_after_the_write(
    ctx: IncidentContext,
    entry_id: EntryId,
    action: actions.Action,
    actx: actions.ActionContext,
    objects: list[str],
) -> str:
    """Ask for an outside action's undo (a "resolved" page) after the status write; the
    entry is Reverted once its call returns (engine.outside). In words, why it cannot be
    asked now: its call is under way."""

    def call() -> Outcome | APIError:
        try:
            return action.revert(actx, objects)
        except APIError as err:
            return err

    def record(fresh: IncidentContext, outcome: Outcome | APIError) -> None:
        entry = fresh.entries.get(entry_id)
        if entry is None:
            return
        entry.pop(actions.SENDING, None)
        if isinstance(outcome, APIError):
            entry["message"] = f"undo: {outcome}"
            fresh.retry()
            return
        _reverted(fresh, entry, action.merged(entry, outcome), objects)
        fresh.requeue_after(0.0)  # the pass that sees it undone goes on (resolved, deleted)

    if not ctx.outside(call_key(entry_id), call, record):
        return f"{action.type} on {entry_id[1]}: its call is under way; undone once it returns"
    ctx.entries[entry_id].update(action.claim(actx, undo=True).keep)
    return ""


def _reverted(ctx: IncidentContext, entry: Body, outcome: Outcome, objects: list[str]) -> None:
    entry.update(outcome.keep)  # what an outside service answered (a status page's state)
    entry.update(state="Reverted", revertedAt=now_iso(ctx.now), message=outcome.message)
    if objects:
        entry["objects"] = objects
    add_timeline(
        ctx.status,
        "MitigationReverted",
        f"{entry['action']} on {entry['target']}: {outcome.message}",
        ctx.now,
    )
