"""A contested mitigation on a real apiserver: a GitOps actor keeps putting the replicas back.

The actor is a thread that does what a self-healing sync does (Argo CD selfHeal,
a Flux Kustomization at a short interval): whenever the Deployment's replicas are not
what Git says, it patches them back, as field manager `gitops-sync`. The operator
must say so (Mitigated=False/Contested, naming the object and the actor), page the
response's channel once, back off between its re-applies, post a few Events rather
than one per revert, and say Mitigated again once the actor stops.
"""

from __future__ import annotations

import threading
import time

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import Hook, create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}


class GitOpsActor:
    """Puts `spec.replicas` back to 3 whenever it is not, as field manager gitops-sync."""

    def __init__(self, namespace: str, name: str = "chat-llm") -> None:
        self.namespace, self.name = namespace, name
        self.reverts: list[float] = []  # monotonic times of each revert
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> GitOpsActor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        apps = kubernetes.client.AppsV1Api()
        while not self._stop.is_set():
            current = apps.read_namespaced_deployment(self.name, self.namespace)
            if current.spec.replicas != 3:
                apps.patch_namespaced_deployment(
                    self.name, self.namespace, {"spec": {"replicas": 3}},
                    field_manager="gitops-sync",
                )  # fmt: skip
                self.reverts.append(time.monotonic())
            self._stop.wait(0.2)

    def since(self, when: float) -> int:
        return sum(1 for t in self.reverts if t >= when)


def mitigated(namespace: str, name: str) -> dict:
    conditions = get_incident(namespace, name).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Mitigated"), {})


def contested_events(namespace: str, name: str) -> list[str]:
    items = (
        kubernetes.client.CoreV1Api()
        .list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name},reason=MitigationContested"
        )
        .items
    )
    return [e.message for e in items if e.involved_object.kind == "AIIncident"]


def setup(namespace: str, hook: Hook) -> None:
    kubernetes.client.AppsV1Api().create_namespaced_deployment(
        namespace, deployment("chat-llm", LABELS), field_manager="gitops-sync"
    )
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"defaultSeverity": 1},
        "notifications": {"channels": [{"name": "oncall", "webhook": {"url": hook.url + "/oncall"}}]},
        "responses": [{"severity": 1, "actions": [
            {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall"]}]}],
    }  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", spec))

    def ready() -> bool:
        conditions = (kube.get(Ref("MitigationPolicy", namespace, "chat")) or {}).get("status", {})
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in conditions.get("conditions") or []
        )

    wait_for(ready, 20, "policy Ready")


def replicas(namespace: str) -> int:
    return kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"]


def test_a_gitops_actor_fighting_the_mitigation_is_a_contest_until_it_stops(
    namespace, operator, hook
):
    setup(namespace, hook)
    create_incident(
        namespace, "fight", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: mitigated(namespace, "fight").get("status") == "True", 30, "Mitigated")
    assert replicas(namespace) == 0

    actor = GitOpsActor(namespace).start()
    try:
        cond = wait_for(
            lambda: (c := mitigated(namespace, "fight")).get("reason") == "Contested" and c,
            30, "Mitigated=False/Contested",
        )  # fmt: skip
        contested_at = time.monotonic()
        assert cond["status"] == "False"
        assert "Deployment/chat-llm: ScaleToZero is contested" in cond["message"]
        assert "field manager gitops-sync" in cond["message"]
        status = get_incident(namespace, "fight")["status"]
        assert status["phase"] == "Mitigating"
        [record] = status["contests"]
        assert (record["object"], record["manager"]) == ("Deployment/chat-llm", "gitops-sync")
        page = wait_for(
            lambda: [b for b in hook.bodies.get("/oncall", []) if b.get("event") == "contested"],
            10, "the contest page",
        )  # fmt: skip
        assert page[0]["contested"]["manager"] == "gitops-sync"

        # The fight goes on: the operator backs off (2 s, then 4 s, then 8 s between its
        # writes) instead of re-applying at the actor's pace (about twice a second).
        time.sleep(8)
        fought = actor.since(contested_at)
        assert 1 <= fought <= 4, actor.reverts
    finally:
        actor.stop()
    total = len(actor.reverts)
    assert total >= 4
    events = contested_events(namespace, "fight")
    assert 1 <= len(events) <= 3 < total, events  # aggregated, not one per revert
    assert len([b for b in hook.bodies["/oncall"] if b.get("event") == "contested"]) == 1

    # The actor stopped: the next re-apply holds and, after the quiet time, it is over.
    wait_for(
        lambda: mitigated(namespace, "fight").get("reason") == "ActionsApplied", 40,
        "Mitigated=True again",
    )  # fmt: skip
    status = get_incident(namespace, "fight")["status"]
    assert status["phase"] == "Mitigated" and "contests" not in status
    assert replicas(namespace) == 0
    ended = [t for t in status["timeline"] if t["type"] == "MitigationHolds"]
    assert len(ended) == 1 and "gitops-sync" in ended[0]["message"], status["timeline"]
