"""The investigation step of an open incident: evidence, ranked hypotheses, root cause.

Run by the operator's scheduler apart from the mitigation pass, so a severity-1
response is never held up by it: `gather` (slow: the apiserver, Prometheus) runs
under no lock, `record` puts what it found into a fresh read of the status under
the incident's lock. The ledger's originals are put back in the targets read, so
the evidence shows what was serving when it went wrong. Evidence is collected once when triaged, then refreshed every
EVIDENCE_REFRESH while the incident is open. A failure here is a condition, never
an error that stops the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import egress
from ..errors import APIError
from ..lifecycle import add_timeline, evidence_due_in
from ..times import iso, parse_time
from . import evidence, hypotheses
from .store import NotOurs

log = logging.getLogger(__name__)
Body = dict[str, Any]


@dataclass
class Findings:
    """What one collection found: the evidence ConfigMap, its size and the ranked causes."""

    ref: Body | None = None
    sections: int = 0
    ranked: list[Body] = field(default_factory=list)
    failure: str = ""  # why nothing was collected


def gather(
    body: Body, status: Body, policy_spec: Body, targets: list[Body], now: datetime
) -> Findings:
    """Collect the evidence and write its ConfigMap: the slow part, run under no lock."""
    detected = parse_time(status.get("detectedAt")) or now
    # The policy's kind decides whose URL rules apply (egress): a tenant's unless the
    # status names a ClusterMitigationPolicy.
    tenant = egress.scope_of_ref(status.get("policyRef"), body["metadata"].get("namespace", ""))
    try:
        data, facts = evidence.collect(
            body, targets, policy_spec, now, detected_at=detected, namespaced=tenant is not None
        )
        ref = evidence.write_evidence(body, data)
    except (APIError, NotOurs) as err:
        words = getattr(err, "reason", None) or str(err)
        log.warning("evidence for %s not collected: %s", body["metadata"]["name"], words)
        return Findings(failure=words)
    return Findings(ref, len(data), hypotheses.rank(facts, now))


def record(status: Body, found: Findings, condition: Callable[..., None], now: datetime) -> None:
    """Put FOUND into STATUS (the incident's lock held, on a fresh read)."""
    if found.failure:
        condition(
            "EvidenceCollected",
            False,
            "CollectionFailed",
            f"evidence not collected: {found.failure}",
        )
        return
    first = not status.get("evidenceRef")
    status["evidenceRef"] = found.ref
    status["evidenceCollectedAt"] = iso(now)
    status["hypotheses"] = merge(status.get("hypotheses") or [], found.ranked)
    words = f"{found.sections} sections in ConfigMap {found.ref['name']}"
    condition("EvidenceCollected", True, "Collected", words)
    if first:
        top = status["hypotheses"][0] if status["hypotheses"] else None
        lead = f"; leading hypothesis {top['cause']} ({top['confidence']})" if top else ""
        add_timeline(status, "EvidenceCollected", words + lead, now)


def investigate(
    body: Body,
    status: Body,
    policy_spec: Body,
    targets: list[Body],
    condition: Callable[..., None],
    now: datetime,
) -> None:
    """Gather and record in one go, when due (for callers that hold no lock to keep short)."""
    if evidence_due_in(status, now) <= 0:
        record(status, gather(body, status, policy_spec, targets, now), condition, now)
    found, reason, message = hypotheses.root_cause_identified(
        status.get("hypotheses") or [], body.get("spec") or {}
    )
    condition("RootCauseIdentified", found, reason, message)


def merge(before: list[Body], now_ranked: list[Body]) -> list[Body]:
    """Keep each cause at its highest confidence: a mitigation can hide a symptom
    (no unavailable replicas once scaled to zero) that pointed at the cause."""
    best: dict[str, Body] = {}
    for hypothesis in [*before, *now_ranked]:
        kept = best.get(hypothesis["cause"])
        if kept is None or hypothesis["confidence"] > kept["confidence"]:
            best[hypothesis["cause"]] = hypothesis
    return sorted(best.values(), key=lambda h: -h["confidence"])
