"""Issue 12 item 16: the policy deleted mid-incident still lets the "resolved" page go out.

`engine.reconcile` on a FakeCluster, with the policy as kopf's index holds it; deleting
the policy is taking it out of `World.policies`. The pages go to a real HTTP receiver.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_incident_operator import engine
from ai_incident_operator.actions import notify
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

NS = "prod"
HOME = "aiincident-system"  # the operator's namespace, where its Secrets are
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]


def policy(hook_url: str, kind: str = "MitigationPolicy") -> Body:
    """A ready policy: severity 1 scales the model to zero and pages two channels."""
    meta = {
        "name": "chat",
        "generation": 1,
        **({"namespace": NS} if kind != "ClusterMitigationPolicy" else {}),
    }
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "targetSelector": {"matchLabels": {"app": "chat"}},
            "responses": [{"severity": 1, "actions": [
                {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall", "lead"]}]}],
            "notifications": {"channels": [
                {"name": "oncall", "format": "Generic", "webhook": {"url": f"{hook_url}/oncall"}},
                {"name": "lead", "format": "Slack",
                 "webhook": {"urlSecretRef": {"name": "lead-hook", "key": "url"}}},
            ]},
        },
        "status": {"observedGeneration": 1,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
    }  # fmt: skip


class Scene:
    def __init__(self, hook_url: str, kind: str = "MitigationPolicy") -> None:
        self.fake = FakeCluster()
        self.now = T0
        self.secret_url = f"{hook_url}/lead"
        self.fake.add({
            "kind": "Secret",
            "metadata": {"name": "lead-hook", "namespace": HOME,
                         "annotations": {"aiincident.io/allowed-namespaces": NS}},
            "data": {"url": base64.b64encode(self.secret_url.encode()).decode()},
        })  # fmt: skip
        self.fake.add({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}},
                                  "spec": {"containers": [{"name": "llm", "image": "llm:v1"}]}}},
        })  # fmt: skip
        self.world = engine.World(policies=[policy(hook_url, kind)], write_review=lambda ctx: None)
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": NS},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"}},
        })  # fmt: skip

    def run(self) -> None:
        self.now += timedelta(seconds=30)
        engine.reconcile(NS, "harm", self.world, api=self.fake, now=self.now)

    def incident(self) -> Body:
        found = self.fake.obj("AIIncident", NS, "harm")
        assert found is not None
        return found

    def status(self) -> Body:
        return self.incident().get("status") or {}

    def notify_entry(self) -> Body:
        return next(e for e in self.status()["mitigations"] if e["action"] == "Notify")

    def resolve(self) -> None:
        body = self.incident()
        body["spec"]["resolution"] = {"requested": True, "fix": "template restored"}
        self.fake.replace(Ref("AIIncident", NS, "harm"), body)


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", HOME)
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))


def test_the_resolved_page_goes_out_after_the_policy_was_deleted(hook):
    scene = Scene(hook.url)
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    assert hook.bodies["/oncall"][0]["event"] == "incident"
    assert hook.bodies["/lead"][0]["text"].startswith("[SEV1] prod/harm")

    scene.world.policies = []  # kubectl delete mitigationpolicy chat
    scene.run()
    assert "policyRef" not in scene.status()
    assert scene.status()["phase"] == "Mitigated"  # what is held stays until resolution
    scene.resolve()
    scene.run()

    status = scene.status()
    assert status["phase"] == "Resolved"
    assert "policyRef" not in status
    entry = scene.notify_entry()
    assert (entry["state"], entry["message"]) == ("Reverted", "resolved sent to oncall, lead")
    assert hook.bodies["/oncall"][-1]["event"] == "resolved"
    assert hook.bodies["/lead"][-1]["text"].startswith("[RESOLVED] prod/harm")
    assert scene.fake.obj("Deployment", NS, "chat")["spec"]["replicas"] == 3
    # What was kept names the Secret, never what it holds.
    assert scene.secret_url not in json.dumps(status)


def test_deleting_the_incident_after_its_policy_still_says_resolved(hook):
    scene = Scene(hook.url)
    scene.run()
    scene.world.policies = []
    result = engine.finalize(NS, "harm", scene.incident(), scene.world, api=scene.fake,
                             now=scene.now)  # fmt: skip
    assert not result.waiting_for
    assert hook.bodies["/oncall"][-1]["event"] == "resolved"
    assert hook.bodies["/lead"][-1]["text"].startswith("[RESOLVED] prod/harm")


def test_a_cluster_policys_inline_url_is_not_copied_into_the_incident(hook):
    """A tenant reads its incident's status; an admin's inline URL must not reach it there."""
    scene = Scene(hook.url, kind="ClusterMitigationPolicy")
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    assert f"{hook.url}/oncall" not in json.dumps(scene.status())
    scene.world.policies = []
    scene.resolve()
    scene.run()
    entry = scene.notify_entry()
    assert entry["state"] == "Reverted"
    assert entry["message"].startswith("resolved sent to lead; failed: oncall (its webhook.url")
    assert hook.bodies["/lead"][-1]["text"].startswith("[RESOLVED] prod/harm")
    assert [b["event"] for b in hook.bodies["/oncall"]] == ["incident"]


def test_nobody_is_told_resolved_while_recovery_is_still_being_verified(hook):
    scene = Scene(hook.url)
    spec = scene.world.policies[0]["spec"]
    spec["resolution"] = {"verification": {
        "prometheusURL": "http://prometheus:9090", "window": "5m",
        "checks": [{"name": "quality", "query": "min(quality)", "min": 0.9}]}}  # fmt: skip
    verdict = [(False, "quality: 0.4 below 0.9")]
    scene.world.verify = lambda checks, url, window, now: verdict[0]
    scene.run()
    scene.resolve()
    scene.run()
    assert scene.status()["phase"] == "Resolving"
    assert scene.fake.obj("Deployment", NS, "chat")["spec"]["replicas"] == 3  # capacity first
    assert hook.bodies["/oncall"][-1]["event"] == "incident"  # not "resolved" yet
    verdict[0] = (True, "quality: 0.97 above 0.9 for 5m")
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert hook.bodies["/oncall"][-1]["event"] == "resolved"
