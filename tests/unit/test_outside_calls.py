"""Calls to outside services run after the status write, outside the incident's lock, and
are never sent twice after a restart (engine.outside, Notify's `sending` and `unsure`).

`engine.reconcile` on a FakeCluster; the pages go to a real HTTP receiver. A restart is
a process that forgets what it sent (`notify._sent` emptied) and has a new identity
(`notify.PROCESS`): only the status remembers.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest

from ai_incident_operator.actions import notify
from ai_incident_operator.engine import approval

from scenekit import NS, EngineScene

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
reconcile = importlib.import_module("ai_incident_operator.engine.reconcile")  # the module
Body = dict[str, Any]


def spec(hook_url: str, approve: bool = False) -> Body:
    return {
        "targetSelector": {"matchLabels": {"app": "chat"}},
        "responses": [{"severity": 1, "requireApproval": approve, "actions": [
            {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall", "lead"]}]}],
        "notifications": {"channels": [
            {"name": "oncall", "format": "Slack", "webhook": {"url": f"{hook_url}/oncall"}},
            {"name": "lead", "format": "Generic", "webhook": {"url": f"{hook_url}/lead"}},
        ]},
    }  # fmt: skip


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))


def restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new operator process: nothing it sent is remembered, and its claims are its own."""
    monkeypatch.setattr(notify, "_sent", {})
    monkeypatch.setattr(notify, "PROCESS", "restarted")


def notify_entry(scene: EngineScene) -> Body:
    return next(e for e in scene.status()["mitigations"] if e["action"] == "Notify")


def test_the_page_is_posted_after_the_status_write_with_no_lock_held(hook):
    """The write that records the model offline comes first; the page is sent outside the
    incident's lock, its claim (`sending`) already in the status; its outcome comes after."""
    scene = EngineScene(spec(hook.url), T0)
    seen: list[tuple[Any, ...]] = []

    def on_post(path: str) -> None:
        status = scene.status()
        entry = next(e for e in status["mitigations"] if e["action"] == "Notify")
        locked = (NS, "harm") in reconcile._locks
        seen.append((status["phase"], entry["state"], entry["sending"]["event"], locked))

    hook.on_post = on_post
    scene.run()
    assert seen == [("Mitigated", "Skipped", "trigger", False)] * 2
    entry = notify_entry(scene)
    assert (entry["state"], entry["message"]) == ("Applied", "notified oncall, lead")
    assert "sending" not in entry
    assert entry["delivered"] == {"trigger": ["oncall", "lead"]}


def test_a_dead_endpoint_does_not_hold_back_the_status_write(hook):
    """A channel that fails 4 times: the model is offline and recorded so before the first
    try; the failure is the entry's, said in an Event, and tried again with backoff."""
    hook.script["/lead"] = [500]
    scene = EngineScene(spec(hook.url), T0)
    writes_before_post: list[int] = []
    hook.on_post = lambda path: writes_before_post.append(
        sum(1 for w in scene.fake.writes if w[0] == "status")
    )
    result = scene.run()
    assert writes_before_post and min(writes_before_post) >= 1
    entry = notify_entry(scene)
    assert entry["state"] == "Failed" and "lead (HTTP 500 (after 4 tries))" in entry["message"]
    assert result.retry
    assert scene.status()["phase"] == "Mitigated"  # the model is offline: that is mitigated
    assert any(e[2] == "NotifyFailed" for e in scene.fake.events)
    hook.script["/lead"] = [200]
    scene.run()
    assert notify_entry(scene)["state"] == "Applied"
    assert len(hook.bodies["/oncall"]) == 1  # reached the first time: not sent again


