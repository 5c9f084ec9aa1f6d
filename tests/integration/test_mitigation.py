"""The mitigation engine end to end on a real apiserver, with the running operator.

The policy is API.md's example; the workload is a Deployment with a primary and a
fallback Service and an Istio VirtualService (real upstream CRD).
"""

from __future__ import annotations

import contextlib

import kubernetes
import pytest

from ai_incident_operator import kube, ledger
from ai_incident_operator.errors import Conflict
from ai_incident_operator.kube import Ref

from kit import (
    OPERATOR_ENV,
    PROTECTED_NAMESPACE,
    OperatorProcess,
    create_incident,
    deployment,
    get_incident,
    kubectl,
    policy_body,
    service,
    spec_snapshot,
    virtual_service,
    wait_for,
)

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}
SEV1 = {
    "severity": 1,
    "actions": [
        {"type": "TrafficShift", "router": {"kind": "VirtualService", "name": "chat"},
         "fallback": {"service": "chat-fallback"}, "weight": 100},
        {"type": "ScaleToZero"},
    ],
}  # fmt: skip
SEV2 = {
    "severity": 2,
    "actions": [
        {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0", "MAX_TOKENS": "256"}},
        {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"},
         "fallback": {"service": "chat-fallback"}},
    ],
}  # fmt: skip


def chat_policy(**spec: object) -> dict:
    return {
        "priority": 100,
        "targetSelector": {"matchLabels": LABELS},
        "triage": {
            "defaultSeverity": 3,
            "rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}],
        },
        "responses": [SEV1, SEV2],
        **spec,
    }


def setup_model(ns: str, policy: dict | None = None, name: str = "chat-llm") -> None:
    kube.create("Deployment", ns, deployment(name, LABELS))
    if kube.get(Ref("Service", ns, "chat")) is None:
        kube.create("Service", ns, service("chat", name))
        kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
        kube.create("VirtualService", ns, virtual_service("chat", "chat"))
    if policy is not None:
        kube.create("MitigationPolicy", ns, policy_body("chat", policy))
        wait_for(lambda: _ready(ns, "chat"), 20, "policy Ready")


def _ready(ns: str, name: str) -> bool:
    body = kube.get(Ref("MitigationPolicy", ns, name)) or {}
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in body.get("status", {}).get("conditions", [])
    )


def phase_is(ns: str, name: str, *phases: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (i := get_incident(ns, name)).get("status", {}).get("phase") in phases and i,
        timeout, f"{name} phase in {phases}",
    )  # fmt: skip


def snapshot(ns: str) -> dict:
    return {
        ref: spec_snapshot(kube.get(Ref(kind, ns, name)))
        for ref, (kind, name) in {
            "deploy": ("Deployment", "chat-llm"), "svc": ("Service", "chat"), "vs": ("VirtualService", "chat"),
        }.items()
    }  # fmt: skip


def patch_spec(ns: str, name: str, spec: dict) -> None:
    kube.patch(Ref("AIIncident", ns, name), {"spec": spec})


def events_for(ns: str, name: str) -> list[str]:
    items = (
        kubernetes.client.CoreV1Api()
        .list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        .items
    )
    return [e.reason for e in items]


def vs_weights(ns: str) -> dict[str, int]:
    route = kube.get(Ref("VirtualService", ns, "chat"))["spec"]["http"][0]["route"]
    return {d["destination"]["host"]: d.get("weight", 100) for d in route}


