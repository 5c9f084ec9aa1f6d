"""What pages and the status tell people, live (issue 12 items 5, 8 and 16).

- A policy deleted mid-incident: the "resolved" page still goes out, `policyRef` goes.
- A response waiting for approval pages its channels once, with the command;
  `aiincident approve --by` records who approved.
- RootCauseIdentified follows the person, and the operator's own rollouts (its sidecar,
  its undo) are never the DeploymentChange a hypothesis names.

The session's operator works the `namespace` fixtures; the hypotheses test without an
operator calls the real GuardrailSidecar action and the evidence collection itself, on
real ReplicaSets made by the Deployment controller.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ai_incident_operator import kube, ledger
from ai_incident_operator.actions import REGISTRY, ActionContext
from ai_incident_operator.investigation import evidence, hypotheses
from ai_incident_operator.kube import Ref

from kit import Hook, create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
AIINCIDENT = Path(sys.executable).parent / "aiincident"
LABELS = {"app.kubernetes.io/part-of": "chat"}
SIDECAR = {"name": "guardrail", "image": "registry.local/guardrail:v1",
           "ports": [{"containerPort": 8001}]}  # fmt: skip
V43 = "registry.local/llm:v43"


def aiincident(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIINCIDENT), *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


def setup(ns: str, hook: Hook, response: dict) -> None:
    """The model, and a ready policy whose only response is RESPONSE (severity 1)."""
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, **response}],
        "notifications": {"channels": [
            {"name": "oncall", "format": "Generic", "webhook": {"url": f"{hook.url}/oncall"}}]},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))
    wait_for(lambda: _ready(ns), 30, "policy Ready")


def _ready(ns: str) -> bool:
    conditions = ((kube.get(Ref("MitigationPolicy", ns, "chat")) or {}).get("status") or {}).get(
        "conditions"
    ) or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def open_incident(ns: str, name: str) -> None:
    create_incident(ns, name, {"category": "HarmfulOutput", "severity": 1,
                               "target": {"name": "chat-llm"}})  # fmt: skip


def status_of(ns: str, name: str) -> dict:
    return get_incident(ns, name).get("status") or {}


def phase_is(ns: str, name: str, phase: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (s := status_of(ns, name)).get("phase") == phase and s, timeout, f"{name} {phase}"
    )


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def events(hook: Hook, path: str) -> list[str]:
    return [body.get("event", "") for body in hook.bodies.get(path, [])]


# --- Item 16: the policy deleted mid-incident ---------------------------------------------


def test_the_resolved_page_goes_out_after_the_policy_was_deleted(namespace, operator, hook):
    notify = {"type": "Notify", "channels": ["oncall"]}
    setup(namespace, hook, {"actions": [{"type": "ScaleToZero"}, notify]})
    open_incident(namespace, "gone")
    phase_is(namespace, "gone", "Mitigated")
    # Paged after the status write that says Mitigated, recorded after the answer.
    wait_for(lambda: events(hook, "/oncall") == ["incident"], 30, "the page")

    kube.delete(Ref("MitigationPolicy", namespace, "chat"))
    wait_for(lambda: "policyRef" not in status_of(namespace, "gone"), 30, "policyRef cleared")
    kube.patch(Ref("AIIncident", namespace, "gone"), {"spec": {"resolution": {"requested": True}}})
    status = phase_is(namespace, "gone", "Resolved")

    assert "policyRef" not in status
    entry = next(e for e in status["mitigations"] if e["action"] == "Notify")
    assert (entry["state"], entry["message"]) == ("Reverted", "resolved sent to oncall")
    assert events(hook, "/oncall") == ["incident", "resolved"]
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 1


# --- Item 8: approval waits are paged ------------------------------------------------------


def test_an_approval_wait_is_paged_once_and_approve_records_who(namespace, operator, hook):
    notify = {"type": "Notify", "channels": ["oncall"]}
    setup(namespace, hook, {"requireApproval": True, "actions": [{"type": "ScaleToZero"}, notify]})
    open_incident(namespace, "ap")
    phase_is(namespace, "ap", "AwaitingApproval")
    wait_for(lambda: (status_of(namespace, "ap").get("approvalPage") or {}).get("channels"), 30,
             "the approval page recorded")  # fmt: skip
    (page,) = hook.bodies["/oncall"]
    assert page["event"] == "approval-required"
    assert page["approve"] == f"aiincident approve ap -n {namespace}"
    assert (page["severity"], page["phase"]) == (1, "AwaitingApproval")

    # Another pass (a spec change) does not page again.
    kube.patch(Ref("AIIncident", namespace, "ap"), {"spec": {"description": "more users"}})
    wait_for(lambda: status_of(namespace, "ap").get("observedGeneration") == 2, 30, "a new pass")
    assert len(hook.bodies["/oncall"]) == 1

    done = aiincident("approve", "ap", "-n", namespace, "--by", "alice")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aiincident {namespace}/ap approved by alice"
    status = phase_is(namespace, "ap", "Mitigated")
    assert get_incident(namespace, "ap")["spec"]["approvedBy"] == "alice"
    assert [t["message"] for t in status["timeline"] if t["type"] == "Approved"] == [
        "response approved by alice"
    ]
    assert condition(status, "Approved")["message"] == "spec.approved is true (approved by alice)"
    wait_for(lambda: events(hook, "/oncall") == ["approval-required", "incident"], 30, "the page")
    described = aiincident("describe", "ap", "-n", namespace).stdout
    assert "Approved:     yes (by alice)" in described


def test_approve_without_by_names_the_kubeconfig_user(namespace, operator, hook):
    setup(namespace, hook, {"requireApproval": True, "actions": [{"type": "ScaleToZero"}]})
    open_incident(namespace, "ap2")
    phase_is(namespace, "ap2", "AwaitingApproval")
    done = aiincident("approve", "ap2", "-n", namespace)
    assert done.returncode == 0, done.stderr
    phase_is(namespace, "ap2", "Mitigated")
    who = kube.current_user()
    assert get_incident(namespace, "ap2")["spec"]["approvedBy"] == who
    assert f"response approved by {who}" in [
        t["message"] for t in status_of(namespace, "ap2")["timeline"]
    ]


# --- Item 5: the root cause ---------------------------------------------------------------


def replicasets(ns: str) -> list[dict]:
    return kube.list_objects("ReplicaSet", ns, "app=chat-llm")


def revision(rs: dict) -> str:
    return rs["metadata"]["annotations"][evidence.REVISION]


def ship_v43(ns: str) -> None:
    """A person's rollout: a new image."""

    def change(d: dict) -> bool:
        d["spec"]["template"]["spec"]["containers"][0]["image"] = V43
        return True

    kube.update(Ref("Deployment", ns, "chat-llm"), change)
    wait_for(lambda: len(replicasets(ns)) == 2, 30, "the rollout's ReplicaSet")


