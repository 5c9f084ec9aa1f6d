"""Issue 12 item 5: RootCauseIdentified follows the person, in every phase.

`engine.reconcile` on a FakeCluster; the hypotheses are written into the status as the
evidence refresh writes them, apart from the pass.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ai_incident_operator import engine, kube
from ai_incident_operator.investigation.hypotheses import ConfigChange, Facts, rank
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

DETECTED = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]


def model() -> Body:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "prod", "labels": {"app": "chat"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}}, "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {"containers": [{"name": "llm", "image": "registry.local/llm:v42"}]}}},
    }  # fmt: skip


class Scene:
    def __init__(self) -> None:
        self.fake = FakeCluster()
        self.now = DETECTED
        self.fake.add(model())
        self.world = engine.World(policies=[{
            "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "chat", "namespace": "prod", "generation": 1},
            "spec": {"targetSelector": {"matchLabels": {"app": "chat"}},
                     "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]},
            "status": {"observedGeneration": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }], write_review=lambda ctx: None)  # fmt: skip

    def open(self, target: str = "chat") -> None:
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": "prod"},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": target}},
        })  # fmt: skip

    def run(self) -> None:
        self.now += timedelta(seconds=30)
        engine.reconcile("prod", "harm", self.world, api=self.fake, now=self.now)

    def body(self) -> Body:
        found = self.fake.obj("AIIncident", "prod", "harm")
        assert found is not None
        return found

    def edit(self, **spec: Any) -> None:
        body = self.body()
        body["spec"].update(spec)
        self.fake.replace(Ref("AIIncident", "prod", "harm"), body)

    def hypotheses(self, ranked: list[Body]) -> None:
        """What the evidence refresh records, apart from the pass."""
        self.fake.patch_status(Ref("AIIncident", "prod", "harm"), {"hypotheses": ranked})

    def root_cause(self) -> tuple[str, str, str]:
        found = next(c for c in self.body()["status"]["conditions"]
                     if c["type"] == "RootCauseIdentified")  # fmt: skip
        return found["status"], found["reason"], found["message"]


BLAME = [{"cause": "DeploymentChange", "confidence": 0.9,
          "evidence": ["Deployment/chat rolled out revision 2 10m before detection"]}]  # fmt: skip


def test_a_cause_stated_after_resolution_wins_over_the_hypotheses():
    scene = Scene()
    scene.open()
    scene.run()
    scene.hypotheses(BLAME)
    scene.run()
    assert scene.root_cause()[:2] == ("True", "HypothesisAboveThreshold")
    scene.edit(resolution={"requested": True})
    scene.run()
    assert scene.body()["status"]["phase"] == "Resolved"
    # The review: the person writes down what it really was.
    scene.edit(resolution={"requested": True, "rootCause": "prompt template v42"})
    scene.run()
    assert scene.root_cause() == (
        "True", "StatedInSpec", "spec.resolution.rootCause: prompt template v42"
    )  # fmt: skip


def test_an_incident_without_a_target_takes_the_stated_cause_too():
    scene = Scene()
    scene.open(target="chat-typo")
    scene.run()
    scene.edit(resolution={"requested": True, "rootCause": "a bad prompt in the gateway"})
    scene.run()
    assert scene.root_cause()[:2] == ("True", "StatedInSpec")


def test_a_configmap_the_operator_wrote_last_is_not_a_changed_template():
    """ConservativeConfig's keys (or their undo) are the operator's, not an edited prompt."""
    ours = ConfigChange("Deployment/chat", "chat-prompts", DETECTED, DETECTED - timedelta(days=1),
                        "volume prompts", kube.FIELD_MANAGER, ["system.txt"])  # fmt: skip
    theirs = ConfigChange("Deployment/chat", "chat-prompts", DETECTED - timedelta(minutes=5),
                          DETECTED - timedelta(days=1), "volume prompts", "kubectl-edit",
                          ["system.txt"])  # fmt: skip
    assert rank(Facts(detected_at=DETECTED, configmaps=[ours]), DETECTED) == []
    assert rank(Facts(detected_at=DETECTED, configmaps=[theirs]), DETECTED)[0]["cause"] == (
        "PromptTemplateChange"
    )
