"""Issue 12 item 5: the operator's own rollouts and ConfigMap writes are never a cause.

The ReplicaSets are made as the Deployment controller makes them: the Deployment's
template (with a `pod-template-hash` label) and its annotations, the operator's
`aiincident.io/ledger` among them; a rollback reuses an older ReplicaSet with a new
revision and `revision-history`.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from ai_incident_operator import ledger
from ai_incident_operator.investigation import evidence, own_writes
from ai_incident_operator.investigation.hypotheses import Facts, rank

DETECTED = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
HOLDER = "prod/harm"
SIDECAR = {"name": "guardrail", "image": "registry.local/guardrail:v1"}
SIDECAR_PATH = "/spec/template/spec/containers[name=guardrail]"
Body = dict[str, Any]


def model(image: str = "registry.local/llm:v42") -> Body:
    return {
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {"replicas": 3, "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {"containers": [{"name": "llm", "image": image}]}}},
    }  # fmt: skip


def replicaset(deployment: Body, revision: int, created: datetime, name: str) -> Body:
    """What the Deployment controller makes of DEPLOYMENT as it is now."""
    template = copy.deepcopy(deployment["spec"]["template"])
    template["metadata"]["labels"]["pod-template-hash"] = name
    annotations = {**(deployment["metadata"].get("annotations") or {}),
                   own_writes.REVISION: str(revision)}  # fmt: skip
    return {
        "kind": "ReplicaSet",
        "metadata": {"name": f"chat-{name}", "annotations": annotations,
                     "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {"template": template},
    }  # fmt: skip


def rolled_back(rs: Body, revision: int) -> Body:
    """RS reused by a rollback: a new revision, the old one in revision-history."""
    again = copy.deepcopy(rs)
    annotations = again["metadata"]["annotations"]
    annotations[own_writes.REVISION_HISTORY] = annotations[own_writes.REVISION]
    annotations[own_writes.REVISION] = str(revision)
    return again


def with_sidecar(deployment: Body) -> Body:
    held = copy.deepcopy(deployment)
    ledger.hold(held, HOLDER, "GuardrailSidecar", {SIDECAR_PATH: SIDECAR})
    return held


def history() -> tuple[Body, Body, Body, Body]:
    """v42 three hours before, v43 ten minutes before, the operator's sidecar a second after."""
    v42 = model()
    rs1 = replicaset(v42, 1, DETECTED - timedelta(hours=3), "a1")
    v43 = model("registry.local/llm:v43")
    rs2 = replicaset(v43, 2, DETECTED - timedelta(minutes=10), "b2")
    guarded = with_sidecar(v43)
    rs3 = replicaset(guarded, 3, DETECTED + timedelta(seconds=1), "c3")
    return guarded, rs1, rs2, rs3


def deployment_change(rollouts: list) -> dict:
    ranked = rank(Facts(detected_at=DETECTED, rollouts=rollouts), DETECTED)
    return next(h for h in ranked if h["cause"] == "DeploymentChange")


def test_the_operators_sidecar_rollout_is_not_the_change_people_made():
    guarded, rs1, rs2, rs3 = history()
    blamed = evidence._rollout("Deployment/chat", [rs3, rs2, rs1])  # what it was before
    assert blamed.revision == 3 and "registry.local/guardrail:v1" in blamed.images

    found = evidence._rollout("Deployment/chat", own_writes.people_made([rs3, rs2, rs1], guarded))
    assert (found.revision, found.rollback) == (2, False)
    assert found.time == DETECTED - timedelta(minutes=10)
    assert (found.images, found.previous_images) == (
        ["registry.local/llm:v43"], ["registry.local/llm:v42"]
    )  # fmt: skip
    lines = deployment_change([found])["evidence"]
    assert lines[0].startswith("Deployment/chat rolled out revision 2 10m before detection")
    assert not any("guardrail" in line for line in lines)


def test_the_operators_undo_is_not_a_rollback_people_made():
    _, rs1, rs2, rs3 = history()
    undone = model("registry.local/llm:v43")  # the sidecar is gone, and so is the ledger
    rs2_again = rolled_back(rs2, 4)  # the controller reuses the ReplicaSet of v43
    found = evidence._rollout(
        "Deployment/chat", own_writes.people_made([rs2_again, rs3, rs1], undone)
    )
    assert (found.revision, found.rollback) == (2, False)
    assert found.images == ["registry.local/llm:v43"]
    assert found.time == DETECTED - timedelta(minutes=10)


def test_a_first_rollout_stays_first_when_the_operator_rolled_out_since():
    v42 = model()
    rs1 = replicaset(v42, 1, DETECTED - timedelta(hours=3), "a1")
    guarded = with_sidecar(v42)
    rs2 = replicaset(guarded, 2, DETECTED + timedelta(seconds=1), "b2")
    found = evidence._rollout("Deployment/chat", own_writes.people_made([rs2, rs1], guarded))
    assert (found.revision, found.first, found.images) == (1, True, ["registry.local/llm:v42"])


def test_conservative_config_and_its_rollout_annotation_are_the_operators_too():
    v42 = model()
    v42["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "TEMPERATURE",
                                                                "value": "0.7"}]  # fmt: skip
    rs1 = replicaset(v42, 1, DETECTED - timedelta(hours=3), "a1")
    safer = copy.deepcopy(v42)
    ledger.hold(safer, HOLDER, "ConservativeConfig", {
        "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]":
            {"name": "TEMPERATURE", "value": "0"},
        "/spec/template/metadata/annotations/aiincident.io~1conservative-config": "abc",
    })  # fmt: skip
    rs2 = replicaset(safer, 2, DETECTED + timedelta(seconds=1), "b2")
    assert len(own_writes.people_made([rs2, rs1], safer)) == 1


def test_a_rollout_people_make_while_the_sidecar_is_held_is_theirs():
    guarded, rs1, rs2, rs3 = history()
    fix = copy.deepcopy(guarded)
    fix["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.local/llm:v44"
    rs4 = replicaset(fix, 4, DETECTED + timedelta(seconds=3), "d4")
    found = evidence._rollout("Deployment/chat", own_writes.people_made([rs4, rs3, rs2, rs1], fix))
    assert found.revision == 4
    assert (found.images, found.previous_images) == (
        ["registry.local/llm:v44"], ["registry.local/llm:v43"]
    )  # fmt: skip


def test_a_rollback_people_make_is_still_a_rollback():
    _, rs1, rs2, _ = history()
    back = rolled_back(rs1, 3)  # kubectl rollout undo, back to v42
    found = evidence._rollout("Deployment/chat", own_writes.people_made([back, rs2], model()))
    assert (found.revision, found.rollback, found.images) == (3, True, ["registry.local/llm:v42"])


def test_the_ledger_decides_not_the_field_values():
    """A container the operator did not add (no ledger names it) is a change people made."""
    v42 = model()
    rs1 = replicaset(v42, 1, DETECTED - timedelta(hours=3), "a1")
    sidecar_by_hand = copy.deepcopy(v42)
    sidecar_by_hand["spec"]["template"]["spec"]["containers"].append(dict(SIDECAR))
    rs2 = replicaset(sidecar_by_hand, 2, DETECTED - timedelta(minutes=2), "b2")
    assert len(own_writes.people_made([rs2, rs1], sidecar_by_hand)) == 2
    assert ledger.originals(rs2) == {}
