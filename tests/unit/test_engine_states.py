"""The incident state machine without a cluster: `engine.reconcile` driven on a FakeCluster.

Each test opens an AIIncident next to a Deployment, its Service, a fallback Service
and (for weighted traffic) a VirtualService and an HTTPRoute, then reconciles it
again and again, moving the clock with `now=` and changing the spec, RBAC
(`deny`/`allow`) and the verification verdict in between, as the operator would
see them. Policies come through `engine.World`, ready, as kopf's indexes give them.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ai_incident_operator import engine, ledger
from ai_incident_operator.fieldpath import ABSENT
from ai_incident_operator.resources import Ref

from fakecluster import DEFAULT_KINDS, FakeCluster

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LABELS = {"app": "chat"}
SHIFT = {
    "type": "TrafficShift",
    "router": {"kind": "Service", "name": "chat"},
    "fallback": {"service": "chat-fallback"},
}
SCALE = {"type": "ScaleToZero"}
CONFIG = {
    "type": "ConservativeConfig",
    "container": "llm",
    "env": {"TEMPERATURE": "0.1", "MAX_TOKENS": "256"},
}
GUARD = {"type": "GuardrailSidecar", "container": {"name": "guardrail", "image": "guardrail:v1"}}
CHECKS = {
    "prometheusURL": "http://prometheus:9090",
    "window": "5m",
    "checks": [{"name": "errors", "query": "rate(errors[1m])", "below": 0.01}],
}
FORBIDDEN = '403 Forbidden: deployments "chat" is forbidden: User "test" cannot update resource'
Body = dict[str, Any]


def weighted(kind: str) -> Body:
    return {"type": "TrafficShift", "router": {"kind": kind, "name": "chat"},
            "fallback": {"service": "chat-fallback"}}  # fmt: skip


def ready(spec: Body, name: str = "chat") -> Body:
    """A MitigationPolicy as the indexes hold it once validated: Ready for its generation."""
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": name, "namespace": NS, "generation": 2},
        "spec": spec,
        "status": {
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": ""}],
        },
    }


def deployment(name: str = "chat", namespace: str = NS) -> Body:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(LABELS)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS)},
                "spec": {
                    "containers": [
                        {"name": "llm", "image": "llm:v42",
                         "env": [{"name": "TEMPERATURE", "value": "0.7"}]}
                    ]
                },
            },
        },
    }  # fmt: skip


def service(name: str, app: str) -> Body:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


def as_stored(obj: Body | None) -> Body:
    """OBJ without what every write moves (resourceVersion, generation)."""
    assert obj is not None
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("resourceVersion", None)
    obj["metadata"].pop("generation", None)
    return obj


class Scene:
    """A namespace with the model, its routers and one policy; the clock and the verdict."""

    def __init__(self, *responses: Body, **policy_spec: Any) -> None:
        self.fake = FakeCluster(DEFAULT_KINDS | {"VirtualService", "HTTPRoute"})
        self.now = T0
        self.verdict: tuple[bool, str] = (True, "errors: 0.001 below 0.01 for 5m")
        self.verified: list[tuple[Any, ...]] = []
        self.released: datetime | None = None
        self.fake.add(deployment())
        self.fake.add(service("chat", "chat"))
        self.fake.add(service("chat-fallback", "chat-fallback"))
        self.fake.add({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "chat", "namespace": NS},
            "spec": {"hosts": ["chat"],
                     "http": [{"name": "main", "route": [{"destination": {"host": "chat"}}]}]},
        })  # fmt: skip
        self.fake.add({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "chat", "namespace": NS},
            "spec": {"rules": [{"backendRefs": [{"name": "chat", "port": 80}]}]},
        })  # fmt: skip
        self.original = {kind: self.stored(kind) for kind in ("Deployment", "Service",
                                                               "VirtualService", "HTTPRoute")}  # fmt: skip
        spec = {
            "targetSelector": {"matchLabels": LABELS},
            "responses": list(responses) or [{"severity": 1, "actions": [SHIFT, SCALE]}],
            **policy_spec,
        }
        self.world = engine.World(
            policies=[ready(spec)],
            verify=self.verify,
            write_review=lambda ctx: None,
            last_released=lambda namespace, target, incident: self.released,
        )

    def verify(self, checks: list, url: str, window: timedelta, now: datetime) -> tuple[bool, str]:
        self.verified.append((checks, url, window, now))
        return self.verdict

    # --- the incident ---------------------------------------------------------------------

    def open(self, name: str = "harm", **spec: Any) -> None:
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"},
                     **spec},
        })  # fmt: skip

    def run(self, name: str = "harm", after: timedelta = timedelta(0)) -> engine.Result:
        self.now += after
        return engine.reconcile(NS, name, self.world, api=self.fake, now=self.now)

    def finalize(self, name: str = "harm") -> engine.Result:
        body = self.fake.obj("AIIncident", NS, name)
        return engine.finalize(NS, name, body, self.world, api=self.fake, now=self.now)

    def edit(self, name: str = "harm", **spec: Any) -> None:
        body = self.fake.obj("AIIncident", NS, name)
        assert body is not None
        body["spec"].update(spec)
        self.fake.replace(Ref("AIIncident", NS, name), body)

    def status(self, name: str = "harm") -> Body:
        body = self.fake.obj("AIIncident", NS, name)
        assert body is not None
        return body.get("status") or {}

    def phase(self, name: str = "harm") -> str:
        return self.status(name)["phase"]

    def entries(self, name: str = "harm") -> list[tuple[str, str, str]]:
        return [(e["action"], e["state"], e["message"])
                for e in self.status(name).get("mitigations") or []]  # fmt: skip

    def states(self, name: str = "harm") -> dict[str, str]:
        return {e["action"]: e["state"] for e in self.status(name).get("mitigations") or []}

    def cond(self, type_: str, name: str = "harm") -> tuple[str, str, str]:
        found = next(c for c in self.status(name)["conditions"] if c["type"] == type_)
        return found["status"], found["reason"], found["message"]

    def timeline(self, name: str = "harm") -> list[str]:
        return [t["type"] for t in self.status(name)["timeline"]]

    # --- the workload ---------------------------------------------------------------------

    def stored(self, kind: str) -> Body:
        return as_stored(self.fake.obj(kind, NS, "chat"))

    def replicas(self) -> int:
        return self.stored("Deployment")["spec"]["replicas"]

    def selector(self) -> dict[str, str]:
        return self.stored("Service")["spec"]["selector"]

    def env(self) -> dict[str, str]:
        containers = self.stored("Deployment")["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e["value"] for e in containers[0].get("env") or []}

    def split(self, kind: str) -> list[tuple[str, int]]:
        """(backend, weight) of the router's first route."""
        spec = self.stored(kind)["spec"]
        if kind == "VirtualService":
            return [(d["destination"]["host"], d.get("weight"))
                    for d in spec["http"][0]["route"]]  # fmt: skip
        return [(r["name"], r.get("weight")) for r in spec["rules"][0]["backendRefs"]]

    def untouched(self, *kinds: str) -> bool:
        return all(self.stored(kind) == self.original[kind] for kind in kinds)

    def object_writes(self) -> list[tuple[str, str]]:
        """Every write other than to an incident."""
        return [w for w in self.fake.writes if not w[1].startswith("AIIncident/")]


