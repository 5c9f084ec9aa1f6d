from datetime import UTC, datetime, timedelta

from ai_incident_operator.conditions import (
    INCIDENT_CONDITION_TYPES,
    get_condition,
    initial_conditions,
    is_true,
    set_condition,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_initial_conditions_are_the_contract_types_all_unknown():
    conds = initial_conditions(3, T0)
    assert [c["type"] for c in conds] == list(INCIDENT_CONDITION_TYPES)
    assert {c["status"] for c in conds} == {"Unknown"}
    assert {c["observedGeneration"] for c in conds} == {3}


def test_transition_time_moves_only_when_status_changes():
    conds = set_condition([], "Triaged", True, "PolicyRule", "sev 1", now=T0)
    later = T0 + timedelta(minutes=5)
    same = set_condition(conds, "Triaged", "True", "PolicyRule", "new message", now=later)
    assert get_condition(same, "Triaged")["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert get_condition(same, "Triaged")["message"] == "new message"
    flipped = set_condition(same, "Triaged", False, "TargetNotFound", now=later)
    assert get_condition(flipped, "Triaged")["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert not is_true(flipped, "Triaged")


def test_set_condition_keeps_others_and_does_not_mutate_input():
    conds = initial_conditions(1, T0)
    before = [dict(c) for c in conds]
    result = set_condition(conds, "Mitigated", True, "ActionsApplied", now=T0)
    assert conds == before
    assert len(result) == len(conds)
    assert is_true(result, "Mitigated")