def test_a_page_claimed_by_a_stopped_process_is_not_sent_twice(hook, monkeypatch):
    """The operator stopped after posting and before writing the outcome: its claim is in
    the status. The next process does not page Slack or Generic channels again (a second
    copy), says so loudly, and keeps them in `unsure`; the incident goes on."""
    scene = EngineScene(spec(hook.url), T0)
    monkeypatch.setattr(reconcile, "amend", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    scene.run()  # posted; the outcome is never written
    assert len(hook.bodies["/oncall"]) == len(hook.bodies["/lead"]) == 1
    assert notify_entry(scene)["sending"]["event"] == "trigger"
    monkeypatch.undo()
    restart(monkeypatch)
    scene.run()
    assert len(hook.bodies["/oncall"]) == len(hook.bodies["/lead"]) == 1
    entry = notify_entry(scene)
    assert entry["state"] == "Applied" and "sending" not in entry
    assert entry["unsure"] == {"trigger": ["oncall", "lead"]}
    assert entry["message"].startswith("not sent again: oncall, lead (the operator stopped")
    assert any(e[1:3] == ("Warning", "NotifyUnsure") for e in scene.fake.events)
    scene.run()
    assert len(hook.bodies["/oncall"]) == 1


def test_a_paging_service_gets_the_claimed_page_again(hook, monkeypatch):
    """PagerDuty folds a repeated trigger into the incident's one alert (its dedup key): a
    page a stopped process claimed goes to it again, so that none is lost."""
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", NS)
    body = spec(hook.url)
    body["notifications"]["channels"][1] = {
        "name": "lead", "format": "PagerDuty", "webhook": {"url": f"{hook.url}/pd"},
        "routingKeySecretRef": {"name": "pd", "key": "key"},
    }  # fmt: skip
    scene = EngineScene(body, T0)
    scene.fake.add({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "pd", "namespace": NS, "annotations": {"aiincident.io/allowed-namespaces": NS}},
        "data": {"key": "UjAxMjM0NTY3ODkwMTIzNDU2Nzg5MDEyMzQ1Njc4OTA="}})  # fmt: skip
    monkeypatch.setattr(reconcile, "amend", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    scene.run()
    monkeypatch.undo()
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", NS)
    restart(monkeypatch)
    scene.run()
    first, again = hook.bodies["/pd"]
    assert first["dedup_key"] == again["dedup_key"] and again["event_action"] == "trigger"
    assert len(hook.bodies["/oncall"]) == 1
    assert notify_entry(scene)["unsure"] == {"trigger": ["oncall"]}
    assert notify_entry(scene)["delivered"]["trigger"] == ["lead"]


def test_an_approval_page_claimed_by_a_stopped_process_is_not_sent_twice(hook, monkeypatch):
    scene = EngineScene(spec(hook.url, approve=True), T0)
    monkeypatch.setattr(reconcile, "amend", lambda *a, **k: (_ for _ in ()).throw(OSError("gone")))
    scene.run()
    assert scene.status()[approval.PAGE]["sending"]["channels"] == ["oncall", "lead"]
    monkeypatch.undo()
    restart(monkeypatch)
    scene.run()
    page = scene.status()[approval.PAGE]
    assert page["channels"] == page["unsure"] == ["oncall", "lead"] and "sending" not in page
    assert len(hook.bodies["/oncall"]) == len(hook.bodies["/lead"]) == 1


def test_the_resolved_page_goes_out_after_the_write_and_resolution_waits_for_it(hook):
    scene = EngineScene(spec(hook.url), T0)
    scene.run()
    scene.edit(resolution={"requested": True, "skipVerification": True, "by": "alice"})
    phases: list[str] = []
    hook.on_post = lambda path: phases.append(scene.status()["phase"])
    scene.run()
    assert phases == ["Resolving", "Resolving"]  # the pass that resolves comes after them
    assert scene.status()["phase"] == "Resolved"
    entry = notify_entry(scene)
    assert entry["state"] == "Reverted" and entry["message"] == "resolved sent to oncall, lead"
    assert hook.bodies["/lead"][-1]["event"] == "resolved"


def test_with_a_pool_the_pass_returns_before_any_page_goes_out(hook):
    """In the operator the calls out run on their own threads (World.call_later): the
    handler's thread is free once the pass is written; the job posts, records, runs the
    pass its outcome asks for, and tells the scheduler what that pass asks (World.requeue)."""
    hook.script["/lead"] = [500]
    scene = EngineScene(spec(hook.url), T0)
    jobs: list[Any] = []
    asked: list[tuple[str, str, Any]] = []
    scene.world.call_later = jobs.append
    scene.world.requeue = lambda namespace, name, result: asked.append((namespace, name, result))
    scene.run()
    assert hook.bodies == {}
    assert scene.status()["phase"] == "Mitigated" and notify_entry(scene)["sending"]
    (job,) = jobs
    job()  # as the pool does, on its own thread
    entry = notify_entry(scene)
    assert entry["state"] == "Failed" and entry["delivered"] == {"trigger": ["oncall"]}
    ((namespace, name, result),) = asked
    assert (namespace, name, result.retry) == (NS, "harm", True)  # the scheduler backs off
    hook.script["/lead"] = [200]
    scene.run()
    jobs.pop()()
    assert notify_entry(scene)["state"] == "Applied"
    assert not asked[-1][2].retry  # the pass after the outcome ran, and asks no retry
    assert len(hook.bodies["/oncall"]) == 1


def test_a_call_asked_for_while_in_flight_is_owed_a_pass_once_it_is_done():
    """A pass that finds a call busy skips it; what it wanted may differ from what is being
    sent (a status page's next step), so the call's outcome asks for a pass at once."""
    from ai_incident_operator.engine import outside

    key = ("uid", "StatusPage:sp/url AIIncident/harm")
    (claimed,) = outside.claim([outside.Call(key, lambda: "sent", lambda ctx, result: None)])
    assert outside.busy(key)  # a concurrent pass asks for it again

    class Fresh:
        asked: float | None = None

        def requeue_after(self, seconds: float) -> None:
            self.asked = seconds

    fresh = Fresh()
    outside.run([claimed], lambda change: change(fresh))
    assert fresh.asked == 0.0 and not outside.busy(key)