# --- The happy path ---------------------------------------------------------------------------


def test_detected_triaged_mitigated_resolving_resolved_closed():
    scene = Scene()
    scene.open()

    result = scene.run()
    assert result == engine.Result()
    assert scene.phase() == "Mitigated"
    assert scene.timeline() == [
        "Detected", "Triaged", "MitigationApplied", "MitigationApplied", "Mitigated",
    ]  # fmt: skip
    status = scene.status()
    assert status["triagedAt"] == status["mitigatedAt"] == "2025-03-01T09:00:00Z"
    assert (status["severity"], status["policyRef"]) == (
        1, {"kind": "MitigationPolicy", "name": "chat", "namespace": NS},
    )  # fmt: skip
    assert scene.cond("Triaged") == ("True", "SetInSpec", "severity 1 set in spec.severity")
    assert scene.cond("Approved")[:2] == ("True", "NotRequired")
    assert scene.cond("Mitigated") == (
        "True", "ActionsApplied", "TrafficShift on Deployment/chat, ScaleToZero on Deployment/chat",
    )  # fmt: skip
    assert scene.entries() == [
        ("TrafficShift", "Applied",
         "Service/chat: 100% to chat-fallback (was 0%) (now 100% to chat-fallback, 0% primary)"),
        ("ScaleToZero", "Applied", "Deployment/chat: replicas 3 -> 0"),
    ]  # fmt: skip
    assert (scene.replicas(), scene.selector()) == (0, {"app": "chat-fallback"})
    assert ledger.holders(scene.fake.obj("Deployment", NS, "chat")) == [
        ("prod/harm", "ScaleToZero")
    ]

    # Level-triggered: another pass changes nothing on the workload.
    writes = scene.object_writes()
    assert scene.run(after=timedelta(minutes=1)) == engine.Result()
    assert scene.object_writes() == writes and scene.phase() == "Mitigated"

    scene.edit(resolution={"requested": True, "fix": "v43 shipped"})
    result = scene.run(after=timedelta(minutes=1))
    assert scene.phase() == "Resolved"
    assert scene.timeline()[5:] == [
        "Resolving", "MitigationReverted", "MitigationReverted", "Resolved",
    ]  # fmt: skip
    assert scene.cond("Verified")[:2] == ("True", "NoChecks")
    assert scene.cond("Mitigated")[:2] == ("False", "Undone")
    assert scene.cond("Resolved") == ("True", "ResolutionRequested", "v43 shipped")
    assert scene.cond("Reviewed")[:2] == ("False", "ReviewPending")
    assert scene.states() == {"TrafficShift": "Reverted", "ScaleToZero": "Reverted"}
    assert scene.untouched("Deployment", "Service")
    # Asked back when the review falls due (seven days by default).
    assert result == engine.Result(requeue_after=7 * 24 * 3600 + 1)
    assert scene.status()["reviewDueBy"] == "2025-03-08T09:02:00Z"

    scene.edit(review={"completed": True})
    assert scene.run(after=timedelta(days=1)) == engine.Result()
    assert scene.phase() == "Closed" and scene.timeline()[-1] == "Closed"
    assert scene.cond("Reviewed")[:2] == ("True", "ReviewCompleted")
    assert scene.status()["closedAt"] == "2025-03-02T09:02:00Z"
    before = scene.status()
    scene.run(after=timedelta(days=30))
    assert scene.status() == before  # Closed stays Closed


