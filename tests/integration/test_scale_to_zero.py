"""ScaleToZero on workloads that an HPA or a KEDA ScaledObject manages."""

from __future__ import annotations

import pytest

from ai_incident_operator import kube
from ai_incident_operator.actions.scale import KEDA_PAUSE
from ai_incident_operator.kube import Ref

from kit import create_incident, deployment, get_incident, policy_body, spec_snapshot, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}
POLICY = {
    "targetSelector": {"matchLabels": LABELS},
    "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
}


def _setup(ns: str) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=2))
    kube.create("MitigationPolicy", ns, policy_body("chat", POLICY))


def _entry(ns: str, name: str) -> dict:
    mitigations = get_incident(ns, name).get("status", {}).get("mitigations") or []
    return next((m for m in mitigations if m["action"] == "ScaleToZero"), {})


def _resolve(ns: str, name: str) -> None:
    kube.patch(Ref("AIIncident", ns, name), {"spec": {"resolution": {"requested": True}}})
    wait_for(lambda: get_incident(ns, name)["status"]["phase"] == "Resolved", 30, "resolved")


def test_hpa_managed_target(namespace, operator):
    _setup(namespace)
    hpa = {
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "chat-llm"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat-llm"},
            "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80,
        },
    }  # fmt: skip
    kube.create("HorizontalPodAutoscaler", namespace, hpa)
    hpa_before = kube.get(Ref("HorizontalPodAutoscaler", namespace, "chat-llm"))["spec"]
    deploy_before = spec_snapshot(kube.get(Ref("Deployment", namespace, "chat-llm")))
    create_incident(
        namespace, "h", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: _entry(namespace, "h").get("state") == "Applied", 30, "applied")
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0
    # The HPA controller sees 0 replicas and stops; the operator reports it in the status.
    wait_for(lambda: "ScalingActive=False/ScalingDisabled" in _entry(namespace, "h").get("message", ""),
             60, "HPA ScalingDisabled in the status")  # fmt: skip
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0
    _resolve(namespace, "h")
    assert spec_snapshot(kube.get(Ref("Deployment", namespace, "chat-llm"))) == deploy_before
    # autoscaling/v1 carries the controller's status in annotations: compare what users write.
    assert kube.get(Ref("HorizontalPodAutoscaler", namespace, "chat-llm"))["spec"] == hpa_before


def test_keda_managed_target(namespace, operator):
    _setup(namespace)
    scaled = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "chat-llm", "annotations": {"team": "ml"}},
        "spec": {"scaleTargetRef": {"name": "chat-llm"}, "minReplicaCount": 1,
                 "triggers": [{"type": "cpu", "metadata": {"value": "80"}}]},
    }  # fmt: skip
    kube.create("ScaledObject", namespace, scaled)
    so_before = spec_snapshot(kube.get(Ref("ScaledObject", namespace, "chat-llm")))
    deploy_before = spec_snapshot(kube.get(Ref("Deployment", namespace, "chat-llm")))
    create_incident(
        namespace, "k", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: _entry(namespace, "k").get("state") == "Applied", 30, "applied")
    entry = _entry(namespace, "k")
    assert entry["objects"] == ["ScaledObject/chat-llm", "Deployment/chat-llm"]
    so = kube.get(Ref("ScaledObject", namespace, "chat-llm"))
    assert so["metadata"]["annotations"][KEDA_PAUSE] == "0"
    assert so["metadata"]["annotations"]["team"] == "ml"
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0
    _resolve(namespace, "k")
    assert spec_snapshot(kube.get(Ref("ScaledObject", namespace, "chat-llm"))) == so_before
    assert spec_snapshot(kube.get(Ref("Deployment", namespace, "chat-llm"))) == deploy_before
