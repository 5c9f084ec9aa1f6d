"""Issue 12 item 8: a response waiting for approval is paged, once, with the command.

`engine.reconcile` on a FakeCluster; the pages go to a real HTTP receiver. A restart
is a process that forgets what it sent (`notify._sent` emptied): only the status
remembers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ai_incident_operator.actions import notify

from scenekit import EngineScene

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
COMMAND = "aiincident approve harm -n prod"
Body = dict[str, Any]


class Scene(EngineScene):
    def __init__(self, hook_url: str, dry_run: bool = False) -> None:
        super().__init__({
            "targetSelector": {"matchLabels": {"app": "chat"}},
            "responses": [{"severity": 1, "requireApproval": True, "actions": [
                {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall", "lead"]}]}],
            "notifications": {"channels": [
                {"name": "oncall", "format": "Generic", "webhook": {"url": f"{hook_url}/oncall"}},
                {"name": "lead", "format": "Slack", "webhook": {"url": f"{hook_url}/lead"}},
            ]},
            "safety": {"dryRun": dry_run},
        }, T0)  # fmt: skip


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))


def restart(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new operator process: nothing it sent is remembered in memory."""
    monkeypatch.setattr(notify, "_sent", {})


def test_a_response_awaiting_approval_pages_its_channels_once_with_the_command(hook, monkeypatch):
    scene = Scene(hook.url)
    scene.run()
    assert scene.status()["phase"] == "AwaitingApproval"
    (generic,) = hook.bodies["/oncall"]
    assert generic["event"] == "approval-required"
    assert generic["approve"] == COMMAND
    assert (generic["severity"], generic["phase"]) == (1, "AwaitingApproval")
    assert generic["actions"] == ["ScaleToZero", "Notify"]
    (slack,) = hook.bodies["/lead"]
    assert slack["text"].startswith("[SEV1] prod/harm HarmfulOutput")
    assert slack["text"].endswith(f"waits for approval to apply ScaleToZero, Notify: {COMMAND}")
    assert scene.timeline("ApprovalRequested") == [f"asked for approval on oncall, lead: {COMMAND}"]
    assert scene.status()["approvalPage"]["channels"] == ["oncall", "lead"]

    scene.run()  # another pass
    restart(monkeypatch)
    scene.edit(description="more users affected")  # a spec change after the restart
    scene.run()
    assert scene.status()["phase"] == "AwaitingApproval"
    assert (len(hook.bodies["/oncall"]), len(hook.bodies["/lead"])) == (1, 1)
    assert len(scene.timeline("ApprovalRequested")) == 1


def test_a_channel_that_failed_is_tried_again_and_the_others_are_not(hook, monkeypatch):
    hook.script["/lead"] = [500]
    scene = Scene(hook.url)
    assert scene.run().retry
    assert scene.status()["approvalPage"]["channels"] == ["oncall"]
    assert scene.run().retry  # still down: tried again, said once
    failed = [m for m in scene.timeline("ApprovalRequested") if "failed: lead" in m]
    assert len(failed) == 1
    hook.script["/lead"] = [200]
    restart(monkeypatch)
    assert not scene.run().retry
    assert scene.status()["approvalPage"]["channels"] == ["oncall", "lead"]
    assert len(hook.bodies["/oncall"]) == 1
    assert hook.bodies["/lead"][-1]["text"].endswith(COMMAND)
    assert scene.timeline("ApprovalRequested")[-1] == f"asked for approval on lead: {COMMAND}"


def test_who_approved_is_in_the_timeline_and_the_condition(hook):
    scene = Scene(hook.url)
    scene.run()
    scene.edit(approved=True, approvedBy="alice")
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    assert scene.timeline("Approved") == ["response approved by alice"]
    assert scene.condition("Approved") == (
        "True", "Approved", "spec.approved is true (approved by alice)"
    )  # fmt: skip
    assert hook.bodies["/oncall"][-1]["event"] == "incident"  # the response's own page
    scene.run()
    assert len(scene.timeline("Approved")) == 1


def test_a_dry_run_policy_pages_nobody(hook):
    scene = Scene(hook.url, dry_run=True)
    scene.run()
    assert scene.status()["phase"] == "AwaitingApproval"
    assert hook.bodies == {}