def test_a_repeated_pass_reports_the_split_from_before_the_mitigation():
    scene = Scene()
    scene.open()
    scene.run()
    status = scene.status()
    scene.run(after=timedelta(minutes=1))
    assert scene.entries()[0][2].startswith("Service/chat: 100% to chat-fallback (was 0%)")
    assert scene.status() == status  # nothing new: the status is not written again


def test_detection_is_stamped_with_the_engines_clock():
    scene = Scene()
    scene.open()
    scene.run()
    status = scene.status()
    assert status["detectedAt"] == status["timeline"][0]["time"] == "2025-03-01T09:00:00Z"


def test_approval_is_awaited_before_anything_changes():
    scene = Scene({"severity": 1, "requireApproval": True, "actions": [SHIFT, SCALE]})
    scene.open()
    assert scene.run() == engine.Result()
    assert scene.phase() == "AwaitingApproval"
    assert scene.timeline() == ["Detected", "Triaged", "AwaitingApproval"]
    assert scene.cond("Approved") == (
        "False", "ApprovalRequired",
        "severity 1 responses need approval: set spec.approved to true",
    )  # fmt: skip
    assert scene.status().get("mitigations") is None
    assert scene.object_writes() == [] and scene.untouched("Deployment", "Service")
    scene.run(after=timedelta(minutes=5))
    assert scene.phase() == "AwaitingApproval" and scene.object_writes() == []

    scene.edit(approved=True)
    assert scene.run(after=timedelta(minutes=1)) == engine.Result()
    assert scene.phase() == "Mitigated"
    assert scene.timeline()[-1] == "Mitigated"
    assert scene.cond("Approved") == ("True", "Approved", "spec.approved is true")
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Applied"}
    assert (scene.replicas(), scene.selector()) == (0, {"app": "chat-fallback"})


# --- Failures and re-planning -----------------------------------------------------------------


def test_a_failed_action_leaves_the_incident_mitigating_and_is_retried():
    scene = Scene()
    scene.open()
    scene.fake.deny("update", "Deployment")

    result = scene.run()
    assert result.retry
    assert scene.phase() == "Mitigating"
    assert scene.entries() == [
        ("TrafficShift", "Applied",
         "Service/chat: 100% to chat-fallback (was 0%) (now 100% to chat-fallback, 0% primary)"),
        ("ScaleToZero", "Failed", f"Deployment/chat: {FORBIDDEN}"),
    ]  # fmt: skip
    assert scene.cond("Mitigated") == (
        "False", "ActionFailed", f"ScaleToZero on Deployment/chat: Deployment/chat: {FORBIDDEN}",
    )  # fmt: skip
    # The other step of the same response is in force; the model is still up.
    assert (scene.replicas(), scene.selector()) == (3, {"app": "chat-fallback"})
    warning = ("AIIncident/harm", "Warning", "MitigationFailed")
    assert any(e[:3] == warning and FORBIDDEN in e[3] for e in scene.fake.events)

    scene.fake.allow("update", "Deployment")
    result = scene.run(after=timedelta(seconds=10))
    assert result == engine.Result()
    assert scene.phase() == "Mitigated"
    assert scene.timeline()[-2:] == ["MitigationApplied", "Mitigated"]
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Applied"}
    assert scene.cond("Mitigated")[:2] == ("True", "ActionsApplied")
    assert scene.replicas() == 0


