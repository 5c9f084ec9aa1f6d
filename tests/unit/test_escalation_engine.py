"""Issue 15 item 2: the escalation ladder in the engine's pass, on a FakeCluster.

The pages go to a real HTTP receiver (the `hook` fixture). A restart is a process that
forgets what it was sending (`escalation._in_flight`) and what it sent (`notify._sent`):
only the status remembers; a crash between the claim and the outcome is a `send` that
stops half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_incident_operator import engine
from ai_incident_operator.actions import notify
from ai_incident_operator.engine import escalation

from scenekit import EngineScene

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]
ACKNOWLEDGED = {"after": "10m", "unless": "Acknowledged", "channels": ["leadership", "boss"]}


class Scene(EngineScene):
    def __init__(self, hook_url: str, ladder: list[Body], dry_run: bool = False) -> None:
        spec = {
            "targetSelector": {"matchLabels": {"app": "chat"}},
            "responses": [{"severity": 1, "escalation": ladder, "actions": [
                {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall"]}]}],
            "notifications": {"channels": [
                {"name": "oncall", "format": "Generic", "webhook": {"url": f"{hook_url}/oncall"}},
                {"name": "leadership", "format": "Generic",
                 "webhook": {"url": f"{hook_url}/leadership"}},
                {"name": "boss", "format": "Slack", "webhook": {"url": f"{hook_url}/boss"}},
            ]},
            "safety": {"dryRun": dry_run},
        }  # fmt: skip
        assert engine.escalation.problems(spec) == []
        super().__init__(spec, T0, {"title": "Unsafe advice"})

    def run(self, at: timedelta) -> engine.Result:  # type: ignore[override]
        self.now = T0 + at - timedelta(seconds=30)
        return super().run()

    def escalations(self) -> list[tuple[int, str]]:
        return [(e["level"], e["state"]) for e in self.status().get("escalations") or []]

    def warnings(self, reason: str) -> list[str]:
        return [message for _, _, why, message in self.fake.events if why == reason]


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))
    monkeypatch.setattr(escalation, "_in_flight", set())
    yield


def restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new operator process: nothing it was sending or sent is remembered in memory."""
    monkeypatch.setattr(notify, "_sent", {})
    monkeypatch.setattr(escalation, "_in_flight", set())


def test_a_level_not_acknowledged_in_time_pages_once_and_says_it_is_an_escalation(
    hook, monkeypatch
):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    first = scene.run(timedelta(0))
    assert scene.status()["phase"] == "Mitigated"
    assert first.requeue_after == pytest.approx(600.5)
    assert scene.run(timedelta(minutes=9, seconds=59)).requeue_after == pytest.approx(1.5)
    assert "/leadership" not in hook.bodies and "escalations" not in scene.status()

    scene.run(timedelta(minutes=10))
    (page,) = hook.bodies["/leadership"]
    assert page["event"] == "escalation"
    assert (page["severity"], page["incident"], page["title"]) == (1, "harm", "Unsafe advice")
    assert page["escalation"] == {
        "level": 1,
        "unless": "Acknowledged",
        "notMet": "not acknowledged 10m after detection",
        "since": "2025-03-01T09:00:00Z",
        "dueAt": "2025-03-01T09:10:00Z",
        "channels": ["leadership", "boss"],
    }
    (slack,) = hook.bodies["/boss"]
    assert slack["text"].startswith(
        "[SEV1] prod/harm HarmfulOutput: ESCALATION level 1: not acknowledged 10m after "
        "detection: Unsafe advice (Mitigated; Deployment/chat)"
    )
    (entry,) = scene.status()["escalations"]
    assert (entry["state"], entry["result"], entry["at"]) == (
        "Sent",
        "paged leadership, boss",
        "2025-03-01T09:10:00Z",
    )
    words = "escalated to leadership, boss: not acknowledged 10m after detection"
    assert scene.timeline("Escalated") == [words]
    assert scene.warnings("Escalated") == [words]

    scene.run(timedelta(minutes=11))
    restart(monkeypatch)
    scene.edit(description="more users")
    scene.run(timedelta(minutes=12))
    assert (len(hook.bodies["/leadership"]), len(hook.bodies["/boss"])) == (1, 1)
    assert scene.escalations() == [(1, "Sent")]
    assert len(hook.bodies["/oncall"]) == 1


