from datetime import UTC, datetime

from ai_incident_operator.lifecycle import (
    TIMELINE_LIMIT,
    add_timeline,
    detected_status,
    enter_phase,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_detected_status_records_phase_time_generation_and_timeline():
    body = {
        "metadata": {"generation": 2},
        "spec": {"category": "HarmfulOutput", "source": {"type": "UserReport"}},
    }
    status = detected_status(body, T0)
    assert status["phase"] == "Detected"
    assert status["detectedAt"] == "2026-01-01T00:00:00Z"
    assert status["observedGeneration"] == 2
    assert status["timeline"] == [
        {
            "time": "2026-01-01T00:00:00Z",
            "type": "Detected",
            "message": "HarmfulOutput incident reported by UserReport",
        }
    ]


def test_phase_timestamp_is_stamped_once():
    status: dict = {}
    assert enter_phase(status, "Mitigated", "applied", T0)
    assert not enter_phase(status, "Mitigated", "again", T0)
    enter_phase(status, "Mitigating", "escalated", datetime(2026, 1, 2, tzinfo=UTC))
    enter_phase(status, "Mitigated", "applied", datetime(2026, 1, 2, tzinfo=UTC))
    assert status["mitigatedAt"] == "2026-01-01T00:00:00Z"


def test_timeline_is_bounded_and_keeps_detection():
    status: dict = {}
    add_timeline(status, "Detected", "first", T0)
    for i in range(TIMELINE_LIMIT * 2):
        add_timeline(status, "Note", f"n{i}", T0)
    assert len(status["timeline"]) == TIMELINE_LIMIT
    assert status["timeline"][0]["message"] == "first"
    assert status["timeline"][-1]["message"] == f"n{TIMELINE_LIMIT * 2 - 1}"