def test_escalation_adds_actions_and_de_escalation_undoes_exactly_what_it_lacks():
    scene = Scene(
        {"severity": 1, "actions": [SHIFT, CONFIG, SCALE]},
        {"severity": 2, "actions": [SHIFT, CONFIG]},
    )
    scene.open(severity=2)
    scene.run()
    assert scene.states() == {"TrafficShift": "Applied", "ConservativeConfig": "Applied"}
    assert scene.env() == {"TEMPERATURE": "0.1", "MAX_TOKENS": "256"}
    assert scene.replicas() == 3
    at_severity_2 = {kind: scene.stored(kind) for kind in ("Deployment", "Service")}

    scene.edit(severity=1)
    assert scene.run(after=timedelta(minutes=1)) == engine.Result()
    assert scene.status()["severity"] == 1
    assert scene.timeline()[-2:] == ["SeverityChanged", "MitigationApplied"]
    assert scene.states() == {
        "TrafficShift": "Applied", "ConservativeConfig": "Applied", "ScaleToZero": "Applied",
    }  # fmt: skip
    assert scene.replicas() == 0

    scene.edit(severity=2)
    assert scene.run(after=timedelta(minutes=1)) == engine.Result()
    assert scene.timeline()[-2:] == ["SeverityChanged", "MitigationReverted"]
    assert scene.states() == {
        "TrafficShift": "Applied", "ConservativeConfig": "Applied", "ScaleToZero": "Reverted",
    }  # fmt: skip
    # Exactly as under severity 2, ledgers included: only ScaleToZero was let go.
    assert {kind: scene.stored(kind) for kind in at_severity_2} == at_severity_2
    assert scene.phase() == "Mitigated"

    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.phase() == "Resolved" and scene.untouched("Deployment", "Service")


def test_de_escalation_undoes_a_mitigation_whose_re_apply_failed():
    scene = Scene(
        {"severity": 1, "actions": [SHIFT, SCALE]},
        {"severity": 2, "actions": [SHIFT]},
    )
    scene.fake.installed.add("ScaledObject")
    scene.open()
    scene.run()
    scene.fake.deny("list", "ScaledObject")  # ScaleToZero cannot look for a KEDA object now
    assert scene.run(after=timedelta(minutes=1)).retry
    assert scene.replicas() == 0  # still in force, whatever the entry says
    scene.fake.allow("list", "ScaledObject")
    scene.edit(severity=2)
    scene.run(after=timedelta(minutes=1))
    assert scene.replicas() == 3


def test_a_target_in_its_cooldown_is_not_mitigated_again_until_it_ends():
    scene = Scene(safety={"cooldown": "10m"})
    scene.released = T0 - timedelta(minutes=2)  # another incident let go of it
    scene.open()
    cooldown = (
        "cooldown: chat was mitigated until 2025-03-01T08:58:00Z; "
        "not again before 2025-03-01T09:08:00Z"
    )
    result = scene.run()
    assert result.requeue_after == 8 * 60 + 1 and not result.retry  # when the cooldown ends
    assert scene.entries() == [
        ("TrafficShift", "Skipped", cooldown),
        ("ScaleToZero", "Skipped", cooldown),
    ]
    assert scene.object_writes() == [] and scene.untouched("Deployment", "Service")

    scene.run(after=timedelta(minutes=5))  # 09:05, still cooling
    assert scene.states() == {"TrafficShift": "Skipped", "ScaleToZero": "Skipped"}
    assert scene.object_writes() == []

    assert scene.run(after=timedelta(minutes=4)) == engine.Result()  # 09:09
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Applied"}
    assert scene.phase() == "Mitigated" and scene.replicas() == 0