def blamed(ns: str, incident: dict, detected: datetime) -> list[dict]:
    target = kube.get(Ref("Deployment", ns, "chat-llm"))
    _, facts = evidence.collect(incident, [target], {}, datetime.now(UTC), detected_at=detected)
    return hypotheses.rank(facts, datetime.now(UTC))


def test_the_operators_sidecar_and_its_undo_are_not_the_deployment_change(solo_namespace):
    ns = solo_namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=0))
    wait_for(lambda: len(replicasets(ns)) == 1, 30, "the first ReplicaSet")
    ship_v43(ns)
    create_incident(ns, "inc", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    incident = kube.get(Ref("AIIncident", ns, "inc"))
    # Detected, and mitigated in the same second, as the operator's first pass does.
    detected = datetime.now(UTC).replace(microsecond=0)
    target = kube.get(Ref("Deployment", ns, "chat-llm"))
    spec = {"type": "GuardrailSidecar", "container": SIDECAR}
    ctx = ActionContext(incident, target, spec, {"responses": []}, api=kube.cluster())
    outcome = REGISTRY["GuardrailSidecar"].apply(ctx)
    assert outcome.state == "Applied", outcome.message
    wait_for(lambda: len(replicasets(ns)) == 3, 30, "the sidecar's ReplicaSet")
    ours = next(rs for rs in replicasets(ns) if revision(rs) == "3")
    assert ledger.ANNOTATION in ours["metadata"]["annotations"]  # copied by the controller

    ranked = blamed(ns, incident, detected)
    change = next(h for h in ranked if h["cause"] == "DeploymentChange")
    assert change["evidence"][0].startswith("Deployment/chat-llm rolled out revision 2 ")
    assert (
        f"Deployment/chat-llm image changed registry.local/llm:v42 -> {V43}" in change["evidence"]
    )
    assert not any("guardrail" in line for h in ranked for line in h["evidence"])

    # The undo rolls back to v43's ReplicaSet; a later incident still sees the person's rollout.
    REGISTRY["GuardrailSidecar"].revert(ctx, outcome.objects)
    wait_for(lambda: sorted(revision(rs) for rs in replicasets(ns)) == ["1", "3", "4"], 30,
             "the rollback to v43's ReplicaSet")  # fmt: skip
    later = blamed(ns, incident, datetime.now(UTC))
    change = next(h for h in later if h["cause"] == "DeploymentChange")
    assert change["evidence"][0].startswith("Deployment/chat-llm rolled out revision 2 ")
    assert not any("rolled back" in line or "guardrail" in line for line in change["evidence"])


def test_root_cause_identified_follows_the_hypotheses_then_the_person(namespace, operator, hook):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS, replicas=1))
    wait_for(lambda: len(replicasets(namespace)) == 1, 30, "the first ReplicaSet")
    ship_v43(namespace)
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "GuardrailSidecar", "container": SIDECAR}]}],
    }  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", spec))
    wait_for(lambda: _ready(namespace), 30, "policy Ready")
    open_incident(namespace, "rc")
    phase_is(namespace, "rc", "Mitigated")

    # The evidence is gathered apart from the pass; the condition follows it there.
    status = wait_for(lambda: (s := status_of(namespace, "rc")).get("hypotheses") and s, 30,
                      "hypotheses")  # fmt: skip
    top = status["hypotheses"][0]
    assert top["cause"] == "DeploymentChange"
    assert top["evidence"][0].startswith("Deployment/chat-llm rolled out revision 2 ")
    assert not any("guardrail" in line for h in status["hypotheses"] for line in h["evidence"])
    found = wait_for(lambda: condition(status_of(namespace, "rc"), "RootCauseIdentified")
                     .get("reason") == "HypothesisAboveThreshold", 30, "RootCauseIdentified")  # fmt: skip
    assert found

    done = aiincident("resolve", "rc", "-n", namespace, "--root-cause", "the v43 image")
    assert done.returncode == 0, done.stderr
    status = phase_is(namespace, "rc", "Resolved", timeout=60)
    assert condition(status, "RootCauseIdentified")["message"] == (
        "spec.resolution.rootCause: the v43 image"
    )
    # During the review the person finds out more: the condition says what they say.
    kube.patch(Ref("AIIncident", namespace, "rc"),
               {"spec": {"resolution": {"rootCause": "v43 dropped the safety preamble"}}})  # fmt: skip
    wait_for(lambda: condition(status_of(namespace, "rc"), "RootCauseIdentified").get("message")
             == "spec.resolution.rootCause: v43 dropped the safety preamble", 30, "the new cause")  # fmt: skip
