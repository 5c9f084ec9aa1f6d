"""The response histograms (metrics.RESPONSE): each step timed once from detection,
labelled by namespace, severity and a bounded category."""

from __future__ import annotations

from prometheus_client import REGISTRY

from ai_incident_operator import metrics


def incident(name: str, spec: dict | None = None, **status: object) -> dict:
    return {"metadata": {"namespace": "prod", "name": name}, "spec": spec or {}, "status": status}


def count(step: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(f"aiincident_time_to_{step}_seconds_count", labels)
    return value or 0.0


def total(step: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(f"aiincident_time_to_{step}_seconds_sum", labels) or 0.0


def test_each_step_is_timed_once_from_detection_with_its_labels():
    labels = {"namespace": "prod", "severity": "1", "category": "DataLeak"}
    before = {s: (count(s, **labels), total(s, **labels)) for s in metrics.STEPS}
    watch = metrics.Incidents()
    spec = {"category": "DataLeak"}
    base = {"detectedAt": "2026-01-01T10:00:00Z", "severity": 1}
    triaged = {**base, "triagedAt": "2026-01-01T10:00:05Z", "mitigatedAt": "2026-01-01T10:00:30Z"}
    acked = {**triaged, "conditions": [{"type": "Acknowledged", "status": "True",
                                        "lastTransitionTime": "2026-01-01T10:02:00Z"}]}  # fmt: skip
    resolved = {**acked, "resolvedAt": "2026-01-01T11:00:00Z"}
    closed = {**resolved, "closedAt": "2026-01-02T10:00:00Z"}
    for status in (base, triaged, triaged, acked, resolved, closed, closed):
        watch.observe("MODIFIED", incident("leak", spec, **status))
    seconds = {"triage": 5, "acknowledge": 120, "mitigate": 30, "resolve": 3600,
               "close": 24 * 3600}  # fmt: skip
    for step, value in seconds.items():
        assert count(step, **labels) - before[step][0] == 1, step
        assert total(step, **labels) - before[step][1] == value, step


def test_spec_acknowledged_at_wins_over_the_condition():
    body = incident("x", {"acknowledged": {"by": "ana", "at": "2026-01-01T10:01:00Z"}},
                    conditions=[{"type": "Acknowledged", "status": "True",
                                 "lastTransitionTime": "2026-01-01T10:09:00Z"}])  # fmt: skip
    assert metrics.acknowledged_at(body) == "2026-01-01T10:01:00Z"
    unacked = incident("y", conditions=[{"type": "Acknowledged", "status": "False"}])
    assert metrics.acknowledged_at(unacked) is None


def test_labels_stay_bounded_and_a_restart_does_not_time_again():
    watch = metrics.Incidents()
    labels = {"namespace": "prod", "severity": "none", "category": "Other"}
    before = count("triage", **labels)
    odd = incident("odd", {"category": "made-up " * 20},
                   detectedAt="2026-01-01T10:00:00Z", triagedAt="2026-01-01T10:00:01Z")  # fmt: skip
    watch.observe("ADDED", odd)
    assert count("triage", **labels) - before == 1  # an unknown category counts as Other
    watch.observe(None, incident("old", detectedAt="2026-01-01T10:00:00Z",
                                 triagedAt="2026-01-01T10:00:01Z"))  # fmt: skip
    assert count("triage", **labels) - before == 1