def test_an_incident_held_back_by_a_cooldown_is_not_said_to_be_mitigated():
    scene = Scene(safety={"cooldown": "10m"})
    scene.released = T0 - timedelta(minutes=2)
    scene.open()
    scene.run()
    assert scene.states() == {"TrafficShift": "Skipped", "ScaleToZero": "Skipped"}
    assert scene.cond("Mitigated")[0] != "True"
    assert scene.phase() != "Mitigated"


def test_a_cooldown_never_cancels_what_is_already_in_force():
    scene = Scene(safety={"cooldown": "10m"})
    scene.open()
    scene.run()
    scene.released = T0  # another incident on the same target released it just now
    scene.run(after=timedelta(minutes=1))
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Applied"}
    assert scene.replicas() == 0


# --- Resolution -------------------------------------------------------------------------------


def test_traffic_stays_on_the_fallback_while_verification_fails():
    """The model comes back first (its own metrics must show recovery); users stay off it."""
    scene = Scene(resolution={"verification": CHECKS})
    scene.open()
    scene.run()
    scene.edit(resolution={"requested": True})
    scene.verdict = (False, "errors: 0.05 is not below 0.01")

    result = scene.run(after=timedelta(minutes=1))
    assert result == engine.Result(requeue_after=10.0)
    assert scene.phase() == "Resolving"
    assert scene.timeline()[-3:] == ["Resolving", "MitigationReverted", "VerificationPending"]
    assert scene.cond("Verified") == ("False", "ChecksFailing", "errors: 0.05 is not below 0.01")
    assert scene.cond("Resolved")[0] == "Unknown"
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Reverted"}
    assert (scene.replicas(), scene.selector()) == (3, {"app": "chat-fallback"})
    assert scene.verified[-1] == (
        CHECKS["checks"], "http://prometheus:9090", timedelta(minutes=5), scene.now,
    )  # fmt: skip

    scene.run(after=timedelta(seconds=10))
    assert scene.phase() == "Resolving" and scene.selector() == {"app": "chat-fallback"}
    assert scene.timeline().count("VerificationPending") == 1  # said once, not every pass

    scene.verdict = (True, "errors: 0.001 below 0.01 for 5m")
    scene.run(after=timedelta(seconds=10))
    assert scene.phase() == "Resolved"
    assert scene.cond("Verified") == ("True", "ChecksPassed", "errors: 0.001 below 0.01 for 5m")
    assert scene.states() == {"TrafficShift": "Reverted", "ScaleToZero": "Reverted"}
    assert scene.untouched("Deployment", "Service")


STEPPED = {"verification": CHECKS, "undo": {"trafficSteps": [50], "stepInterval": "2m"}}


@pytest.mark.parametrize("kind", ["VirtualService", "HTTPRoute"])
def test_traffic_comes_back_in_steps_after_the_model(kind):
    scene = Scene({"severity": 1, "actions": [weighted(kind), SCALE]}, resolution=STEPPED)
    scene.open()
    scene.run()
    assert scene.split(kind)[-1] == ("chat-fallback", 100)
    scene.edit(resolution={"requested": True})

    result = scene.run(after=timedelta(minutes=1))
    assert result == engine.Result(requeue_after=120.0)
    assert scene.phase() == "Resolving"
    # The model comes back first, then half of the traffic.
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Reverted"}
    assert scene.replicas() == 3
    assert scene.split(kind) == [("chat", 50), ("chat-fallback", 50)]
    assert scene.status()["undoStep"] == 1
    assert scene.timeline()[-2:] == ["MitigationReverted", "UndoStep"]
    assert scene.entries()[0][2].startswith(f"undo step 1/1: {kind}/chat: 50% to chat-fallback")

    assert scene.run(after=timedelta(seconds=30)) == engine.Result(requeue_after=90.0)
    assert scene.split(kind) == [("chat", 50), ("chat-fallback", 50)]

    scene.run(after=timedelta(seconds=90))  # the step held for stepInterval
    assert scene.phase() == "Resolved"
    assert scene.states() == {"TrafficShift": "Reverted", "ScaleToZero": "Reverted"}
    assert scene.untouched("Deployment", kind)


def test_a_failing_check_between_steps_sends_traffic_back_to_the_fallback():
    kind = "VirtualService"
    scene = Scene({"severity": 1, "actions": [weighted(kind), SCALE]}, resolution=STEPPED)
    scene.open()
    scene.run()
    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.split(kind) == [("chat", 50), ("chat-fallback", 50)] and scene.replicas() == 3

    scene.verdict = (False, "errors up again")
    result = scene.run(after=timedelta(seconds=30))
    assert result.requeue_after == 10.0
    assert scene.phase() == "Resolving"
    assert scene.timeline()[-3:] == ["UndoStep", "VerificationPending", "UndoAborted"]
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Reverted"}
    assert scene.split(kind) == [("chat", 0), ("chat-fallback", 100)]
    assert scene.replicas() == 3  # running, unserved, so that verification sees it recover
    assert scene.fake.events[-1][:3] == ("AIIncident/harm", "Warning", "UndoAborted")
    assert scene.cond("Verified")[:2] == ("False", "ChecksFailing")


