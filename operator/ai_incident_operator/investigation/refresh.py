"""The evidence of an open incident, gathered apart from the mitigation pass and merged after.

Run by the operator's scheduler when `lifecycle.evidence_due_in` says so (on triage,
then every EVIDENCE_REFRESH): the collection (the apiserver, Prometheus) runs under
no lock; only the merge into a fresh read of the status (`engine.amend`) takes the
incident's lock, so a slow Prometheus can never delay a response. The changes
people made to the targets and their ConfigMaps (`changes`) are looked for too.

Then, the same way, the reproduction (`reproduce`) when its policy has one: once the
incident is triaged, and again when its examples or the policy's reproduction change
(`status.reproduction.examples`, a digest, so that a restart does not send them
again); and while the incident is Resolving with `resolution.verification.examples`,
when the engine's `verified` asks for it (`status.reproduction.fix.requestedAt`):
the examples on the fixed model, recorded for `verified` to read.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from .. import egress, engine
from ..access import Access
from ..conditions import REPRODUCED
from ..errors import APIError
from ..lifecycle import EVIDENCE_REFRESH, add_timeline, evidence_due_in, evidence_refresh, is_open
from ..resources import Ref
from ..times import iso, parse_time
from . import changes, example_store, hypotheses, investigate, reproduce
from .store import NotOurs

log = logging.getLogger(__name__)
Body = dict[str, Any]
# Seconds between looks at whether an incident's examples changed (each look reads them:
# the incident's examples ConfigMap and the policy's examplesFrom).
EXAMPLES_RECHECK = 30.0
EXAMPLES_AWAITED = 5.0  # sooner while there are none yet (a report stores them just after)
_looked: dict[tuple[str, str], float] = {}  # when each incident's examples are read next
_looked_lock = threading.Lock()


def refresh(namespace: str, name: str, world: engine.World, api: Access) -> float | None:
    """Collect the evidence, then reproduce, if due; seconds until due again (None: closed)."""
    try:
        incident = api.get(Ref("AIIncident", namespace, name))
    except APIError:
        return EVIDENCE_REFRESH.total_seconds()
    status = (incident or {}).get("status") or {}
    if incident is None or not status.get("phase") or not is_open(status):
        with _looked_lock:
            _looked.pop((namespace, name), None)
        return None
    if not status.get("triagedAt") and not status.get("targets"):
        return None  # nothing to look at yet: triage brings it back
    policy = engine.policy_by_ref(world, status.get("policyRef"))
    evidence_in = _evidence(incident, status, policy, world, api)
    reproduce_in = _reproduction(incident, status, policy, world, api)
    times = [t for t in (evidence_in, reproduce_in) if t is not None]
    return min(times) if times else None


def _evidence(
    incident: Body, status: Body, policy: Body | None, world: engine.World, api: Access
) -> float:
    namespace, name = incident["metadata"]["namespace"], incident["metadata"]["name"]
    now = datetime.now(UTC)
    due_in = evidence_due_in(status, now)
    if due_in > 0:
        return due_in
    policy_spec = (policy or {}).get("spec") or {}
    targets = _read(api, namespace, status)
    # The evidence ConfigMap is rewritten whole: the reproduction's keys are carried over.
    kept = reproduce.kept_keys(api, incident) if status.get("reproduction") else {}
    found = investigate.gather(incident, status, policy_spec, targets, now)
    if kept and not found.failure:
        try:
            reproduce.write_keys(api, incident, kept)
        except (APIError, NotOurs) as err:
            log.warning("reproduction of %s not kept in the evidence: %s", name, err)

    def merge(ctx: engine.IncidentContext) -> None:
        if is_open(ctx.status):
            investigate.record(ctx.status, found, ctx.condition, now)
            ctx.root_cause()  # the new hypotheses, unless a person stated the cause
            # A quiet incident has no pass: people's changes are looked for here too, on
            # objects read under the lock (an older read would undo a pass's newer look).
            for change in changes.observe(api, ctx.status, namespace, _read(api, namespace, status),
                                          ctx.now, configmaps=True):  # fmt: skip
                api.event(ctx.body, change.type, change.message)

    engine.amend(namespace, name, merge, world, api)
    return evidence_refresh({**status, "evidenceCollectedAt": iso(now)}).total_seconds()


# --- The reproduction ---------------------------------------------------------------------


def _reproduction(
    incident: Body, status: Body, policy: Body | None, world: engine.World, api: Access
) -> float | None:
    """Send the examples when due (a first run, changed examples, a fix to validate)."""
    spec = ((policy or {}).get("spec") or {}).get("reproduction")
    if not isinstance(spec, dict) or not status.get("triagedAt"):
        return None
    namespace, name = incident["metadata"]["namespace"], incident["metadata"]["name"]
    record = status.get("reproduction") or {}
    fix = record.get("fix") or {}
    fix_due = status.get("phase") == "Resolving" and fix.get("requestedAt") and not fix.get("at")
    key = (namespace, name)
    if not fix_due:
        with _looked_lock:
            due = _looked.get(key)
            if due is not None and time.monotonic() < due:
                return due - time.monotonic()
    policy_spec = (policy or {}).get("spec") or {}
    examples, problems = example_store.read(api, incident, policy_spec)
    again = EXAMPLES_RECHECK if examples else EXAMPLES_AWAITED
    with _looked_lock:
        _looked[key] = time.monotonic() + again
    digest = reproduce.digest(examples, spec)
    first_due = record.get("examples") != digest
    if not first_due and not fix_due:
        return again
    # The policy's kind decides whose URL rules apply (egress), as for the evidence.
    namespaced = egress.scope_of_ref(status.get("policyRef"), namespace) is not None
    now = datetime.now(UTC)
    if fix_due:
        # The fix: only the current (fixed) model is asked.
        result = reproduce.run(examples, spec, namespace, namespaced, ("current",))
        _merge_fix(incident, result, fix["requestedAt"], world, api)
        return again
    result = reproduce.run(examples, spec, namespace, namespaced)
    written = ""
    try:
        title = f"Reproduction of incident {namespace}/{name}"
        data = {"reproduction.md": reproduce.report(result, title, iso(now), problems)}
        if examples:
            data["examples.jsonl"] = _bounded_jsonl(examples)
        reproduce.write_keys(api, incident, data)
    except (APIError, NotOurs) as err:
        written = f"; reproduction.md not written: {egress.sanitise(getattr(err, 'reason', None) or err, 160)}"
    state, reason, message = reproduce.verdict(result, problems)
    regression = reproduce.regression(result)

    def merge(ctx: engine.IncidentContext) -> None:
        if not is_open(ctx.status):
            return
        before = ctx.status.get("reproduction") or {}
        new = reproduce.status_record(result, digest, now, iso)
        if before.get("fix"):
            new["fix"] = before["fix"]
        ctx.status["reproduction"] = new
        ctx.condition(REPRODUCED, state, reason, message + written)
        if state == "True" and before.get("examples") is None:
            add_timeline(ctx.status, "Reproduced", message, now)
        if regression is not None:
            failing, passing, total = regression
            template, image = hypotheses.changed_in(ctx.status.get("hypotheses") or [])
            fact = hypotheses.Reproduction(failing, passing, total, template, image)
            detected = parse_time(ctx.status.get("detectedAt")) or now
            ctx.status["hypotheses"] = hypotheses.with_reproduction(
                ctx.status.get("hypotheses") or [], fact, detected
            )
            ctx.root_cause()

    engine.amend(namespace, name, merge, world, api)
    return again


def _merge_fix(
    incident: Body, result: reproduce.Run, requested_at: str, world: engine.World, api: Access
) -> None:
    now = datetime.now(UTC)
    record = reproduce.fix_record(result, requested_at, now, iso)

    def merge(ctx: engine.IncidentContext) -> None:
        current = ctx.status.get("reproduction") or {}
        # Only the request this run answered: a newer one waits for its own run.
        if (current.get("fix") or {}).get("requestedAt") != requested_at:
            return
        ctx.status["reproduction"] = {**current, "fix": record}

    meta = incident["metadata"]
    engine.amend(meta["namespace"], meta["name"], merge, world, api)


def _bounded_jsonl(examples: list[Any]) -> str:
    from .examples import to_jsonl

    text = to_jsonl(examples)
    limit = 128 * 1024
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit("\n", 1)[0] + "\n"
    return cut + '{"truncated": true}\n'


def _read(api: Access, namespace: str, status: Body) -> list[Body]:
    """The targets STATUS names, as they are now (those that can be read)."""
    targets = []
    for target in status.get("targets") or []:
        try:
            found = api.get(Ref(target.get("kind", "Deployment"), namespace, target["name"]))
        except APIError:
            found = None
        if found:
            targets.append(found)
    return targets
