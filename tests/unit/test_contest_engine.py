"""A contested mitigation in the engine, without a cluster: `engine.reconcile` on a FakeCluster.

A GitOps actor (field manager `gitops-sync`) puts the replicas back after each write;
the clock moves with `now=`. What the incident says (Mitigated=False/Contested, the
actor, the phase), the page, the backoff between writes, the aggregated Events and
the end of the contest are all decided from `status.contests`, so a pass on a fresh
read (a restarted operator) continues where the last one was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_incident_operator import contest, engine
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster
from kit import Hook

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]


def _managed(manager: str, when: datetime) -> list[Body]:
    """managedFields as the apiserver keeps them after MANAGER's update of the replicas."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {"manager": "kubectl-create", "operation": "Update", "time": "2025-03-01T08:00:00Z",
         "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {}}}}}},
        {"manager": "ai-incident-operator", "operation": "Update", "time": "2025-03-01T09:00:00Z",
         "fieldsV1": {"f:metadata": {"f:annotations": {"f:aiincident.io/ledger": {}}}}},
        {"manager": manager, "operation": "Update", "time": stamp,
         "fieldsV1": {"f:spec": {"f:replicas": {}}}},
    ]  # fmt: skip


class Fight:
    def __init__(self, hook: Hook) -> None:
        self.fake = FakeCluster()
        self.now = T0
        self.fake.add({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}},
                                  "spec": {"containers": [{"name": "llm", "image": "llm:v42"}]}}},
        })  # fmt: skip
        policy = {
            "targetSelector": {"matchLabels": {"app": "chat"}},
            "notifications": {"channels": [{"name": "oncall", "webhook": {"url": hook.url + "/p"}}]},
            "responses": [{"severity": 1, "actions": [
                {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall"]}]}],
        }  # fmt: skip
        self.world = engine.World(policies=[{
            "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "chat", "namespace": NS, "generation": 1}, "spec": policy,
            "status": {"observedGeneration": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }])  # fmt: skip
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": NS, "uid": "u-harm"},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"}},
        })  # fmt: skip

    def run(self, after: float = 0.0) -> engine.Result:
        self.now += timedelta(seconds=after)
        return engine.reconcile(NS, "harm", self.world, api=self.fake, now=self.now)

    def revert(self, after: float = 0.5) -> None:
        """The actor puts the replicas back, AFTER seconds from now."""
        self.now += timedelta(seconds=after)
        ref = Ref("Deployment", NS, "chat")
        body = self.fake.obj("Deployment", NS, "chat")
        assert body is not None
        body["spec"]["replicas"] = 3
        body["metadata"]["managedFields"] = _managed("gitops-sync", self.now)
        self.fake.replace(ref, body)

    def replicas(self) -> int:
        return self.fake.obj("Deployment", NS, "chat")["spec"]["replicas"]

    def status(self) -> Body:
        return self.fake.obj("AIIncident", NS, "harm").get("status") or {}

    def mitigated(self) -> tuple[str, str, str]:
        found = next(c for c in self.status()["conditions"] if c["type"] == "Mitigated")
        return found["status"], found["reason"], found["message"]

    def deployment_writes(self) -> int:
        return sum(1 for _, what in self.fake.writes if what == "Deployment/chat")

    def contested_events(self) -> list[str]:
        return [m for who, _, reason, m in self.fake.events
                if who == "AIIncident/harm" and reason == "MitigationContested"]  # fmt: skip


@pytest.fixture
def fight() -> Any:
    hook = Hook()
    yield Fight(hook), hook
    hook.server.shutdown()
    hook.server.server_close()


def test_repeated_reverts_are_a_contest_with_the_actor_a_page_and_backoff(fight):
    scene, hook = fight
    scene.run()
    assert scene.replicas() == 0 and scene.mitigated()[:2] == ("True", "ActionsApplied")
    for _ in range(2):  # two reverts: repaired at once, still Mitigated
        scene.revert()
        scene.run(0.2)
        assert scene.replicas() == 0 and scene.mitigated()[0] == "True"
    scene.revert()
    result = scene.run(0.2)
    assert scene.replicas() == 0  # the third is re-applied at once too ...
    status, reason, message = scene.mitigated()  # ... but the incident says the truth
    assert (status, reason) == ("False", "Contested")
    assert "Deployment/chat: ScaleToZero is contested" in message
    assert "field manager gitops-sync" in message and "/spec/replicas reverted 3 times" in message
    assert scene.status()["phase"] == "Mitigating"
    assert "MitigationContested" in [t["type"] for t in scene.status()["timeline"]]
    pages = [b for b in hook.bodies["/p"] if b.get("event") == "contested"]
    assert len(pages) == 1 and pages[0]["contested"]["manager"] == "gitops-sync"
    assert pages[0]["contested"]["object"] == "Deployment/chat"
    # Holding for now: the next look is when the quiet time would end it (a revert before
    # that brings the pass at once, through the watch).
    assert result.requeue_after == pytest.approx(contest.QUIET.total_seconds(), abs=0.1)

    # The actor reverts during the 2 s wait: the operator looks but does not write.
    scene.revert()
    writes = scene.deployment_writes()
    scene.run(0.2)
    assert scene.replicas() == 3 and scene.deployment_writes() == writes
    [record] = scene.status()["contests"]
    assert record["strikes"] == 2 and record["manager"] == "gitops-sync"
    assert record["nextApplyAt"] == contest.stamp(T0 + timedelta(seconds=2.1 + 4))  # 4 s now
    scene.run(1.0)  # still waiting
    assert scene.replicas() == 3 and scene.deployment_writes() == writes
    scene.run(3.0)  # the wait is over: applied again
    assert scene.replicas() == 0 and scene.deployment_writes() == writes + 1
    # One page per contest, and far fewer Events than reverts.
    assert len([b for b in hook.bodies["/p"] if b.get("event") == "contested"]) == 1
    assert len(scene.contested_events()) == 2  # the first revert, and the contest


def test_when_the_actor_stops_the_mitigation_holds_and_mitigated_is_true_again(fight):
    scene, _ = fight
    scene.run()
    for _ in range(3):
        scene.revert()
        scene.run(0.2)
    assert scene.mitigated()[1] == "Contested"
    # The actor stops. The last write holds: after the quiet time the contest is over.
    result = scene.run(5.0)
    assert scene.mitigated()[1] == "Contested"
    assert result.requeue_after is not None
    scene.run(result.requeue_after)
    assert scene.mitigated()[:2] == ("True", "ActionsApplied")
    assert scene.status()["phase"] == "Mitigated"
    assert "contests" not in scene.status()
    types = [t["type"] for t in scene.status()["timeline"]]
    assert types[-2:] == ["MitigationHolds", "Mitigated"]
    ended = next(t for t in scene.status()["timeline"] if t["type"] == "MitigationHolds")
    assert "3 reverts" in ended["message"] and "gitops-sync" in ended["message"]


def test_the_backoff_is_kept_in_the_status_and_a_fresh_pass_keeps_to_it(fight):
    scene, _ = fight
    scene.run()
    for _ in range(4):
        scene.revert()
        scene.run(0.2)
    [record] = scene.status()["contests"]
    wait = contest.load(record)
    # A new operator process has nothing but the status: the same world, no memory.
    scene.world = engine.World(policies=list(scene.world.policies))
    writes = scene.deployment_writes()
    scene.run(0.5)
    assert scene.replicas() == 3 and scene.deployment_writes() == writes
    assert contest.load(scene.status()["contests"][0]).strikes == wait.strikes
    assert scene.mitigated()[1] == "Contested"


def test_one_revert_is_repaired_at_once_and_said_once(fight):
    scene, hook = fight
    scene.run()
    scene.revert()
    scene.run(0.2)
    assert scene.replicas() == 0 and scene.mitigated()[:2] == ("True", "ActionsApplied")
    [event] = scene.contested_events()
    assert "was reverted (/spec/replicas) by field manager gitops-sync; re-applied" in event
    assert not [b for b in hook.bodies.get("/p", []) if b.get("event") == "contested"]


def test_a_long_fight_makes_an_event_a_minute_that_counts_the_reverts(fight):
    scene, _ = fight
    scene.run()
    reverts = 0
    while scene.now < T0 + timedelta(minutes=4):
        if scene.replicas() == 0:  # the actor answers every write within half a second
            scene.revert()
            reverts += 1
        scene.run(0.25)
    events = scene.contested_events()
    # The first revert, the contest, then at most one a minute: not one per revert.
    assert reverts >= 8 and len(events) <= 2 + 4 < reverts
    more = [int(m.split("reverted ")[1].split(" more")[0]) for m in events if " more " in m]
    record = contest.load(scene.status()["contests"][0])
    started = int(
        next(m for m in events if "is contested" in m).split("reverted ")[1].split(" ")[0]
    )
    assert started + sum(more) + record.unreported == reverts == record.count
    # The writes slowed down: the last waits are tens of seconds.
    assert contest.backoff(record.strikes) >= timedelta(seconds=30)