def test_an_acknowledgement_reaches_the_levels_that_paged_once(hook, monkeypatch):
    """Leadership was paged; once someone acknowledges, its pager hears it too (a PagerDuty
    `acknowledge` on the same alert; a short message elsewhere), once, across restarts."""
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.run(timedelta(minutes=10))
    assert scene.escalations() == [(1, "Sent")]
    scene.edit(acknowledged={"by": "alice", "at": "2025-03-01T09:11:00Z"})
    scene.run(timedelta(minutes=11))
    generic = hook.bodies["/leadership"][-1]
    assert (generic["event"], generic["by"], generic["incident"]) == (
        "acknowledged",
        "alice",
        "harm",
    )
    assert hook.bodies["/boss"][-1] == {
        "text": "[ACK] prod/harm HarmfulOutput: Unsafe advice: acknowledged by alice"
    }
    (entry,) = scene.status()["escalations"]
    assert entry["acknowledged"] == ["leadership", "boss"]
    assert hook.bodies["/oncall"][-1]["event"] == "acknowledged"  # the Notify page's own
    restart(monkeypatch)
    scene.run(timedelta(minutes=12))
    assert (len(hook.bodies["/leadership"]), len(hook.bodies["/boss"])) == (2, 2)
    assert len(hook.bodies["/oncall"]) == 2


def test_acknowledged_before_the_level_is_due_it_is_skipped_for_good(hook):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.edit(acknowledged={"by": "alice"})
    scene.run(timedelta(minutes=5))
    scene.run(timedelta(minutes=10))
    assert "/leadership" not in hook.bodies
    assert scene.escalations() == [(1, "Skipped")]
    assert scene.timeline("EscalationSkipped") == [
        "escalation level 1 to leadership, boss not needed: acknowledged by alice when due "
        "(10m after detection)"
    ]
    scene.edit(acknowledged=None)  # taken back after the level was decided: still nobody paged
    scene.run(timedelta(minutes=20))
    assert "/leadership" not in hook.bodies and scene.escalations() == [(1, "Skipped")]


def test_each_level_on_its_own_condition_and_time(hook):
    scene = Scene(hook.url, [
        {"after": "5m", "unless": "Mitigated", "channels": ["boss"]},
        {"after": "10m", "unless": "Resolved", "channels": ["leadership"]},
    ])  # fmt: skip
    assert scene.run(timedelta(0)).requeue_after == pytest.approx(300.5)
    assert scene.run(timedelta(minutes=6)).requeue_after == pytest.approx(240.5)
    assert scene.escalations() == [(1, "Skipped")]  # mitigated by then
    scene.run(timedelta(minutes=10))
    assert scene.escalations() == [(1, "Skipped"), (2, "Sent")]
    assert hook.bodies["/leadership"][0]["escalation"]["notMet"] == (
        "not resolved 10m after detection"
    )
    assert "/boss" not in hook.bodies


def test_a_resolved_incident_and_a_dry_run_page_nobody(hook):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.edit(resolution={"requested": True})
    scene.run(timedelta(minutes=1))
    assert scene.status()["phase"] == "Resolved"
    scene.run(timedelta(minutes=30))
    dry = Scene(hook.url, [ACKNOWLEDGED], dry_run=True)
    dry.run(timedelta(0))
    dry.run(timedelta(minutes=30))
    assert "/leadership" not in hook.bodies
    assert "escalations" not in scene.status() and "escalations" not in dry.status()


def test_a_channel_that_fails_is_said_and_not_paged_again(hook):
    hook.script["/boss"] = [500]
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.run(timedelta(minutes=10))
    scene.run(timedelta(minutes=11))
    assert scene.escalations() == [(1, "Failed")]
    assert len(hook.bodies["/boss"]) == 4  # Notify's tries, in the one send
    assert len(hook.bodies["/leadership"]) == 1
    (failed,) = scene.timeline("EscalationFailed")
    assert failed.startswith("escalated to leadership, boss: not acknowledged 10m after "
                             "detection; paged leadership; failed: boss (HTTP 500")  # fmt: skip


