"""The operator's Prometheus metrics, served at the webhook server's `/metrics`.

Webhook counters (fed by `intake.server`); and, fed by a kopf watch on AIIncidents
registered here (`cli._run` imports this module): incidents by namespace, phase and
severity, mitigation entries by action and state, and histograms of the seconds
from detection to mitigation and from mitigation to resolution. The response
histograms (`aiincident_time_to_{triage,acknowledge,mitigate,resolve,close}_seconds`)
time each step from detection, labelled by namespace, severity (1-3, none) and category
(the CRD's enum; anything else counts as Other), so the series stay bounded: MTTA, MTTM,
MTTR (deploy/prometheus/ai-incident-response-rules.yaml, the Grafana dashboard). The
acknowledgement is `spec.acknowledged.at`, else the `Acknowledged` condition's
lastTransitionTime. The gauges are computed at scrape time from the last state of each
incident seen on the watch.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf
import prometheus_client
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import GROUP, VERSION

prometheus_client.disable_created_metrics()  # no *_created series: noise on every scrape
ALERTS = Counter(
    "aiincident_alerts_received",
    "Alerts posted to the webhook, by result: created, updated or unchanged (the incident "
    "they went to), rejected (bad input), refused (outside the sender's namespaces), "
    "forbidden (the operator's RBAC does not cover their namespace), limited (beyond the new "
    "incidents per minute: 429, Alertmanager retries), unavailable (the apiserver was away; "
    "Alertmanager retries)",
    ["result"],
)
# Labels here come from fixed sets (status codes the intake answers, reasons below), never
# from request input: a sender cannot grow the number of series.
REQUESTS = Counter("aiincident_webhook_requests", "Webhook requests by HTTP status", ["code"])
CONNECTIONS_CLOSED = Counter(
    "aiincident_webhook_connections_closed",
    "Webhook connections the server closed, by reason: too_many (beyond the connection cap), "
    "header_timeout, body_timeout (a client too slow to send its request)",
    ["reason"],
)
UNMAPPED = Counter(
    "aiincident_alerts_unmapped",
    "Alerts that named no workload, filed as incidents in the operator's namespace",
)
INVALID = Counter(
    "aiincident_alerts_invalid",
    "Malformed alerts, left out of their payload (its good alerts are still taken), by the "
    "alert's field found wrong first: status, labels, annotations, fingerprint, startsAt, "
    "endsAt, generatorURL, or alert (not an object)",
    ["field"],
)
_MINUTE, _HOUR = 60.0, 3600.0
DETECT_TO_MITIGATE = Histogram(
    "aiincident_detect_to_mitigate_seconds",
    "Seconds from an incident's detection to its mitigation (status.detectedAt -> mitigatedAt)",
    buckets=(1, 2, 5, 10, 30, _MINUTE, 2 * _MINUTE, 5 * _MINUTE, 15 * _MINUTE, _HOUR, 4 * _HOUR),
)
MITIGATE_TO_RESOLVE = Histogram(
    "aiincident_mitigate_to_resolve_seconds",
    "Seconds from an incident's mitigation to its resolution (status.mitigatedAt -> resolvedAt)",
    buckets=(
        _MINUTE,
        5 * _MINUTE,
        15 * _MINUTE,
        _HOUR,
        4 * _HOUR,
        12 * _HOUR,
        24 * _HOUR,
        3 * 24 * _HOUR,
        7 * 24 * _HOUR,
        30 * 24 * _HOUR,
    ),
)


# From detection to each step of the response; days-long tails (a review) included.
RESPONSE_BUCKETS = (
    10, 30, _MINUTE, 5 * _MINUTE, 15 * _MINUTE, 30 * _MINUTE, _HOUR, 4 * _HOUR, 12 * _HOUR,
    24 * _HOUR, 3 * 24 * _HOUR, 7 * 24 * _HOUR, 30 * 24 * _HOUR,
)  # fmt: skip
RESPONSE_LABELS = ("namespace", "severity", "category")
CATEGORIES = frozenset({"HarmfulOutput", "AccuracyDegradation", "DataLeak", "BiasViolation",
                        "OutOfScopeUse", "ModelFailure", "CostAnomaly", "Other"})  # fmt: skip
STEPS = ("triage", "acknowledge", "mitigate", "resolve", "close")
RESPONSE = {
    step: Histogram(
        f"aiincident_time_to_{step}_seconds",
        f"Seconds from an incident's detection to its {step} step (status.detectedAt -> "
        f"{'spec.acknowledged.at or the Acknowledged condition' if step == 'acknowledge' else 'the phase time'}), "
        "by namespace, severity and category",
        RESPONSE_LABELS,
        buckets=RESPONSE_BUCKETS,
    )
    for step in STEPS
}  # fmt: skip


def acknowledged_at(body: dict[str, Any]) -> str | None:
    """When the incident was acknowledged: spec.acknowledged.at, else when the Acknowledged
    condition turned True; None when it was not."""
    acknowledged = (body.get("spec") or {}).get("acknowledged")
    if isinstance(acknowledged, dict) and acknowledged.get("at"):
        return str(acknowledged["at"])
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Acknowledged" and condition.get("status") == "True":
            return condition.get("lastTransitionTime")
    return None


@dataclass(frozen=True)
class Seen:
    """What the metrics need of one incident."""

    phase: str
    severity: str
    mitigations: tuple[tuple[str, str], ...]  # (action, state)
    detected_at: str | None
    mitigated_at: str | None
    resolved_at: str | None
    category: str = "Other"
    # The end of each response step (STEPS), when it happened.
    steps: tuple[str | None, ...] = (None,) * len(STEPS)

    @classmethod
    def of(cls, body: dict[str, Any]) -> Seen:
        status = body.get("status") or {}
        severity = status.get("severity")
        category = (body.get("spec") or {}).get("category")
        return cls(
            phase=status.get("phase") or "Detected",
            severity=str(severity) if severity else "none",
            mitigations=tuple(
                (str(m.get("action", "")), str(m.get("state", "")))
                for m in status.get("mitigations") or []
            ),
            detected_at=status.get("detectedAt"),
            mitigated_at=status.get("mitigatedAt"),
            resolved_at=status.get("resolvedAt"),
            category=category if category in CATEGORIES else "Other",
            steps=(
                status.get("triagedAt"), acknowledged_at(body), status.get("mitigatedAt"),
                status.get("resolvedAt"), status.get("closedAt"),
            ),
        )  # fmt: skip


def _observe(histogram: Any, start: str | None, end: str | None) -> None:
    try:
        a = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        b = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
    except ValueError:
        return
    histogram.observe(max(0.0, (b - a).total_seconds()))


class Incidents(Collector):
    """The last seen state of every incident; gauges from it at scrape time."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], Seen] = {}

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """One watch event. The initial listing (type None) records without timing: what
        happened before this process started is not observed again on each restart."""
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.seen.pop(key, None)
            return
        now, before = Seen.of(body), self.seen.get(key)
        self.seen[key] = now
        if event_type is None:
            return
        if now.mitigated_at and not (before and before.mitigated_at):
            _observe(DETECT_TO_MITIGATE, now.detected_at, now.mitigated_at)
        if now.resolved_at and now.mitigated_at and not (before and before.resolved_at):
            _observe(MITIGATE_TO_RESOLVE, now.mitigated_at, now.resolved_at)
        if not now.detected_at:
            return
        labels = {"namespace": key[0], "severity": now.severity, "category": now.category}
        for index, step in enumerate(STEPS):
            if now.steps[index] and not (before and before.steps[index]):
                _observe(RESPONSE[step].labels(**labels), now.detected_at, now.steps[index])

    def collect(self) -> Iterator[Metric]:
        incidents = GaugeMetricFamily(
            "aiincident_incidents",
            "AIIncidents by namespace, phase and severity (severity none before triage)",
            labels=["namespace", "phase", "severity"],
        )
        mitigations = GaugeMetricFamily(
            "aiincident_mitigations",
            "Mitigation entries (one per action per target) by namespace, action and state",
            labels=["namespace", "action", "state"],
        )
        by_phase: collections.Counter[tuple[str, str, str]] = collections.Counter()
        by_action: collections.Counter[tuple[str, str, str]] = collections.Counter()
        for (namespace, _), seen in list(self.seen.items()):
            by_phase[(namespace, seen.phase, seen.severity)] += 1
            for action, state in seen.mitigations:
                by_action[(namespace, action, state)] += 1
        for labels, count in sorted(by_phase.items()):
            incidents.add_metric(list(labels), count)
        for labels, count in sorted(by_action.items()):
            mitigations.add_metric(list(labels), count)
        yield incidents
        yield mitigations


INCIDENTS = Incidents()
REGISTRY.register(INCIDENTS)


@kopf.on.event(GROUP, VERSION, "aiincidents", id="metrics")
async def incident_event(event: kopf.RawEvent, **_: Any) -> None:
    INCIDENTS.observe(event.get("type"), event.get("object") or {})


def _quiet(record: logging.LogRecord) -> bool:
    """kopf logs every handler run; this one runs on every change of every incident."""
    return not record.getMessage().endswith("Handler 'metrics' succeeded.")


logging.getLogger("kopf.objects").addFilter(_quiet)
