"""The operator's metrics from the AIIncident watch (metrics.Incidents, no cluster)."""

from prometheus_client import CollectorRegistry

from ai_incident_operator import metrics


def incident(name: str, **status: object) -> dict:
    return {"metadata": {"namespace": "prod", "name": name}, "status": status}


def samples(collector: metrics.Incidents) -> dict[tuple, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    found = {}
    for family in registry.collect():
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_gauges_count_incidents_by_phase_and_severity_and_mitigations_by_state():
    watch = metrics.Incidents()
    applied = [{"action": "ScaleToZero", "state": "Applied"}]
    watch.observe(None, incident("a", phase="Mitigated", severity=1, mitigations=applied))
    watch.observe("ADDED", incident("b", phase="Mitigated", severity=1))
    watch.observe("ADDED", incident("c"))
    found = samples(watch)
    assert found[("aiincident_incidents", (("namespace", "prod"), ("phase", "Mitigated"), ("severity", "1")))] == 2  # fmt: skip
    assert found[("aiincident_incidents", (("namespace", "prod"), ("phase", "Detected"), ("severity", "none")))] == 1  # fmt: skip
    key = (("action", "ScaleToZero"), ("namespace", "prod"), ("state", "Applied"))
    assert found[("aiincident_mitigations", key)] == 1
    watch.observe("DELETED", incident("a"))
    assert ("aiincident_mitigations", key) not in samples(watch)


def test_durations_are_timed_once_when_the_phase_is_first_seen():
    watch = metrics.Incidents()
    before = metrics.DETECT_TO_MITIGATE._sum.get(), metrics.MITIGATE_TO_RESOLVE._sum.get()
    detected = {"detectedAt": "2026-01-01T10:00:00Z"}
    mitigated = {**detected, "mitigatedAt": "2026-01-01T10:00:30Z", "phase": "Mitigated"}
    resolved = {**mitigated, "resolvedAt": "2026-01-01T11:00:30Z", "phase": "Resolved"}
    watch.observe("ADDED", incident("x", **detected))
    watch.observe("MODIFIED", incident("x", **mitigated))
    watch.observe("MODIFIED", incident("x", **mitigated))  # seen again: not timed again
    watch.observe("MODIFIED", incident("x", **resolved))
    # An incident that was mitigated before the operator started: not timed on restart.
    watch.observe(None, incident("old", **resolved))
    assert metrics.DETECT_TO_MITIGATE._sum.get() - before[0] == 30
    assert metrics.MITIGATE_TO_RESOLVE._sum.get() - before[1] == 3600
