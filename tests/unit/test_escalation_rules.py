"""Issue 15 item 2: the escalation ladder's decision (engine.escalation, pure).

A level fires once, never before its `after`, never while its `unless` holds; a level
found met when due is skipped for good; a bad level is a policy problem, with where.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import policy
from ai_incident_operator.engine import escalation
from ai_incident_operator.engine.escalation import Level, holding, levels, plan, problems

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LEADERSHIP = {"name": "leadership", "format": "Slack", "webhook": {"url": "https://h.example/x"}}


def ladder(*raw: dict) -> list[Level]:
    return levels({"escalation": list(raw)})


def test_a_level_fires_after_its_time_unless_its_condition_holds():
    (level,) = ladder({"after": "10m", "unless": "Acknowledged", "channels": ["leadership"]})
    early = plan([level], T0, T0 + timedelta(minutes=9), {}, set())
    assert (early.fire, early.skip, early.next_due) == ([], [], T0 + timedelta(minutes=10))
    due = plan([level], T0, T0 + timedelta(minutes=10), {}, set())
    assert due.fire == [level] and due.next_due is None
    assert level.words() == "not acknowledged 10m after detection"
    met = plan(
        [level], T0, T0 + timedelta(minutes=10), {"Acknowledged": "acknowledged by al"}, set()
    )
    assert (met.fire, met.skip) == ([], [(level, "acknowledged by al")])
    assert plan([level], T0, T0 + timedelta(hours=1), {}, {1}).fire == []  # recorded: never again


def test_the_next_due_is_the_earliest_level_not_yet_due():
    found = ladder(
        {"after": "30m", "channels": ["cto"]},
        {"after": "5m", "unless": "Mitigated", "channels": ["lead"]},
        {"after": "1h", "unless": "Resolved", "channels": ["ceo"]},
    )
    assert [(lv.number, lv.unless) for lv in found] == [
        (1, None),
        (2, "Mitigated"),
        (3, "Resolved"),
    ]
    result = plan(found, T0, T0 + timedelta(minutes=6), {}, set())
    assert [lv.number for lv in result.fire] == [2]
    assert result.next_due == T0 + timedelta(minutes=30)
    assert found[0].words() == "30m after detection"


def test_what_holds_reads_the_spec_the_conditions_and_the_phase():
    assert holding({"phase": "Mitigating"}, {}) == {}
    assert holding({}, {"acknowledged": {"by": "alice"}}) == {
        "Acknowledged": "acknowledged by alice"
    }
    acked = {"conditions": [{"type": "Acknowledged", "status": "True"}]}
    assert holding(acked, {}) == {"Acknowledged": "acknowledged"}
    assert "Acknowledged" not in holding(
        {"conditions": [{"type": "Acknowledged", "status": "False"}]}, {}
    )
    assert set(holding({"phase": "Mitigated"}, {})) == {"Mitigated"}
    assert set(holding({"phase": "AwaitingApproval", "conditions": [
        {"type": "Mitigated", "status": "True"}]}, {})) == {"Mitigated"}  # fmt: skip
    assert set(holding({"phase": "Resolving"}, {})) == {"Mitigated"}
    assert set(holding({"phase": "Closed"}, {})) == {"Mitigated", "Resolved"}


def test_bad_levels_are_policy_problems_with_where():
    spec = {
        "notifications": {"channels": [LEADERSHIP, {"name": "nohook"}]},
        "responses": [{"severity": 1, "escalation": [
            {"after": "10m", "unless": "Acknowledged", "channels": ["leadership"]},
            {"after": "soon", "channels": ["leadership"]},
            {"after": "5m", "unless": "Paged", "channels": ["leadership"]},
            {"after": "5m", "channels": ["board"]},
            {"after": "5m", "channels": []},
            {"after": "5m", "channels": ["nohook"]},
        ]}],
    }  # fmt: skip
    assert problems(spec) == [
        "responses[0].escalation[1]: after: 'soon' is not a duration (write e.g. 90s, 10m, 1h30m, 7d)",
        "responses[0].escalation[2]: unless: 'Paged' is not one of Acknowledged, Mitigated, Resolved",
        "responses[0].escalation[3]: channel board is not in notifications.channels "
        "(leadership, nohook)",
        "responses[0].escalation[4]: channels: name at least one of notifications.channels",
        "responses[0].escalation[5]: channel nohook needs webhook.url or webhook.urlSecretRef",
    ]
    # The policy's own check says the same (its Ready condition, `aiincident validate`).
    assert set(problems(spec)) <= set(policy.validate(spec))
    assert [lv.number for lv in levels(spec["responses"][0])] == [1, 4, 6]  # the bad ones left out


# --- Properties over any ladder and any history of passes ---------------------------------

CONDITIONS = st.sampled_from([None, *escalation.UNLESS])
LEVEL = st.builds(
    lambda minutes, unless: {"after": f"{minutes}m", "unless": unless, "channels": ["c"]},
    st.integers(0, 120),
    CONDITIONS,
)
PASSES = st.lists(
    st.tuples(st.integers(0, 180), st.sets(st.sampled_from(escalation.UNLESS))), max_size=25
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LEVEL, max_size=6), PASSES)
def test_a_level_never_fires_twice_early_or_while_its_condition_holds(raw, passes):
    found = ladder(*[{k: v for k, v in r.items() if v is not None} for r in raw])
    done: set[int] = set()
    fired: list[int] = []
    for minute, held_now in sorted(passes, key=lambda p: p[0]):
        now = T0 + timedelta(minutes=minute)
        held = {name: name.lower() for name in held_now}
        result = plan(found, T0, now, held, done)
        for level in result.fire:
            assert T0 + level.after <= now
            assert level.unless is None or level.unless not in held
        for level, _ in result.skip:
            assert level.unless in held and T0 + level.after <= now
        if result.next_due is not None:
            assert result.next_due > now
        decided = [lv.number for lv in result.fire] + [lv.number for lv, _ in result.skip]
        assert not set(decided) & done
        fired += [lv.number for lv in result.fire]
        done |= set(decided)
    assert len(fired) == len(set(fired))
