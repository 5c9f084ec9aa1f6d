"""One incident on a FakeCluster, run by the real engine: the unit tests of pages, approval
and escalation share it (a Deployment `chat` in NS, a ready policy with SPEC, incident
`harm` of severity 1 on it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ai_incident_operator import engine
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

Body = dict[str, Any]
NS = "prod"


class EngineScene:
    def __init__(self, spec: Body, now: datetime, incident: Body | None = None) -> None:
        self.fake = FakeCluster()
        self.start = self.now = now
        self.fake.add({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}},
                                  "spec": {"containers": [{"name": "llm", "image": "llm:v1"}]}}},
        })  # fmt: skip
        self.world = engine.World(policies=[{
            "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "chat", "namespace": NS, "generation": 1}, "spec": spec,
            "status": {"observedGeneration": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }], write_review=lambda ctx: None)  # fmt: skip
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": NS},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"},
                     **(incident or {})},
        })  # fmt: skip

    def run(self) -> engine.Result:
        """The next pass, 30 s after the last."""
        self.now += timedelta(seconds=30)
        return engine.reconcile(NS, "harm", self.world, api=self.fake, now=self.now)

    def incident(self) -> Body:
        found = self.fake.obj("AIIncident", NS, "harm")
        assert found is not None
        return found

    def status(self) -> Body:
        return self.incident().get("status") or {}

    def edit(self, **spec: Any) -> None:
        body = self.incident()
        body["spec"].update(spec)
        self.fake.replace(Ref("AIIncident", NS, "harm"), body)

    def timeline(self, type_: str) -> list[str]:
        return [t["message"] for t in self.status()["timeline"] if t["type"] == type_]

    def condition(self, type_: str) -> tuple[str, str, str]:
        found = next(c for c in self.status()["conditions"] if c["type"] == type_)
        return found["status"], found["reason"], found["message"]
