"""Issue 15 item 1: paging with acknowledgement, through the engine.

`engine.reconcile` on a FakeCluster; the pages go to the local PagerDuty, Opsgenie and
Teams receivers (tests/pagerkit.py), which refuse what the real services would. Keys
and URLs come from Secrets in the operator's namespace. A restart is a process that
forgets what it sent (`notify._sent` emptied): only the status remembers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_incident_operator import engine
from ai_incident_operator.actions import notify, pages
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster
from pagerkit import Pager

NS = "prod"
HOME = "aiincident-system"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ROUTING = "R" * 32
GENIE = "genie-key"
Body = dict[str, Any]


def secret(name: str, **data: str) -> Body:
    return {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": HOME,
                     "annotations": {"aiincident.io/allowed-namespaces": NS}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


class Scene:
    def __init__(
        self, pager: Pager, channels: list[str] | None = None, approval: bool = False
    ) -> None:
        self.fake = FakeCluster()
        self.pager = pager
        self.now = T0
        self.fake.add(secret("pd", url=pager.pagerduty_url, routingKey=ROUTING))
        self.fake.add(secret("og", apiKey=GENIE))
        self.fake.add({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}},
                                  "spec": {"containers": [{"name": "llm", "image": "llm:v1"}]}}},
        })  # fmt: skip
        names = channels or ["oncall", "ops", "room"]
        spec = {
            "targetSelector": {"matchLabels": {"app": "chat"}},
            "responses": [{"severity": 1, "requireApproval": approval, "actions": [
                {"type": "ScaleToZero"}, {"type": "Notify", "channels": names}]}],
            "notifications": {"channels": [
                {"name": "oncall", "format": "PagerDuty",
                 "webhook": {"urlSecretRef": {"name": "pd", "key": "url"}},
                 "routingKeySecretRef": {"name": "pd", "key": "routingKey"}},
                {"name": "ops", "format": "Opsgenie", "webhook": {"url": pager.opsgenie_url},
                 "apiKeySecretRef": {"name": "og", "key": "apiKey"}},
                {"name": "room", "format": "MSTeams", "webhook": {"url": pager.teams_url()}},
            ]},
        }  # fmt: skip
        self.world = engine.World(policies=[{
            "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "chat", "namespace": NS, "generation": 1}, "spec": spec,
            "status": {"observedGeneration": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }], write_review=lambda ctx: None)  # fmt: skip
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": NS},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"}},
        })  # fmt: skip

    def run(self) -> engine.Result:
        self.now += timedelta(seconds=30)
        return engine.reconcile(NS, "harm", self.world, api=self.fake, now=self.now)

    def incident(self) -> Body:
        found = self.fake.obj("AIIncident", NS, "harm")
        assert found is not None
        return found

    def status(self) -> Body:
        return self.incident().get("status") or {}

    def key(self) -> str:
        return pages.dedup_key(self.incident()["metadata"])

    def entry(self) -> Body:
        return next(e for e in self.status()["mitigations"] if e["action"] == "Notify")

    def edit(self, **spec: Any) -> None:
        body = self.incident()
        body["spec"].update(spec)
        self.fake.replace(Ref("AIIncident", NS, "harm"), body)

    def timeline(self, type_: str) -> list[str]:
        return [t["message"] for t in self.status()["timeline"] if t["type"] == type_]

    def condition(self, type_: str) -> tuple[str, str, str]:
        found = next(c for c in self.status()["conditions"] if c["type"] == type_)
        return found["status"], found["reason"], found["message"]

    def sent(self) -> tuple[list[str], list[str], int]:
        return (
            self.pager.actions("pagerduty"),
            self.pager.actions("opsgenie"),
            len(self.pager.events["teams"]),
        )


@pytest.fixture
def pager() -> Iterator[Pager]:
    found = Pager({ROUTING}, {GENIE})
    yield found
    found.close()


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", HOME)
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))


def restart(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "_sent", {})


def test_page_ack_resolve_reach_each_service_once_across_restarts(pager, monkeypatch):
    scene = Scene(pager)
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    key = scene.key()
    (trigger,) = pager.events["pagerduty"]
    assert trigger["body"]["routing_key"] == ROUTING
    assert trigger["body"]["event_action"] == "trigger"
    assert trigger["body"]["dedup_key"] == key
    assert trigger["body"]["payload"]["severity"] == "critical"
    (create,) = pager.events["opsgenie"]
    assert (create["alias"], create["body"]["priority"]) == (key, "P1")
    (og_headers,) = [h for path, h, _ in pager.requests if path.startswith("/v2/alerts")]
    assert og_headers["Authorization"] == f"GenieKey {GENIE}"
    assert scene.entry()["delivered"] == {"trigger": ["oncall", "ops", "room"]}
    assert pager.alerts == {key: "open"}

    scene.run()
    restart(monkeypatch)
    scene.edit(description="more users")  # a pass after the restart
    scene.run()
    assert scene.sent() == (["trigger"], ["create"], 1)

    scene.edit(acknowledged={"by": "alice", "at": "2026-03-01T09:05:00Z"})
    scene.run()
    assert scene.sent() == (["trigger", "acknowledge"], ["create", "acknowledge"], 2)
    ack = pager.events["pagerduty"][-1]["body"]
    assert ack == {"routing_key": ROUTING, "event_action": "acknowledge", "dedup_key": key}
    assert pager.events["opsgenie"][-1]["body"]["user"] == "alice"
    assert pager.alerts == {key: "acknowledged"}
    words = "acknowledged by alice at 2026-03-01T09:05:00Z"
    assert scene.condition("Acknowledged") == ("True", "AcknowledgedBy", words)
    assert scene.timeline("Acknowledged") == [words]
    assert scene.timeline("AcknowledgementSent") == ["acknowledgement sent to oncall, ops, room"]
    assert scene.entry()["delivered"]["acknowledge"] == ["oncall", "ops", "room"]

    restart(monkeypatch)
    scene.run()
    scene.run()
    assert scene.sent() == (["trigger", "acknowledge"], ["create", "acknowledge"], 2)
    assert len(scene.timeline("Acknowledged")) == 1

    scene.edit(resolution={"requested": True})
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert scene.sent() == (
        ["trigger", "acknowledge", "resolve"], ["create", "acknowledge", "close"], 3
    )  # fmt: skip
    assert pager.events["pagerduty"][-1]["body"]["dedup_key"] == key
    assert pager.alerts == {key: "resolved"}
    assert pager.errors == []
    # Secrets are read, never kept.
    assert ROUTING not in json.dumps(scene.status()) and GENIE not in json.dumps(scene.status())


def test_a_channel_that_failed_is_tried_again_and_the_others_are_not_even_after_a_restart(
    pager, monkeypatch
):
    pager.fail("/v2/enqueue", 500, times=4)  # every try of the first pass
    scene = Scene(pager)
    assert scene.run().retry
    entry = scene.entry()
    assert entry["state"] == "Failed"
    assert entry["delivered"] == {"trigger": ["ops", "room"]}
    restart(monkeypatch)
    scene.run()
    assert scene.entry()["state"] == "Applied"
    assert scene.sent() == (["trigger"], ["create"], 1)
    assert scene.entry()["delivered"] == {"trigger": ["ops", "room", "oncall"]}


def test_an_acknowledgement_that_fails_is_retried_for_that_channel_only(pager, monkeypatch):
    scene = Scene(pager)
    scene.run()
    pager.fail("/v2/enqueue", 503, times=4)
    scene.edit(acknowledged={"by": "bob"})
    assert scene.run().retry
    assert scene.entry()["delivered"]["acknowledge"] == ["ops", "room"]
    restart(monkeypatch)
    assert not scene.run().retry
    assert scene.sent() == (["trigger", "acknowledge"], ["create", "acknowledge"], 2)
    assert scene.condition("Acknowledged") == ("True", "AcknowledgedBy", "acknowledged by bob")


def test_an_acknowledgement_before_the_page_reaches_it_in_the_same_pass(pager):
    scene = Scene(pager)
    scene.edit(acknowledged={"by": "carol"})
    scene.run()
    assert scene.sent() == (["trigger", "acknowledge"], ["create", "acknowledge"], 2)
    assert pager.alerts == {scene.key(): "acknowledged"}


def test_withdrawing_the_acknowledgement_sets_the_condition_false(pager):
    scene = Scene(pager, channels=["oncall"])
    scene.edit(acknowledged={"by": "dave"})
    scene.run()
    body = scene.incident()
    del body["spec"]["acknowledged"]
    scene.fake.replace(Ref("AIIncident", NS, "harm"), body)
    scene.run()
    assert scene.condition("Acknowledged") == (
        "False", "AcknowledgementWithdrawn", "spec.acknowledged was removed"
    )  # fmt: skip
    assert scene.sent()[0] == ["trigger", "acknowledge"]


def test_a_missing_routing_key_fails_the_page_with_the_reason(pager):
    scene = Scene(pager, channels=["oncall"])
    scene.fake.delete(Ref("Secret", HOME, "pd"))
    assert scene.run().retry
    entry = scene.entry()
    assert entry["state"] == "Failed"
    assert "Secret pd (key url) is not available to namespace prod" in entry["message"]
    assert pager.events["pagerduty"] == []


def test_an_approval_page_opens_the_alert_and_a_resolution_before_approval_closes_it(pager):
    scene = Scene(pager, channels=["oncall", "ops"], approval=True)
    scene.run()
    assert scene.status()["phase"] == "AwaitingApproval"
    key = scene.key()
    (page,) = pager.events["pagerduty"]
    assert (page["body"]["event_action"], page["dedup_key"]) == ("trigger", key)
    assert page["body"]["payload"]["summary"].endswith(
        "waits for approval to apply ScaleToZero, Notify: aiincident approve harm -n prod"
    )
    assert pager.alerts == {key: "open"}

    scene.edit(resolution={"requested": True})  # a false alarm, resolved while it waited
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert scene.sent() == (["trigger", "resolve"], ["create", "close"], 0)
    assert pager.alerts == {key: "resolved"}
    assert scene.status()["approvalPage"]["resolved"] == ["oncall", "ops"]
    scene.run()
    assert scene.sent() == (["trigger", "resolve"], ["create", "close"], 0)


def test_an_approved_page_is_resolved_by_its_notify_not_twice(pager):
    scene = Scene(pager, channels=["oncall"], approval=True)
    scene.run()
    scene.edit(approved=True, approvedBy="erin")
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    scene.edit(resolution={"requested": True})
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert pager.actions() == ["trigger", "trigger", "resolve"]  # one alert (one dedup key)
    assert pager.alerts == {scene.key(): "resolved"}
    assert scene.status()["approvalPage"]["resolved"] == []


def test_a_key_that_is_not_one_word_is_refused_without_quoting_it(pager):
    scene = Scene(pager, channels=["ops"])
    scene.fake.add(secret("og", apiKey="genie\nX-Injected: yes"))
    assert scene.run().retry
    entry = scene.entry()
    assert entry["state"] == "Failed"
    assert "apiKeySecretRef og/apiKey: not a key (one word, printable)" in entry["message"]
    assert "genie" not in json.dumps(scene.status())
    assert pager.events["opsgenie"] == []
