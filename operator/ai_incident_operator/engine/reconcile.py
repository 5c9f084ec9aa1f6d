"""Reconcile one incident: read it, decide, act, write the whole status once.

Level-triggered and restart-safe: `reconcile` reads the incident afresh, decides
from its spec, the winning policy and the ledgers on the objects (`decide`), hands
the context to mitigate / resolve / close, and writes the status once (again from
a fresh read on a conflict). Run it again after a crash at any line and it lands
in the same state. `finalize` undoes, on deletion, whatever the ledgers say the
incident holds, and says what it still waits for. Called by `handlers`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .. import policy as mitigation_policy
from .. import retry
from ..access import Access
from ..errors import Forbidden
from ..investigation import changes
from ..keylocks import KeyLocks
from ..lifecycle import detected_status, merge_patch
from ..resources import Ref
from . import escalation, outside
from .acknowledge import acknowledge
from .close import close_if_reviewed
from .context import IncidentContext, Result, World, log, policy_by_ref
from .decide import decide
from .mitigate import mitigate
from .regulatory import regulatory_clock
from .resolve import resolve
from .targets import resolve_targets
from .undo import revert
from .untargeted import without_target

Body = dict[str, Any]
ROUNDS = 3  # passes in one reconcile, each after the outcomes of the previous one's calls out
_locks = KeyLocks()  # one pass at a time per incident


def _cluster() -> Access:
    from .. import kube  # the real cluster only where no Access was given

    return kube.cluster()


def _write_status(api: Access, incident: Body, before: Body, status: Body) -> None:
    """STATUS as a merge patch against BEFORE, conditional on the version read; nothing if equal."""
    if status != before:
        meta = incident["metadata"]
        ref = Ref("AIIncident", meta["namespace"], meta["name"])
        api.patch_status(ref, merge_patch(before, status), meta["resourceVersion"])


def reconcile(
    namespace: str,
    name: str,
    world: World,
    body: Body | None = None,
    api: Access | None = None,
    now: datetime | None = None,
) -> Result:
    """Bring one incident up to date; the Result says when to run again.

    BODY, when the caller has just received it, saves the first read; a stale one
    costs a Conflict on the status write and a fresh read.
    """
    api = api or _cluster()
    ref = Ref("AIIncident", namespace, name)
    seed = [body]
    claimed: list[escalation.Claim] = []  # escalation pages the written status claimed
    calls: list[outside.Call] = []  # the other calls out, claimed likewise

    def attempt() -> Result:
        claimed.clear()
        calls.clear()
        incident, seed[0] = seed[0] or api.get(ref), None
        if incident is None or incident["metadata"].get("deletionTimestamp"):
            return Result()
        when = now or datetime.now(UTC)
        before = incident.get("status") or {}
        status = copy.deepcopy(before)
        if not status.get("phase"):
            status = detected_status(incident, when)
            api.event(incident, "Detected", status["timeline"][0]["message"])
        ctx = IncidentContext(api, incident, status, world, when)
        advance(ctx)
        acknowledge(ctx)  # after the pass's own pages: what it just paged hears the ack too
        ctx.root_cause()  # in every phase: a cause stated during the review counts too
        if ctx.entries or "mitigations" in status:
            ctx.finish()
        _write_status(api, incident, before, status)
        claimed[:] = escalation.claim(ctx, before)
        calls[:] = outside.claim(ctx.calls)
        return ctx.result

    for _ in range(ROUNDS):
        with _locks.hold((namespace, name)):
            result = retry.on_conflict(attempt, what=f"the status of incident {namespace}/{name}")
        if world.call_later is not None and (claimed or calls):
            send = functools.partial(_send, namespace, name, world, api, now, list(claimed),
                                     list(calls))  # fmt: skip
            again = functools.partial(reconcile, namespace, name, world, api=api, now=now)
            requeue = functools.partial(world.requeue, namespace, name) if world.requeue else None
            try:
                world.call_later(functools.partial(_after_the_write, ref, send, again, requeue))
                return result
            except RuntimeError:  # the pool is shut down (the operator stops): here, then
                pass
        asked = _send(namespace, name, world, api, now, claimed, calls)
        if asked is None:
            return result
        if asked.retry or asked.requeue_after != 0:
            return result.merge(asked)
        # The calls' outcomes want a pass now (what is in force, what was just paged): here.
    return result.merge(Result(requeue_after=0.0))


def _send(
    namespace: str,
    name: str,
    world: World,
    api: Access,
    now: datetime | None,
    claimed: list[escalation.Claim],
    calls: list[outside.Call],
) -> Result | None:
    """Post what the written status claimed, outside the lock (at most once: engine.escalation,
    engine.outside), and merge the outcomes; what they ask of the caller."""
    escalation.send(api, claimed, lambda change: amend(namespace, name, change, world, api))
    return outside.run(calls, lambda change: amend(namespace, name, change, world, api, now))


def _after_the_write(
    ref: Ref,
    send: Callable[[], Result | None],
    again: Callable[[], Result],
    requeue: Callable[[Result], None] | None,
) -> None:
    """World.call_later's job: the calls out (SEND), then what their outcomes ask: a pass
    now (AGAIN, which may hand on calls of its own), or a retry or a recheck (REQUEUE, the
    caller's scheduler)."""
    try:
        asked = send()
        if asked is not None and not asked.retry and asked.requeue_after == 0:
            asked = again()
    except Exception as err:  # the apiserver went away: the claims stay, a pass retries
        log.warning("incident %s/%s: after its calls out: %s; again later", ref.namespace,
                    ref.name, err)  # fmt: skip
        asked = Result(retry=True)
    if asked is not None and requeue is not None:
        requeue(asked)


def advance(ctx: IncidentContext) -> None:
    """One pass of the state machine over CTX."""
    status, spec = ctx.status, ctx.spec
    status["observedGeneration"] = ctx.generation
    if status.get("phase") in ("Resolved", "Closed"):
        close_if_reviewed(ctx)
        # Its levels' "resolved" (claimed when it was resolved): a crash mid-post is said.
        escalation.escalate(ctx, {}, status.get("severity") or 0, dry_run=False)
        return

    # Targets: the incident's own namespace only.
    wanted_ns = (spec.get("target") or {}).get("namespace", ctx.namespace)
    if wanted_ns != ctx.namespace:
        ctx.condition("Triaged", False, "CrossNamespaceTarget",
                      f"target namespace {wanted_ns} is not the incident's namespace "
                      f"{ctx.namespace}; open the incident in the target's namespace")  # fmt: skip
        return
    try:
        ctx.targets = resolve_targets(ctx.api, ctx.namespace, spec.get("target") or {})
    except Forbidden as err:
        ctx.condition("Triaged", False, "TargetForbidden", f"the target cannot be read: {err}")
        ctx.retry()
        return
    if not ctx.targets:
        without_target(ctx)
        return
    status["targets"] = [
        {"kind": t.get("kind", "Deployment"), "namespace": ctx.namespace,
         "name": t["metadata"]["name"]}
        for t in ctx.targets
    ]  # fmt: skip

    decision = decide(ctx.body, status, ctx.targets, ctx.world, ctx.now)
    ctx.policy = decision.policy
    severity, message = decision.severity, decision.severity_message
    if status.get("severity") not in (None, severity):
        ctx.say("SeverityChanged", f"severity {status['severity']} -> {severity}: {message}")
    status["severity"], status["severityReason"] = severity, message
    if decision.policy:
        status["policyRef"] = mitigation_policy.ref(decision.policy)
    else:
        status.pop("policyRef", None)
    ctx.condition("Triaged", True, decision.severity_reason, message)
    if status.get("phase") == "Detected":
        ctx.enter("Triaged", f"severity {severity}: {message}")

    people_changes(ctx, force=bool(decision.resolve))
    regulatory_clock(ctx, decision.dry_run)
    if decision.resolve:
        status.pop("contests", None)  # what is undone is contested no more
        resolve(ctx, decision.resolve, decision.steps, decision.dry_run)
    else:
        mitigate(ctx, decision)
    escalation.escalate(ctx, decision.response, severity, decision.dry_run)
    if status.get("phase") not in ("Resolved", "Closed") and ctx.world.investigate:
        # In-line only where asked (tests); the operator gathers evidence apart, on its
        # scheduler (investigation.refresh), never inside the pass or under the lock.
        ctx.world.investigate(ctx)


def people_changes(ctx: IncidentContext, force: bool = False) -> None:
    """Rollouts and ConfigMap edits made by people since the last look, in the timeline.

    The targets were just read; their ConfigMaps are read at most every
    `changes.CONFIG_RECHECK`, and always when FORCE (resolving: the review must have them).
    """
    key = (ctx.namespace, ctx.name)
    due = changes.configmaps_due(key, ctx.now, force) if not ctx.api.read_only else False
    for change in changes.observe(ctx.api, ctx.status, ctx.namespace, ctx.targets, ctx.now,
                                  configmaps=due):  # fmt: skip
        ctx.api.event(ctx.body, change.type, change.message)
        log.info("%s: %s: %s", ctx.holder, change.type, change.message)


def amend(
    namespace: str,
    name: str,
    change: Callable[[IncidentContext], None],
    world: World | None = None,
    api: Access | None = None,
    now: datetime | None = None,
) -> Result | None:
    """Apply CHANGE to a fresh read of the incident's status under its lock, and write it.

    For work done apart from the pass (the evidence, the calls out): the slow part runs
    before, with no lock; only the merge of its results waits for the incident. Returns
    what CHANGE asked of the caller (a retry, a recheck); None when the incident is gone.
    """
    api = api or _cluster()
    ref = Ref("AIIncident", namespace, name)

    def attempt() -> Result | None:
        incident = api.get(ref)
        if incident is None or incident["metadata"].get("deletionTimestamp"):
            return None
        before = incident.get("status") or {}
        ctx = IncidentContext(api, incident, copy.deepcopy(before), world or World(),
                              now or datetime.now(UTC))  # fmt: skip
        change(ctx)
        if ctx.entries:
            ctx.finish()  # an entry CHANGE added (a page's outcome) goes into the status too
        _write_status(api, incident, before, ctx.status)
        return ctx.result

    with _locks.hold((namespace, name)):
        return retry.on_conflict(attempt, what=f"the status of incident {namespace}/{name}")


def finalize(
    namespace: str,
    name: str,
    body: Body,
    world: World | None = None,
    api: Access | None = None,
    now: datetime | None = None,
) -> Result:
    """The incident is being deleted: undo everything the ledgers say it holds.

    Result.waiting_for is non-empty while something could not be undone; the caller
    keeps the finalizer and tries again.
    """
    api = api or _cluster()
    world = world or World()
    with _locks.hold((namespace, name)):
        status = copy.deepcopy(body.get("status") or {})
        ctx = IncidentContext(api, body, status, world, now or datetime.now(UTC))
        ctx.policy = policy_by_ref(world, status.get("policyRef"))
        try:
            ctx.targets = resolve_targets(api, namespace, ctx.spec.get("target") or {})
        except Forbidden:
            ctx.targets = []  # the status and the policy still name what was touched
        failures = revert(ctx, keep=set(), sweep=True)
        calls = outside.claim(ctx.calls)
    # The "resolved" pages, outside the lock; there is no status left to record them in.
    outside.run(calls, lambda change: amend(namespace, name, change, world, api, now))
    if failures:
        waiting = "; ".join(failures)
        api.event(body, "UndoPending", f"deletion waits until this is undone: {waiting}",
                  warning=True)  # fmt: skip
        return Result(retry=True, waiting_for=waiting)
    return Result()