def test_severity1_mitigates_then_resolution_restores_exactly(namespace, operator):
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    create_incident(
        namespace, "harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
    )
    incident = phase_is(namespace, "harm", "Mitigated")
    status = incident["status"]
    assert status["severity"] == 1
    assert "rule 1 of MitigationPolicy" in status["severityReason"]
    assert status["policyRef"] == {
        "kind": "MitigationPolicy",
        "namespace": namespace,
        "name": "chat",
    }
    assert {(m["action"], m["state"]) for m in status["mitigations"]} == {
        ("TrafficShift", "Applied"),
        ("ScaleToZero", "Applied"),
    }
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0
    assert vs_weights(namespace) == {"chat": 0, "chat-fallback": 100}
    wait_for(
        lambda: {"Triaged", "Mitigated"} <= set(events_for(namespace, "harm")),
        15,
        "incident events",
    )
    wait_for(
        lambda: "Mitigated" in events_for(namespace, "chat-llm"), 15, "event on the Deployment"
    )

    # The fix ships while the incident is open: a new image.
    kube.update(Ref("Deployment", namespace, "chat-llm"),
                lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="registry.local/llm:v43") or True)  # fmt: skip
    patch_spec(
        namespace, "harm", {"resolution": {"requested": True, "fix": "template restored in v43"}}
    )
    incident = phase_is(namespace, "harm", "Resolved")
    assert {m["state"] for m in incident["status"]["mitigations"]} == {"Reverted"}
    after = snapshot(namespace)
    assert (
        after["deploy"]["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.local/llm:v43"
    )
    after["deploy"]["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/llm:v42"
    assert after == before


def test_escalation_and_de_escalation_re_plan(namespace, operator):
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    create_incident(
        namespace,
        "q",
        {"category": "AccuracyDegradation", "severity": 2, "target": {"name": "chat-llm"}},
    )
    phase_is(namespace, "q", "Mitigated")
    svc = kube.get(Ref("Service", namespace, "chat"))
    assert svc["spec"]["selector"] == {"app": "chat-fallback"}
    env = kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"TEMPERATURE": "0", "MAX_TOKENS": "256"}

    patch_spec(namespace, "q", {"severity": 1})
    wait_for(
        lambda: kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0,
        20,
        "scaled to 0",
    )

    def states() -> dict[str, str]:
        return {m["key"]: m["state"] for m in get_incident(namespace, "q")["status"]["mitigations"]}

    wait_for(lambda: states().get("ScaleToZero") == "Applied", 20, "status shows the re-plan")
    incident = phase_is(namespace, "q", "Mitigated")
    states = states()
    assert states["ScaleToZero"] == "Applied" and states["ConservativeConfig:llm"] == "Reverted"
    assert kube.get(Ref("Service", namespace, "chat"))["spec"]["selector"] == {"app": "chat-llm"}
    assert (
        "env"
        not in kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["template"]["spec"][
            "containers"
        ][0]
    )
    assert "SeverityChanged" in [t["type"] for t in incident["status"]["timeline"]]

    patch_spec(namespace, "q", {"severity": 2})
    wait_for(
        lambda: kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 3,
        20,
        "replicas back",
    )
    # The pass undoes ScaleToZero, then the VirtualService shift: wait for the last write.
    wait_for(lambda: vs_weights(namespace) == {"chat": 100}, 20, "traffic back from the fallback")
    assert kube.get(Ref("Service", namespace, "chat"))["spec"]["selector"] == {
        "app": "chat-fallback"
    }
    patch_spec(namespace, "q", {"resolution": {"requested": True}})
    phase_is(namespace, "q", "Resolved")
    assert snapshot(namespace) == before


@pytest.mark.parametrize("first", ["a", "b"])
def test_two_incidents_stack_on_one_target(namespace, operator, first):
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    for name in ("a", "b"):
        create_incident(
            namespace, name, {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
        )
        phase_is(namespace, name, "Mitigated")
    deploy = kube.get(Ref("Deployment", namespace, "chat-llm"))
    assert ledger.holders(deploy) == [
        (f"{namespace}/a", "ScaleToZero"),
        (f"{namespace}/b", "ScaleToZero"),
    ]
    second = "b" if first == "a" else "a"
    patch_spec(namespace, first, {"resolution": {"requested": True}})
    phase_is(namespace, first, "Resolved")
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0
    assert vs_weights(namespace)["chat-fallback"] == 100
    patch_spec(namespace, second, {"resolution": {"requested": True}})
    phase_is(namespace, second, "Resolved")
    assert snapshot(namespace) == before


def test_deleting_an_incident_undoes_its_mitigations(namespace, operator):
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    create_incident(
        namespace, "gone", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
    )
    phase_is(namespace, "gone", "Mitigated")
    kube.delete(Ref("AIIncident", namespace, "gone"))
    wait_for(lambda: kube.get(Ref("AIIncident", namespace, "gone")) is None, 20, "incident deleted")
    assert snapshot(namespace) == before


def test_a_reverted_mitigation_is_re_applied(namespace, operator):
    setup_model(namespace, chat_policy())
    create_incident(namespace, "c", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    phase_is(namespace, "c", "Mitigated")
    # A GitOps sync puts the replicas back.
    kube.update(
        Ref("Deployment", namespace, "chat-llm"), lambda d: d["spec"].update(replicas=3) or True
    )
    wait_for(
        lambda: kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0,
        30,
        "re-applied",
    )
    wait_for(
        lambda: "MitigationContested" in events_for(namespace, "c"), 15, "MitigationContested event"
    )


def test_kill_between_change_and_status_then_restart(solo_namespace):
    namespace = solo_namespace
    crashing = OperatorProcess(
        "crash", "--namespace", namespace, env={"AIINCIDENT_FAILPOINTS": "after-apply"}
    ).start()
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    create_incident(namespace, "k", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    wait_for(lambda: crashing.proc.poll() is not None, 30, "the operator to die at the failpoint")
    # The first target change landed, the status did not.
    assert not get_incident(namespace, "k").get("status", {}).get("mitigations")
    changed = kube.get(Ref("VirtualService", namespace, "chat"))
    generation = changed["metadata"]["generation"]
    restarted = OperatorProcess("restarted", "--namespace", namespace, env=OPERATOR_ENV).start()
    try:
        incident = phase_is(namespace, "k", "Mitigated")
        assert {m["state"] for m in incident["status"]["mitigations"]} == {"Applied"}
        vs = kube.get(Ref("VirtualService", namespace, "chat"))
        assert vs["metadata"]["generation"] == generation  # not applied twice
        assert ledger.holders(vs) == [(f"{namespace}/k", "TrafficShift:VirtualService/chat")]
        patch_spec(namespace, "k", {"resolution": {"requested": True}})
        phase_is(namespace, "k", "Resolved")
        assert snapshot(namespace) == before
    finally:
        restarted.stop()


def test_nothing_changes_without_policy_or_when_unsafe(namespace, operator):
    setup_model(namespace)  # no policy yet
    before = snapshot(namespace)
    create_incident(namespace, "np", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    incident = wait_for(
        lambda: (
            (i := get_incident(namespace, "np")).get("status", {}).get("phase") == "Triaged" and i
        ),
        30,
        "triaged",
    )
    cond = {c["type"]: c for c in incident["status"]["conditions"]}
    assert cond["Mitigated"]["reason"] == "NoPolicy"
    assert incident["status"]["severity"] == 1  # the playbook's default for harmful output
    assert snapshot(namespace) == before


def test_dry_run_and_max_targets_change_nothing(namespace, operator):
    setup_model(namespace, chat_policy(safety={"dryRun": True}))
    kube.create("Deployment", namespace, deployment("chat-llm-2", LABELS))
    before = snapshot(namespace)
    create_incident(namespace, "dry", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    incident = wait_for(
        lambda: (i := get_incident(namespace, "dry")).get("status", {}).get("mitigations") and i,
        30,
        "planned",
    )
    assert {m["state"] for m in incident["status"]["mitigations"]} == {"DryRun"}
    assert any("would set" in m["message"] for m in incident["status"]["mitigations"])
    assert snapshot(namespace) == before
    # Once the policy acts for real, its open incidents are mitigated: close this one first.
    kubectl("delete", "aiincident", "dry", "-n", namespace, "--wait=true")

    kube.patch(
        Ref("MitigationPolicy", namespace, "chat"),
        {"spec": {"safety": {"dryRun": False, "maxTargets": 1}}},
    )
    wait_for(
        lambda: (
            _ready(namespace, "chat")
            and kube.get(Ref("MitigationPolicy", namespace, "chat"))["status"]["observedGeneration"]
            == 2
        ),
        20,
        "policy re-checked",
    )
    create_incident(
        namespace,
        "wide",
        {"category": "HarmfulOutput", "target": {"selector": {"matchLabels": LABELS}}},
    )
    incident = wait_for(
        lambda: (i := get_incident(namespace, "wide")).get("status", {}).get("conditions")
        and {c["type"]: c for c in i["status"]["conditions"]}["Mitigated"]["reason"] == "BlastRadiusExceeded" and i,
        30, "blast radius refused",
    )  # fmt: skip
    assert (
        "maxTargets 1"
        in {c["type"]: c for c in incident["status"]["conditions"]}["Mitigated"]["message"]
    )
    assert snapshot(namespace) == before


def test_cross_namespace_target_is_refused(namespace, operator):
    setup_model(namespace, chat_policy())
    before = snapshot(namespace)
    create_incident(
        namespace,
        "x",
        {"category": "HarmfulOutput", "target": {"name": "chat-llm", "namespace": "default"}},
    )
    incident = wait_for(
        lambda: (i := get_incident(namespace, "x")).get("status", {}).get("conditions") and i,
        30,
        "status",
    )
    wait_for(
        lambda: (
            {c["type"]: c for c in get_incident(namespace, "x")["status"]["conditions"]}["Triaged"][
                "reason"
            ]
            == "CrossNamespaceTarget"
        ),
        30,
        "refused",
    )
    assert snapshot(namespace) == before
    refused = {c["type"]: c for c in get_incident(namespace, "x")["status"]["conditions"]}
    assert "open the incident in the target's namespace" in refused["Triaged"]["message"]
    assert not get_incident(namespace, "x")["status"].get("mitigations")
    assert incident["status"]["phase"] == "Detected"


def test_approval_gate(namespace, operator):
    policy = chat_policy()
    policy["responses"] = [dict(SEV1, requireApproval=True)]
    setup_model(namespace, policy)
    create_incident(namespace, "ap", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    phase_is(namespace, "ap", "AwaitingApproval")
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 3
    patch_spec(namespace, "ap", {"approved": True})
    phase_is(namespace, "ap", "Mitigated")
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0


def test_protected_namespace_changes_nothing(operator):
    ns = PROTECTED_NAMESPACE
    with contextlib.suppress(Conflict):  # left by an earlier run
        kube.create("Namespace", "", {"metadata": {"name": ns}})
    try:
        setup_model(ns, chat_policy(), name="chat-llm")
        before = snapshot(ns)
        create_incident(ns, "p", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
        wait_for(
            lambda: {c["type"]: c for c in get_incident(ns, "p").get("status", {}).get("conditions", [])}
            .get("Mitigated", {}).get("reason") == "ProtectedNamespace", 30, "protected",
        )  # fmt: skip
        assert snapshot(ns) == before
    finally:
        kube.patch(Ref("AIIncident", ns, "p"), {"metadata": {"finalizers": None}})
        kube.delete(Ref("Namespace", "", ns))


def _ready_condition(ns: str) -> dict:
    body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    return next(
        (c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"), {}
    )


def test_invalid_policy_is_not_used_until_fixed(namespace, operator):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS))
    kube.create("Service", namespace, service("chat", "chat-llm"))
    policy = chat_policy()
    policy["responses"] = [
        {"severity": 1, "actions": [
            {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"}, "fallback": {"service": "chat-fallback"}},
            {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"}},
        ]},
        {"severity": 2, "actions": [{"type": "ConservativeConfig", "container": "model", "env": {"X": "1"}}]},
    ]  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", policy))
    cond = wait_for(
        lambda: (c := _ready_condition(namespace)).get("status") == "False" and c, 20, "Ready=False"
    )
    assert cond["reason"] == "Invalid"
    assert f"fallback Service {namespace}/chat-fallback does not exist" in cond["message"]
    assert "container 'model' is not in Deployment chat-llm (containers: llm)" in cond["message"]

    create_incident(namespace, "inv", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    wait_for(
        lambda: {c["type"]: c for c in get_incident(namespace, "inv").get("status", {}).get("conditions", [])}
        .get("Mitigated", {}).get("reason") == "NoPolicy", 20, "invalid policy not used",
    )  # fmt: skip
    assert kube.get(Ref("Service", namespace, "chat"))["spec"]["selector"] == {"app": "chat-llm"}

    # Fixing the policy (and creating the fallback) puts it to use for the open incident.
    kube.create("Service", namespace, service("chat-fallback", "chat-fallback"))
    kube.patch(
        Ref("MitigationPolicy", namespace, "chat"), {"spec": {"responses": policy["responses"][:1]}}
    )
    wait_for(lambda: _ready_condition(namespace).get("status") == "True", 20, "Ready=True")
    phase_is(namespace, "inv", "Mitigated")
    assert kube.get(Ref("Service", namespace, "chat"))["spec"]["selector"] == {
        "app": "chat-fallback"
    }


def test_resolution_still_undoes_when_the_target_is_gone(namespace, operator):
    setup_model(namespace, chat_policy())
    routes_before = kube.get(Ref("VirtualService", namespace, "chat"))["spec"]
    create_incident(
        namespace, "gone-target", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
    )
    phase_is(namespace, "gone-target", "Mitigated")
    kube.delete(Ref("Deployment", namespace, "chat-llm"))
    wait_for(
        lambda: kube.get(Ref("Deployment", namespace, "chat-llm")) is None, 20, "deployment gone"
    )
    patch_spec(namespace, "gone-target", {"resolution": {"requested": True}})
    phase_is(namespace, "gone-target", "Resolved")
    assert kube.get(Ref("VirtualService", namespace, "chat"))["spec"] == routes_before


def test_an_overdue_review_is_said_without_any_timer(namespace, operator):
    """The review deadline wakes the incident by itself (the scheduler), and says it once."""
    setup_model(namespace, chat_policy(review={"dueWithin": "4s"}))
    create_incident(
        namespace, "late", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
    )
    phase_is(namespace, "late", "Mitigated")
    patch_spec(namespace, "late", {"resolution": {"requested": True}})
    phase_is(namespace, "late", "Resolved")

    def reviewed() -> dict:
        conditions = get_incident(namespace, "late")["status"]["conditions"]
        return {c["type"]: c for c in conditions}["Reviewed"]

    assert reviewed()["reason"] == "ReviewPending"
    wait_for(lambda: reviewed()["reason"] == "ReviewOverdue", 20, "ReviewOverdue")
    wait_for(lambda: "ReviewOverdue" in events_for(namespace, "late"), 10, "ReviewOverdue event")
    timeline = get_incident(namespace, "late")["status"]["timeline"]
    assert [t["type"] for t in timeline].count("ReviewOverdue") == 1
