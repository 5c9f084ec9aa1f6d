"""The evidence of an open incident, gathered apart from the mitigation pass and merged after.

Run by the operator's scheduler when `lifecycle.evidence_due_in` says so (on triage,
then every EVIDENCE_REFRESH): the collection (the apiserver, Prometheus) runs under
no lock; only the merge into a fresh read of the status (`engine.amend`) takes the
incident's lock, so a slow Prometheus can never delay a response. The changes
people made to the targets and their ConfigMaps (`changes`) are looked for too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .. import engine
from ..access import Access
from ..errors import APIError
from ..lifecycle import EVIDENCE_REFRESH, evidence_due_in, evidence_refresh, is_open
from ..resources import Ref
from ..times import iso
from . import changes, investigate

Body = dict[str, Any]


def refresh(namespace: str, name: str, world: engine.World, api: Access) -> float | None:
    """Collect the evidence if it is due; seconds until it is due again (None: closed)."""
    try:
        incident = api.get(Ref("AIIncident", namespace, name))
    except APIError:
        return EVIDENCE_REFRESH.total_seconds()
    status = (incident or {}).get("status") or {}
    if incident is None or not status.get("phase") or not is_open(status):
        return None
    if not status.get("triagedAt") and not status.get("targets"):
        return None  # nothing to look at yet: triage brings it back
    now = datetime.now(UTC)
    due_in = evidence_due_in(status, now)
    if due_in > 0:
        return due_in
    policy = engine.policy_by_ref(world, status.get("policyRef"))
    policy_spec = (policy or {}).get("spec") or {}
    targets = _read(api, namespace, status)
    found = investigate.gather(incident, status, policy_spec, targets, now)

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