def test_after_an_aborted_undo_the_traffic_steps_start_over():
    kind = "VirtualService"
    scene = Scene({"severity": 1, "actions": [weighted(kind), SCALE]}, resolution=STEPPED)
    scene.open()
    scene.run()
    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    scene.verdict = (False, "errors up again")
    scene.run(after=timedelta(seconds=30))
    assert "undoStep" not in scene.status()
    scene.verdict = (True, "recovered")
    scene.run(after=timedelta(seconds=30))
    assert scene.split(kind) == [("chat", 50), ("chat-fallback", 50)]


def test_traffic_is_not_given_back_while_the_model_cannot_be_restored():
    scene = Scene()  # TrafficShift, then ScaleToZero: undo is the other way round
    scene.open()
    scene.run()
    scene.edit(resolution={"requested": True})
    scene.fake.deny("update", "Deployment")

    result = scene.run(after=timedelta(minutes=1))
    assert result.retry
    assert scene.phase() == "Resolving"
    assert scene.cond("Resolved") == (
        "False", "UndoFailed", f"ScaleToZero on Deployment/chat: {FORBIDDEN}",
    )  # fmt: skip
    assert scene.states() == {"TrafficShift": "Applied", "ScaleToZero": "Applied"}
    # The fallback keeps the traffic: the model has no replicas to take it.
    assert (scene.replicas(), scene.selector()) == (0, {"app": "chat-fallback"})

    scene.fake.allow("update", "Deployment")
    result = scene.run(after=timedelta(minutes=1))
    assert not result.retry
    assert scene.phase() == "Resolved"
    assert scene.cond("Resolved")[:2] == ("True", "ResolutionRequested")
    assert scene.untouched("Deployment", "Service")


# --- What changes nothing -----------------------------------------------------------------------


def test_a_dry_run_policy_records_the_plan_and_writes_nothing():
    scene = Scene(
        {"severity": 1, "actions": [SHIFT, CONFIG, GUARD, SCALE]}, safety={"dryRun": True}
    )
    scene.open()
    assert scene.run() == engine.Result()
    assert scene.entries() == [
        ("TrafficShift", "DryRun", "would set Service/chat: 100% to chat-fallback (was 0%)"),
        ("ConservativeConfig", "DryRun",
         "would set Deployment/chat: llm env TEMPERATURE=0.1; llm env MAX_TOKENS=256"),
        ("GuardrailSidecar", "DryRun",
         "would set Deployment/chat: sidecar guardrail (guardrail:v1) added"),
        ("ScaleToZero", "DryRun", "would set Deployment/chat: replicas 3 -> 0"),
    ]  # fmt: skip
    assert scene.cond("Mitigated") == (
        "False", "DryRun", "dry run: nothing was changed; see status.mitigations",
    )  # fmt: skip
    assert scene.phase() == "Triaged"
    assert scene.fake.writes == [("status", "AIIncident/harm")]
    scene.run(after=timedelta(minutes=1))
    assert scene.object_writes() == []
    assert scene.untouched("Deployment", "Service")


def _no_policy(scene: Scene) -> None:
    scene.world.policies = []


def _protected(scene: Scene) -> None:
    scene.world.policies[0]["spec"]["safety"] = {"protectedNamespaces": [NS]}


def _two_targets(scene: Scene) -> None:
    scene.world.policies[0]["spec"]["safety"] = {"maxTargets": 1}
    scene.fake.add(deployment("chat-b"))


