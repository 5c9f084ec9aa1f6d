"""The investigation step of an open incident: evidence, ranked hypotheses, root cause.

Called by the engine on each pass, after the mitigations (so a severity-1 response
is never held up by it) but with the targets as they were read before any change,
and with the ledger's originals put back, so the evidence shows what was serving
when it went wrong. Evidence is collected once when triaged, then refreshed every
EVIDENCE_REFRESH while the incident is open. A failure here is a condition, never
an error that stops the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from ..lifecycle import add_timeline
from ..times import iso, parse_time
from . import evidence, hypotheses
from .store import NotOurs

log = logging.getLogger(__name__)
EVIDENCE_REFRESH = timedelta(minutes=5)
Body = dict[str, Any]


def investigate(
    body: Body,
    status: Body,
    policy_spec: Body,
    targets: list[Body],
    condition: Callable[..., None],
    now: datetime,
) -> None:
    last = parse_time(status.get("evidenceCollectedAt"))
    if last is None or now - last >= EVIDENCE_REFRESH:
        _collect(body, status, policy_spec, targets, condition, now)
    found, reason, message = hypotheses.root_cause_identified(
        status.get("hypotheses") or [], body.get("spec") or {}
    )
    condition("RootCauseIdentified", found, reason, message)


def _collect(
    body: Body,
    status: Body,
    policy_spec: Body,
    targets: list[Body],
    condition: Callable[..., None],
    now: datetime,
) -> None:
    detected = parse_time(status.get("detectedAt")) or now
    try:
        data, facts = evidence.collect(body, targets, policy_spec, now, detected_at=detected)
        ref = evidence.write_evidence(body, data)
    except (ApiException, NotOurs) as err:
        words = getattr(err, "reason", None) or str(err)
        condition(
            "EvidenceCollected", False, "CollectionFailed", f"evidence not collected: {words}"
        )
        log.warning("evidence for %s not collected: %s", body["metadata"]["name"], words)
        return
    first = not status.get("evidenceRef")
    status["evidenceRef"] = ref
    status["evidenceCollectedAt"] = iso(now)
    status["hypotheses"] = merge(status.get("hypotheses") or [], hypotheses.rank(facts, now))
    words = f"{len(data)} sections in ConfigMap {ref['name']}"
    condition("EvidenceCollected", True, "Collected", words)
    if first:
        top = status["hypotheses"][0] if status["hypotheses"] else None
        lead = f"; leading hypothesis {top['cause']} ({top['confidence']})" if top else ""
        add_timeline(status, "EvidenceCollected", words + lead, now)


def merge(before: list[Body], now_ranked: list[Body]) -> list[Body]:
    """Keep each cause at its highest confidence: a mitigation can hide a symptom
    (no unavailable replicas once scaled to zero) that pointed at the cause."""
    best: dict[str, Body] = {}
    for hypothesis in [*before, *now_ranked]:
        kept = best.get(hypothesis["cause"])
        if kept is None or hypothesis["confidence"] > kept["confidence"]:
            best[hypothesis["cause"]] = hypothesis
    return sorted(best.values(), key=lambda h: -h["confidence"])
