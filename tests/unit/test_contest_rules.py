"""The contest rules (`ai_incident_operator.contest`): when reverts make a contest, the
backoff between re-applies, when it is over, and how often an Event says so.

Pure: the rules hold for any history of reverts and any clock, so most are checked
with hypothesis over generated histories; a few examples pin the numbers.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import contest as rules
from ai_incident_operator.contest import Contest

from kit import REPO

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
FIELDS = ["/spec/replicas"]
NEW = Contest(object="Deployment/chat", key="ScaleToZero", target="Deployment/chat")
# Seconds an actor takes to revert each operator write (a GitOps sync, a person).
delays = st.lists(
    st.floats(min_value=0.05, max_value=400, allow_nan=False), min_size=1, max_size=30
)


def fight(actor_delays: list[float], start: Contest = NEW) -> list[tuple[datetime, Contest]]:
    """The operator against an actor that reverts its Nth write after ACTOR_DELAYS[N] seconds.

    The operator looks at once at each revert (the watch), and re-applies as soon as the
    rules let it. Returns (time of each operator write, the contest after it).
    """
    return [(w, c) for w, _, c in fight_reverts(actor_delays, start)]


def fight_reverts(
    actor_delays: list[float], start: Contest = NEW
) -> list[tuple[datetime, datetime | None, Contest]]:
    """As `fight`, with the time of the revert each write answered (None for the first)."""
    now, c = T0, rules.wrote(start, T0)  # the first application
    writes: list[tuple[datetime, datetime | None, Contest]] = [(now, None, c)]
    for delay in actor_delays:
        now += timedelta(seconds=delay)
        revert = now
        if c.contested and not rules.may_apply(c, now):
            # As `engine.contest.held_back`: looked at, counted, re-applied when the wait ends.
            c = rules.reverted(c, now, FIELDS, "gitops")
            now = rules.next_apply(c) or now
        else:  # as a re-apply: it finds the revert and writes at once
            c = rules.reverted(c, now, FIELDS, "gitops")
        c = rules.wrote(c, now)
        writes.append((now, revert, c))
    return writes


def test_three_reverts_a_second_apart_make_a_contest_and_the_re_applies_slow_down():
    writes = fight([1, 1, 1, 1, 1])
    contests = [c for _, c in writes]
    assert [c.contested for c in contests] == [False, False, False, True, True, True]
    assert contests[3].since == T0 + timedelta(seconds=3)
    assert contests[3].manager == "gitops" and contests[3].fields == ("/spec/replicas",)
    # The third revert is re-applied at once. The fourth comes during the 2 s wait: the
    # next re-apply waits 4 s from the last, the one after 8 s.
    times = [(t - T0).total_seconds() for t, _ in writes]
    assert times == [0, 1, 2, 3, 7, 15]
    again = rules.reverted(contests[5], writes[5][0] + timedelta(seconds=1), FIELDS, "gitops")
    assert rules.next_apply(again) == writes[5][0] + timedelta(seconds=16)


@given(delays)
@settings(deadline=None)  # a busy machine must not fail them
def test_fewer_reverts_than_the_rule_within_the_window_are_never_a_contest(actor_delays):
    writes = fight_reverts(actor_delays)
    for i, (_, _, c) in enumerate(writes):
        reverts = [r for _, r, _ in writes[1 : i + 1] if r is not None]
        within = any(
            sum(1 for u in reverts if t - rules.WINDOW < u <= t) >= rules.REVERTS for t in reverts
        )
        assert c.contested == within, (i, reverts)


@given(delays)
@settings(deadline=None)  # a busy machine must not fail them
def test_in_a_contest_each_re_apply_waits_its_backoff_and_the_backoff_never_shrinks(actor_delays):
    writes = fight(actor_delays)
    for (before, was), (after, now) in itertools.pairwise(writes):
        if was.contested:
            assert after - before >= rules.backoff(was.strikes)
            assert now.strikes == was.strikes + 1  # one strike per reverted write
    waits = [rules.backoff(c.strikes) for _, c in writes if c.contested]
    assert waits == sorted(waits)
    assert all(w <= rules.BACKOFF_CAP for w in waits)


@given(st.integers(min_value=-5, max_value=10_000))
@settings(deadline=None)  # a busy machine must not fail them
def test_backoff_doubles_from_the_base_up_to_the_cap(strikes):
    wait = rules.backoff(strikes)
    if strikes <= 0:
        assert wait == timedelta(0)
    else:
        assert rules.BACKOFF_BASE <= wait <= rules.BACKOFF_CAP
        assert wait == min(rules.BACKOFF_BASE * 2 ** min(strikes - 1, 32), rules.BACKOFF_CAP)


@given(delays, st.integers(min_value=1, max_value=5))
@settings(deadline=None)  # a busy machine must not fail them
def test_looking_again_at_an_object_still_reverted_counts_nothing(actor_delays, looks):
    _, c = fight(actor_delays)[-1]
    later = T0 + timedelta(days=1)
    once = rules.reverted(c, later, FIELDS, "gitops")
    again = once
    for i in range(looks):
        again = rules.reverted(again, later + timedelta(seconds=i + 1), FIELDS, "gitops")
    assert again == once
    assert once.count == c.count + 1


@given(delays, st.floats(min_value=0, max_value=3600, allow_nan=False))
@settings(deadline=None)  # a busy machine must not fail them
def test_a_contest_is_over_only_once_the_last_write_held_for_the_quiet_time(actor_delays, held):
    when, c = fight(actor_delays)[-1]
    now = when + timedelta(seconds=held)
    if c.contested:
        assert rules.over(c, now) == (now - when >= rules.quiet(c))
        assert rules.quiet(c) >= rules.QUIET
        slowest = min(timedelta(seconds=2 * max(actor_delays)), rules.WINDOW)
        assert rules.quiet(c) >= slowest - timedelta(microseconds=1)  # float seconds
    # Never over while the operator's value is found reverted.
    assert not rules.over(rules.reverted(c, now, FIELDS, "gitops"), now + timedelta(days=1))


@given(delays)
@settings(deadline=None)  # a busy machine must not fail them
def test_events_come_at_most_once_an_interval_and_together_say_every_revert(actor_delays):
    """The engine reports when `report_due` says so; the counts add up to the reverts."""
    now, c = T0, rules.wrote(NEW, T0)
    reported_at: list[datetime] = []
    said = 0
    for delay in actor_delays:
        now += timedelta(seconds=delay)
        c = rules.wrote(rules.reverted(c, now, FIELDS, "gitops"), now)
        if rules.report_due(c, now):
            said += c.unreported
            reported_at.append(now)
            c = rules.reported(c, now)
    assert said + c.unreported == len(actor_delays) == c.count
    gaps = [b - a for a, b in itertools.pairwise(reported_at)]
    assert all(gap >= rules.EVENT_INTERVAL for gap in gaps)


@given(delays, st.booleans())
@settings(deadline=None)  # a busy machine must not fail them
def test_wake_is_when_something_is_due(actor_delays, reverted_now):
    when, c = fight(actor_delays)[-1]
    if reverted_now:
        c = rules.reverted(c, when + timedelta(seconds=1), FIELDS, "gitops")
    now = when + timedelta(seconds=1)
    wake = rules.wake(c, now)
    if wake is None:
        assert not c.contested or c.holding
        return
    at = now + timedelta(seconds=wake)
    due = (not c.holding and rules.may_apply(c, at)) or rules.over(c, at) or rules.report_due(c, at)
    assert due


@given(delays)
@settings(max_examples=50, deadline=None)
def test_the_status_keeps_a_contest_across_a_restart(actor_delays):
    _, c = fight(actor_delays)[-1]
    back = rules.load(rules.dump(c))
    expected = Contest(
        **{
            **c.__dict__,
            **{
                k: rules.truncated(v) if isinstance(v, datetime) else v
                for k, v in c.__dict__.items()
            },
            "reverts": tuple(rules.truncated(t) for t in c.reverts),
            "slowest": round(c.slowest, 1),
        }
    )
    assert back == expected
    assert rules.dump(back) == rules.dump(c)


def test_the_rules_module_loads_neither_kopf_nor_kubernetes():
    check = (
        "import sys\nimport ai_incident_operator.contest, ai_incident_operator.managers\n"
        "assert not {'kopf', 'kubernetes'} & set(sys.modules), sys.modules.keys()"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        cwd=REPO / "operator",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