@pytest.mark.parametrize(
    ("setup", "target", "reason", "message", "warning"),
    [
        (_no_policy, {"name": "chat"}, "NoPolicy",
         "no ready MitigationPolicy or ClusterMitigationPolicy covers the target: "
         "triage and notification only, nothing was changed", False),
        (_protected, {"name": "chat"}, "ProtectedNamespace",
         "namespace prod is protected: the operator changes nothing there", True),
        (_two_targets, {"selector": {"matchLabels": LABELS}}, "BlastRadiusExceeded",
         "2 targets (chat, chat-b) exceed safety.maxTargets 1 of MitigationPolicy prod/chat: "
         "nothing was changed; narrow spec.target", True),
    ],
)  # fmt: skip
def test_gates_change_nothing(setup, target, reason, message, warning):
    scene = Scene()
    setup(scene)
    scene.open(target=target)
    assert scene.run() == engine.Result()
    assert scene.phase() == "Triaged"
    assert scene.cond("Mitigated") == ("False", reason, message)
    assert scene.status().get("mitigations") is None
    assert scene.fake.writes == [("status", "AIIncident/harm")]
    assert scene.fake.events[-1] == (
        "AIIncident/harm", "Warning" if warning else "Normal", reason, message,
    )  # fmt: skip
    events = len(scene.fake.events)
    scene.run(after=timedelta(minutes=1))
    assert len(scene.fake.events) == events  # said once
    assert scene.object_writes() == [] and scene.untouched("Deployment", "Service")


def test_the_built_in_protected_namespaces_change_nothing_without_any_policy_saying_so():
    scene = Scene()
    scene.fake.add(deployment(namespace="kube-system"))
    scene.fake.add({"apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
                    "metadata": {"name": "harm", "namespace": "kube-system"},
                    "spec": {"severity": 1, "target": {"name": "chat"}}})  # fmt: skip
    engine.reconcile("kube-system", "harm", scene.world, api=scene.fake, now=T0)
    status = scene.fake.obj("AIIncident", "kube-system", "harm")["status"]
    mitigated = next(c for c in status["conditions"] if c["type"] == "Mitigated")
    assert (mitigated["status"], mitigated["reason"]) == ("False", "ProtectedNamespace")
    assert scene.object_writes() == []


# --- Undo from the ledgers --------------------------------------------------------------------

EVERYTHING = {"severity": 1, "actions": [SHIFT, CONFIG, GUARD, SCALE]}


def _crash_before_the_status_write(scene: Scene) -> None:
    """Applied, but the status never said so: only the objects' ledgers know."""
    scene.open()
    scene.run()
    assert ledger.held_by(scene.fake.obj("Deployment", NS, "chat"), "prod/harm") == [
        "ConservativeConfig:llm", "GuardrailSidecar:guardrail", "ScaleToZero",
    ]  # fmt: skip
    scene.fake.patch_status(Ref("AIIncident", NS, "harm"), {"mitigations": None})
    assert "mitigations" not in scene.status()


def _no_holder_left(scene: Scene) -> None:
    for kind in ("Deployment", "Service"):
        assert ledger.holders(scene.fake.obj(kind, NS, "chat")) == []


def test_a_holding_only_the_ledger_knows_is_resolved_and_finalized():
    scene = Scene(EVERYTHING)
    _crash_before_the_status_write(scene)
    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.phase() == "Resolved"
    assert scene.states() == {
        "ConservativeConfig": "Reverted", "GuardrailSidecar": "Reverted",
        "ScaleToZero": "Reverted", "TrafficShift": "Reverted",
    }  # fmt: skip
    found = [e for e in scene.fake.events if e[2] == "LedgerHoldingFound"]
    assert len(found) == 4 and all(e[1] == "Warning" for e in found)
    assert scene.untouched("Deployment", "Service")
    _no_holder_left(scene)

    assert scene.finalize() == engine.Result()
    assert scene.untouched("Deployment", "Service")
    _no_holder_left(scene)


def test_a_holding_only_the_ledger_knows_is_undone_on_deletion():
    scene = Scene(EVERYTHING)
    _crash_before_the_status_write(scene)
    assert scene.finalize() == engine.Result()
    assert scene.untouched("Deployment", "Service")
    _no_holder_left(scene)


def test_eight_incidents_on_one_deployment_finalized_one_after_another():
    scene = Scene(EVERYTHING)
    names = [f"harm-{i}" for i in range(8)]
    for name in names:
        scene.open(name)
        scene.run(name)
        assert scene.phase(name) == "Mitigated"
    assert len(ledger.holders(scene.fake.obj("Deployment", NS, "chat"))) == 8 * 3
    assert len(ledger.holders(scene.fake.obj("Service", NS, "chat"))) == 8

    order = names[:]
    random.Random(8).shuffle(order)
    for done, name in enumerate(order, start=1):
        assert scene.finalize(name) == engine.Result()
        scene.fake.delete(Ref("AIIncident", NS, name))
        if done < len(order):  # the others still hold it: still mitigated
            assert (scene.replicas(), scene.selector()) == (0, {"app": "chat-fallback"})
            assert len(ledger.holders(scene.fake.obj("Service", NS, "chat"))) == 8 - done
    assert scene.untouched("Deployment", "Service")
    _no_holder_left(scene)


