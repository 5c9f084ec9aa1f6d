"""A scheduled pass runs the engine only when the engine asked for it (or an event did)."""

from __future__ import annotations

from ai_incident_operator import handlers


def test_the_evidence_pass_after_an_event_does_not_run_the_engine_again() -> None:
    key = ("ns", "evidence-only")
    handlers.SCHEDULER.after(key, handlers.EVIDENCE_DELAY)  # what an event asks for
    assert handlers._engine_now(key) == (False, None)


def test_the_engine_runs_once_when_due_and_keeps_the_earliest_time() -> None:
    key = ("ns", "due")
    handlers._want_engine(key, 30.0)
    handlers._want_engine(key, 0.0)  # a repair: sooner wins
    assert handlers._engine_now(key) == (True, None)
    assert handlers._engine_now(key) == (False, None)  # taken

    handlers._want_engine(key, 30.0)
    due, seconds = handlers._engine_now(key)
    assert not due and seconds is not None and 29.0 < seconds <= 30.0
    handlers._want_engine(key, None)  # "never" changes nothing
    assert handlers._engine_now(key)[0] is False
    handlers.SCHEDULER.forget(key)
    handlers._engine_due.pop(key, None)


def test_held_objects_are_watched_in_the_namespaces_kopf_watches() -> None:
    from ai_incident_operator.heldwatch import HeldWatch, watched

    assert watched("t-1", ["t-*", "other"]) and watched("other", ["t-*", "other"])
    assert not watched("kube-system", ["t-*"]) and not watched("t-x", ["t-*", "!t-x"])
    globbed = HeldWatch(lambda key: None, ["t-*", "aiincident-protected-test"])
    assert globbed.namespaces == [None]  # one cluster-wide watch, filtered
    assert HeldWatch(lambda key: None, ["prod"]).namespaces == ["prod"]