@pytest.mark.parametrize("posted", [False, True], ids=["before-the-post", "after-the-post"])
def test_a_crash_between_the_claim_and_its_outcome_never_pages_twice(hook, monkeypatch, posted):
    """The process dies after the status said `Sending`: before posting, or after posting
    and before the outcome was written. The next process says so and sends nothing."""
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    real = escalation.send

    def dies(api: Any, claims: list, amend: Any) -> None:
        if posted:
            real(api, claims, lambda change: None)  # posted; the outcome is never written
        raise KeyboardInterrupt  # stands for the process being killed here

    monkeypatch.setattr(escalation, "send", dies)
    with pytest.raises(KeyboardInterrupt):
        scene.run(timedelta(minutes=10))
    assert scene.escalations() == [(1, "Sending")]
    restart(monkeypatch)
    monkeypatch.setattr(escalation, "send", real)
    scene.run(timedelta(minutes=11))
    scene.run(timedelta(minutes=12))
    assert scene.escalations() == [(1, "Unknown")]
    assert len(hook.bodies.get("/leadership", [])) == (1 if posted else 0)
    (said,) = scene.warnings("EscalationUnknown")
    assert said == (
        "escalation level 1: the operator stopped while paging leadership, boss (claimed at "
        "2025-03-01T09:10:00Z): it may not have gone out, and is not sent again (at most once)"
    )
    assert scene.timeline("EscalationUnknown") == [said]


def test_a_pass_while_this_process_is_sending_leaves_the_claim_alone(hook):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    uid = scene.fake.obj("AIIncident", NS, "harm")["metadata"]["uid"]
    real = escalation.send
    inner: list[Any] = []

    def meanwhile(api: Any, claims: list, amend: Any) -> None:
        if not claims:
            return real(api, claims, amend)
        # Another pass runs after the claim's write and before the post's outcome.
        assert escalation._busy((uid, 1, 1, escalation.PAGE))
        inner.append(scene.run(timedelta(minutes=10, seconds=1)))
        real(api, claims, amend)

    escalation.send, saved = meanwhile, escalation.send
    try:
        scene.run(timedelta(minutes=10))
    finally:
        escalation.send = saved
    assert inner and scene.escalations() == [(1, "Sent")]
    assert not scene.warnings("EscalationUnknown")
    assert len(hook.bodies["/leadership"]) == 1


def test_the_levels_that_paged_are_told_it_is_resolved_once(hook, monkeypatch):
    """Leadership's PagerDuty alert must not stay open after the incident is over."""
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.run(timedelta(minutes=10))
    assert scene.escalations() == [(1, "Sent")]
    scene.edit(resolution={"requested": True})
    scene.run(timedelta(minutes=20))
    assert scene.status()["phase"] == "Resolved"
    scene.run(timedelta(minutes=21))
    restart(monkeypatch)
    scene.run(timedelta(minutes=22))
    assert [b["event"] for b in hook.bodies["/leadership"]] == ["escalation", "resolved"]
    assert hook.bodies["/boss"][-1]["text"].startswith("[RESOLVED] prod/harm")
    assert len(hook.bodies["/boss"]) == 2
    (entry,) = scene.status()["escalations"]
    assert (entry["state"], entry["resolve"]) == ("Sent", "Sent") and entry["resolvedAt"]
    assert scene.timeline("EscalationResolved") == [
        "escalation level 1: resolved sent to leadership, boss"
    ]


def test_a_skipped_level_is_not_told_anything(hook):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.edit(acknowledged={"by": "alice"})
    scene.run(timedelta(minutes=10))
    scene.edit(resolution={"requested": True})
    scene.run(timedelta(minutes=20))
    assert scene.escalations() == [(1, "Skipped")]
    assert "resolve" not in scene.status()["escalations"][0]
    assert "/leadership" not in hook.bodies


def test_a_crash_while_telling_a_level_it_is_resolved_is_said_not_repeated(hook, monkeypatch):
    scene = Scene(hook.url, [ACKNOWLEDGED])
    scene.run(timedelta(0))
    scene.run(timedelta(minutes=10))
    real = escalation.send

    def dies(api: Any, claims: list, amend: Any) -> None:
        if claims:
            raise KeyboardInterrupt  # killed after the claim's write, before the post

    monkeypatch.setattr(escalation, "send", dies)
    scene.edit(resolution={"requested": True})
    with pytest.raises(KeyboardInterrupt):
        scene.run(timedelta(minutes=20))
    assert scene.status()["escalations"][0]["resolve"] == "Sending"
    restart(monkeypatch)
    monkeypatch.setattr(escalation, "send", real)
    scene.run(timedelta(minutes=21))
    assert scene.status()["escalations"][0]["resolve"] == "Unknown"
    assert [b["event"] for b in hook.bodies["/leadership"]] == ["escalation"]
    assert scene.warnings("EscalationUnknown")