def _remove_the_ledgers(scene: Scene, kinds: tuple[str, ...] = ("Deployment", "Service")) -> None:
    """Someone deletes the ledger annotation (say, `kubectl apply` of the original manifest)."""
    for kind in kinds:
        obj = scene.fake.obj(kind, NS, "chat")
        assert obj is not None and ledger.holders(obj)
        obj["metadata"].pop("annotations")  # the ledger was their only annotation
        scene.fake.replace(Ref(kind, NS, "chat"), obj)


def test_a_removed_ledger_is_not_rebuilt_from_the_mitigated_values():
    scene = Scene({"severity": 1, "actions": [SHIFT, CONFIG, SCALE]})
    scene.open()
    scene.run()
    _remove_the_ledgers(scene)
    assert (scene.replicas(), scene.selector()) == (0, {"app": "chat-fallback"})

    scene.run(after=timedelta(minutes=1))
    assert scene.states() == {
        "TrafficShift": "Applied", "ConservativeConfig": "Applied", "ScaleToZero": "Applied",
    }  # fmt: skip
    deployment_ledger = ledger.originals(scene.fake.obj("Deployment", NS, "chat"))
    env = "/spec/template/spec/containers[name=llm]/env"
    assert deployment_ledger == {
        "/spec/replicas": 3,
        f"{env}[name=TEMPERATURE]": {"name": "TEMPERATURE", "value": "0.7"},
        f"{env}[name=MAX_TOKENS]": ABSENT,
    }
    assert ledger.originals(scene.fake.obj("Service", NS, "chat")) == {
        "/spec/selector": {"app": "chat"}
    }
    restored = [e for e in scene.fake.events if e[2] == "LedgerRestored"]
    assert {e[0] for e in restored} == {"Deployment/chat", "Service/chat", "AIIncident/harm"}

    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.phase() == "Resolved"
    assert (scene.replicas(), scene.selector(), scene.env()) == (
        3, {"app": "chat"}, {"TEMPERATURE": "0.7"},
    )  # fmt: skip
    assert scene.untouched("Deployment", "Service")


def test_a_removed_ledger_is_undone_from_the_status_at_resolution():
    scene = Scene({"severity": 1, "actions": [SHIFT, CONFIG, SCALE]})
    scene.open()
    scene.run()
    _remove_the_ledgers(scene)
    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.phase() == "Resolved"
    assert scene.untouched("Deployment", "Service")


def test_a_removed_ledger_does_not_strand_the_guardrail_sidecar():
    scene = Scene({"severity": 1, "actions": [GUARD]})
    scene.open()
    scene.run()
    _remove_the_ledgers(scene, ("Deployment",))
    scene.run(after=timedelta(minutes=1))
    assert scene.states() == {"GuardrailSidecar": "Applied"}
    scene.edit(resolution={"requested": True})
    scene.run(after=timedelta(minutes=1))
    assert scene.untouched("Deployment")


def test_the_model_is_offline_before_the_page_is_posted(hook):
    """A response listing Notify first still scales to zero before any webhook is called."""
    notify = {"type": "Notify", "channels": ["oncall"]}
    scene = Scene(
        {"severity": 1, "actions": [notify, SCALE]},
        notifications={"channels": [{"name": "oncall", "format": "Generic",
                                     "webhook": {"url": f"{hook.url}/page"}}]},
    )  # fmt: skip
    seen: list[int] = []
    hook.on_post = lambda path: seen.append(scene.replicas())
    scene.open()
    scene.run()
    assert seen == [0] and scene.phase() == "Mitigated"


def test_the_first_page_says_the_severity_triage_gave_it(hook):
    """Notify is built from the status this pass writes, not the one read (no `[SEV?]`):
    posted after that write, it says the phase the write recorded."""
    notify = {"type": "Notify", "channels": ["oncall"]}
    scene = Scene(
        {"severity": 1, "actions": [notify]},
        notifications={"channels": [{"name": "oncall", "format": "Generic",
                                     "webhook": {"url": f"{hook.url}/page"}}]},
        triage={"rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}]},
    )  # fmt: skip
    scene.open(severity=None)  # severity comes from the policy's triage rule
    scene.run()
    (page,) = hook.bodies["/page"]
    assert page["severity"] == 1 and page["phase"] == "Mitigated" and page["event"] == "incident"
