"""Changes people make during an incident reach its timeline and its review, on a real apiserver.

While the operator holds a conservative config on the model (its own pod-template
change), a person rolls out a new image with `kubectl set image` and edits the
prompt ConfigMap the pods mount with `kubectl patch`. The timeline says both, with
when, what (old -> new image; resourceVersion and keys) and who (the field manager);
the operator's own template change and undo are not among them; and the review
written at resolution has them in its timeline.
"""

from __future__ import annotations

import json

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import create_incident, deployment, get_incident, kubectl, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}


def model(namespace: str) -> None:
    """The model and its prompts as a deploy tool (field manager helm) created them."""
    kubernetes.client.CoreV1Api().create_namespaced_config_map(
        namespace,
        {
            "metadata": {"name": "prompts"},
            "data": {"system.txt": "be helpful", "style.txt": "short"},
        },
        field_manager="helm",
    )
    body = deployment("chat-llm", LABELS)
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0]["volumeMounts"] = [{"name": "prompts", "mountPath": "/prompts"}]
    pod["volumes"] = [{"name": "prompts", "configMap": {"name": "prompts"}}]
    kubernetes.client.AppsV1Api().create_namespaced_deployment(
        namespace, body, field_manager="helm"
    )
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"defaultSeverity": 2},
        "responses": [{"severity": 2, "actions": [
            {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"}}]}],
    }  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", spec))

    def ready() -> bool:
        conditions = (kube.get(Ref("MitigationPolicy", namespace, "chat")) or {}).get("status", {})
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in conditions.get("conditions") or []
        )

    wait_for(ready, 20, "policy Ready")


def entries(namespace: str, name: str, *types: str) -> list[dict]:
    timeline = get_incident(namespace, name).get("status", {}).get("timeline") or []
    return [t for t in timeline if t["type"] in types]


def test_a_rollout_and_a_configmap_edit_by_people_are_in_the_timeline_and_review(
    namespace, operator
):
    model(namespace)
    create_incident(namespace, "drift", {"category": "AccuracyDegradation",
                                         "target": {"name": "chat-llm"}})  # fmt: skip
    wait_for(
        lambda: get_incident(namespace, "drift").get("status", {}).get("phase") == "Mitigated",
        30, "Mitigated",
    )  # fmt: skip
    env = kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["template"]["spec"]
    assert {"name": "TEMPERATURE", "value": "0"} in env["containers"][0]["env"]

    # A person ships a new image while the mitigation holds: the watch of held objects
    # brings it to the timeline at once.
    kubectl("-n", namespace, "set", "image", "deployment/chat-llm", "llm=registry.local/llm:v43")
    [rollout] = wait_for(
        lambda: entries(namespace, "drift", "TargetChanged"), 15, "TargetChanged in the timeline"
    )
    assert (
        "Deployment/chat-llm: image of llm registry.local/llm:v42 -> registry.local/llm:v43"
        in rollout["message"]
    )
    assert "by field manager kubectl-set" in rollout["message"]
    assert "TEMPERATURE" not in rollout["message"] and "env" not in rollout["message"]

    # And edits the prompt the pods mount.
    before = kube.get(Ref("ConfigMap", namespace, "prompts"))["metadata"]["resourceVersion"]
    kubectl("-n", namespace, "patch", "configmap", "prompts", "--type", "merge",
            "-p", json.dumps({"data": {"system.txt": "be very helpful"}}))  # fmt: skip
    after = kube.get(Ref("ConfigMap", namespace, "prompts"))["metadata"]["resourceVersion"]

    # Resolving looks at the ConfigMaps once more, before the review is written.
    kube.patch(Ref("AIIncident", namespace, "drift"), {"spec": {"resolution": {"requested": True}}})
    wait_for(
        lambda: get_incident(namespace, "drift").get("status", {}).get("reviewRef"), 60,
        "Resolved, with its review",
    )  # fmt: skip
    [edit] = entries(namespace, "drift", "ConfigChanged")
    assert edit["message"].startswith("ConfigMap/prompts (read by Deployment/chat-llm): ")
    assert f"resourceVersion {before} -> {after}; keys changed: system.txt" in edit["message"]
    assert "by field manager kubectl-patch" in edit["message"]
    # The operator's own change and its undo were never a person's.
    assert len(entries(namespace, "drift", "TargetChanged")) == 1

    review = kube.get(Ref("ConfigMap", namespace, "drift-review"))["data"]["review.md"]
    timeline = review.split("## Timeline")[1].split("\n## ")[0]
    assert f"| {rollout['time']} | TargetChanged | Deployment/chat-llm: image of llm" in timeline
    assert f"| {edit['time']} | ConfigChanged | ConfigMap/prompts (read by" in timeline
    section = review.split("## Changes made during the incident")[1].split("\n## ")[0]
    assert "TargetChanged" in section and "ConfigChanged" in section
