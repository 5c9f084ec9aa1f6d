"""Changes people make during an incident (`investigation.changes`), without a cluster.

The fingerprints compare a target and its ConfigMaps with what was seen before, with
the ledger's originals put back: a person's rollout or ConfigMap edit is a timeline
entry naming what changed, who (managedFields) and when; the operator's own writes
are never one. And the review shows them.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

from ai_incident_operator import ledger, review
from ai_incident_operator.fieldpath import ABSENT
from ai_incident_operator.investigation import changes

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=3)
ENV = "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]"
SIDECAR = "/spec/template/spec/containers[name=guardrail]"


def deployment(image: str = "llm:v42", rv: str = "10") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "chat", "namespace": "prod", "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl-create", "operation": "Update",
                               "time": "2025-03-01T08:00:00Z",
                               "fieldsV1": {"f:spec": {"f:template": {"f:spec": {}}}}}],
        },
        "spec": {"replicas": 3, "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {
                "containers": [{"name": "llm", "image": image,
                                "env": [{"name": "TEMPERATURE", "value": "0.7"}],
                                "volumeMounts": [{"name": "prompts", "mountPath": "/p"}]}],
                "volumes": [{"name": "prompts", "configMap": {"name": "prompts"}}],
            },
        }},
    }  # fmt: skip


def configmap(text: str = "be helpful", rv: str = "20") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "prompts", "namespace": "prod", "resourceVersion": rv,
                     "managedFields": [{"manager": "helm", "operation": "Update",
                                        "time": "2025-03-01T08:00:00Z",
                                        "fieldsV1": {"f:data": {"f:system.txt": {}}}}]},
        "data": {"system.txt": text, "style.txt": "short"},
    }  # fmt: skip


def set_image(obj: dict, image: str, manager: str, when: datetime) -> dict:
    """OBJ after MANAGER set the image of llm (as `kubectl set image` does)."""
    obj = copy.deepcopy(obj)
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
    obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 5)
    obj["metadata"]["managedFields"].append({
        "manager": manager, "operation": "Update", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {
            'k:{"name":"llm"}': {"f:image": {}}}}}}},
    })  # fmt: skip
    return obj


def first_look(target: dict, cm: dict | None) -> dict:
    found, seen = changes.compare({}, [target], {"prompts": cm}, T0)
    assert found == []  # a first look only records
    return seen


def test_a_persons_rollout_is_a_timeline_entry_with_old_and_new_image_who_and_when():
    seen = first_look(deployment(), configmap())
    rolled = set_image(deployment(), "llm:v43", "kubectl-set", T0 + timedelta(minutes=2))
    found, kept = changes.compare(seen, [rolled], None, LATER)
    [change] = found
    assert change.type == "TargetChanged"
    assert change.time == T0 + timedelta(minutes=2)  # when it was made, not when seen
    assert "Deployment/chat: image of llm llm:v42 -> llm:v43" in change.message
    assert "by field manager kubectl-set" in change.message
    assert "resourceVersion 10 -> 15" in change.message
    # ConfigMaps not read this time: their fingerprints are kept as they were.
    assert kept["ConfigMap/prompts"] == seen["ConfigMap/prompts"]
    again, _ = changes.compare(kept, [rolled], None, LATER + timedelta(seconds=30))
    assert again == []  # said once


def test_the_operators_own_changes_to_the_target_are_not_a_persons():
    seen = first_look(deployment(), configmap())
    mitigated = deployment(rv="11")
    # ConservativeConfig's env and a guardrail sidecar, held by the ledger, and a scale to 0.
    ledger.hold(mitigated, "prod/harm", "ConservativeConfig:llm",
                {ENV: {"name": "TEMPERATURE", "value": "0"}})  # fmt: skip
    ledger.hold(mitigated, "prod/harm", "GuardrailSidecar:guardrail",
                {SIDECAR: {"name": "guardrail", "image": "guard:v1"}})  # fmt: skip
    ledger.hold(mitigated, "prod/harm", "ScaleToZero", {"/spec/replicas": 0})
    assert changes.compare(seen, [mitigated], {"prompts": configmap()}, LATER)[0] == []
    # A person's change on top of them is still told, and only it.
    rolled = set_image(mitigated, "llm:v43", "kubectl-set", LATER)
    [change] = changes.compare(seen, [rolled], None, LATER)[0]
    assert "image of llm llm:v42 -> llm:v43" in change.message
    assert "guardrail" not in change.message and "env" not in change.message


def test_an_edit_of_a_mounted_configmap_names_the_keys_the_versions_and_who():
    seen = first_look(deployment(), configmap())
    edited = configmap("be very helpful", rv="27")
    edited["data"]["new.txt"] = "x"
    del edited["data"]["style.txt"]
    edited["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "time": "2025-03-01T09:02:00Z",
         "fieldsV1": {"f:data": {"f:system.txt": {}, "f:new.txt": {}}}}
    )  # fmt: skip
    [change] = changes.compare(seen, [deployment()], {"prompts": edited}, LATER)[0]
    assert change.type == "ConfigChanged"
    assert change.time == T0 + timedelta(minutes=2)
    assert change.message.startswith("ConfigMap/prompts (read by Deployment/chat): ")
    assert "resourceVersion 20 -> 27" in change.message
    assert "keys changed: system.txt; added: new.txt; removed: style.txt" in change.message
    assert "by field manager kubectl-edit" in change.message


def test_configmap_keys_the_operator_holds_and_metadata_only_writes_are_not_changes():
    seen = first_look(deployment(), configmap())
    held = configmap(rv="30")
    ledger.hold(held, "prod/harm", "ConservativeConfig:llm", {"/data/system.txt": "be brief"})
    held["metadata"]["labels"] = {"team": "ml"}
    assert changes.compare(seen, [deployment()], {"prompts": held}, LATER)[0] == []


def test_a_configmap_deleted_and_created_again_is_said_each_time():
    seen = first_look(deployment(), configmap())
    [gone] = changes.compare(seen, [deployment()], {"prompts": None}, LATER)[0]
    assert gone.message == "ConfigMap/prompts (read by Deployment/chat): deleted"
    _, kept = changes.compare(seen, [deployment()], {"prompts": None}, LATER)
    [back] = changes.compare(kept, [deployment()], {"prompts": configmap(rv="40")}, LATER)[0]
    assert "ConfigMap/prompts (read by Deployment/chat): created" in back.message


def test_a_stale_managed_time_is_replaced_by_when_it_was_noticed():
    seen = first_look(deployment(), configmap())
    # Kubernetes before 1.25 may leave an old time on an entry whose field set did not change.
    rolled = set_image(deployment(), "llm:v43", "kubectl-set", T0 - timedelta(days=1))
    [change] = changes.compare(seen, [rolled], None, LATER)[0]
    assert change.time == LATER


def test_a_restart_of_the_pods_is_a_rollout_too():
    seen = first_look(deployment(), None)
    restarted = deployment(rv="12")
    restarted["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2025-03-01T09:01:00Z"
    }
    [change] = changes.compare(seen, [restarted], None, LATER)[0]
    assert "pod template changed (metadata)" in change.message


def test_observe_records_in_the_timeline_and_the_review_shows_it():
    status: dict = {"timeline": [{"time": "2025-03-01T09:00:00Z", "type": "Detected",
                                  "message": "reported"}]}  # fmt: skip
    status["lastSeen"] = first_look(deployment(), configmap())
    rolled = set_image(deployment(), "llm:v43", "kubectl-set", T0 + timedelta(minutes=2))
    found = changes.observe(None, status, "prod", [rolled], LATER, configmaps=False)  # type: ignore[arg-type]
    assert [c.type for c in found] == ["TargetChanged"]
    entry = status["timeline"][-1]
    assert (entry["type"], entry["time"]) == ("TargetChanged", "2025-03-01T09:02:00Z")
    text = review.render({"metadata": {"name": "harm", "namespace": "prod"}, "spec": {},
                          "status": status}, LATER)  # fmt: skip
    assert "| 2025-03-01T09:02:00Z | TargetChanged | Deployment/chat: image of llm llm:v42" in text
    section = text.split("## Changes made during the incident")[1].split("## ")[0]
    assert "TargetChanged: Deployment/chat: image of llm llm:v42 -> llm:v43" in section


def test_the_review_says_when_nobody_changed_anything():
    text = review.render({"metadata": {"name": "harm", "namespace": "prod"}, "spec": {},
                          "status": {}}, LATER)  # fmt: skip
    section = text.split("## Changes made during the incident")[1].split("## ")[0]
    assert "No rollout of the targets" in section


def test_absent_originals_are_put_back_as_absent():
    obj = deployment()
    ledger.hold(obj, "prod/harm", "GuardrailSidecar:guardrail",
                {SIDECAR: {"name": "guardrail", "image": "guard:v1"}})  # fmt: skip
    assert ledger.originals(obj)[SIDECAR] is ABSENT
    names = [c["name"] for c in changes.restored(obj)["spec"]["template"]["spec"]["containers"]]
    assert names == ["llm"]
