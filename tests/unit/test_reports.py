"""What `aiincident list` and `describe` print (pure parts of reports)."""

from datetime import UTC, datetime

import pytest

from ai_incident_operator.reports import age, applied, describe, target_text

NOW = datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "shown"),
    [
        ("2026-01-10T11:59:15Z", "45s"),
        ("2026-01-10T11:56:40Z", "3m20s"),
        ("2026-01-10T11:35:00Z", "25m"),
        ("2026-01-10T09:50:00Z", "130m"),
        ("2026-01-10T06:50:00Z", "5h10m"),
        ("2026-01-09T06:00:00Z", "30h"),
        ("2026-01-06T08:00:00Z", "4d4h"),
        ("2025-09-12T12:00:00Z", "120d"),
        ("2026-01-10T12:00:05Z", "0s"),
        (None, "<unknown>"),
    ],
)
def test_age_reads_as_kubectl_prints_it(since, shown):
    assert age(since, NOW) == shown


def test_target_and_applied_mitigations():
    assert target_text({"target": {"name": "chat-llm"}}) == "chat-llm"
    selector = {"matchLabels": {"aiincident.io/model": "chat"}}
    assert target_text({"target": {"selector": selector}}) == "aiincident.io/model=chat"
    assert target_text({}) == "<none>"
    mitigations = [
        {"action": "TrafficShift", "state": "Applied"},
        {"action": "ScaleToZero", "state": "Reverted"},
        {"action": "TrafficShift", "state": "Applied"},
    ]
    assert applied({"mitigations": mitigations}) == "TrafficShift"
    assert applied({}) == "none"


def test_describe_before_the_operator_saw_the_incident():
    text = describe(
        {
            "metadata": {"name": "x", "namespace": "prod"},
            "spec": {"category": "DataLeak", "target": {"name": "m"}},
        }
    )
    assert "Phase:        Pending (the operator has not seen it yet)" in text
    assert "Severity:     not triaged yet" in text
    assert "Mitigations: none" in text and "Timeline: none yet" in text
    assert "Policy:" not in text  # not known yet, rather than "none"
