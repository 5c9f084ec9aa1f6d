"""The CRDs on a real apiserver, and the operator's first step on a new incident."""

import json

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.conditions import INCIDENT_CONDITION_TYPES
from ai_incident_operator.errors import Invalid

from kit import create_incident, get_incident, kubectl, wait_for

pytestmark = pytest.mark.integration


def test_kubectl_get_aii_shows_printer_columns(namespace):
    create_incident(
        namespace,
        "chat",
        {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}},
    )
    out = kubectl("get", "aii", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "SEVERITY", "PHASE", "CATEGORY", "TARGET", "AGE"]
    assert "HarmfulOutput" in out and "chat-llm" in out
    # The category groups all three kinds for `kubectl get ai-incidents`.
    assert (
        kubectl("get", "ai-incidents", "-n", namespace, "-o", "name").stdout.strip()
        == "aiincident.aiincident.io/chat"
    )


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"category": "HarmfulOutput", "severity": 7}, "spec.severity"),
        ({"category": "Hallucination"}, "spec.category"),
        ({"category": "Other", "source": {"type": "Twitter"}}, "spec.source.type"),
        ({"severity": 1}, "spec.category"),
    ],
)
def test_apiserver_rejects_invalid_incidents(namespace, spec, complaint):
    body = {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": spec,
    }
    with pytest.raises(Invalid) as err:
        kube.create("AIIncident", namespace, body)
    assert err.value.status == 422
    assert complaint in err.value.message


def test_policy_with_unknown_action_type_is_rejected(namespace):
    policy = {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"responses": [{"severity": 1, "actions": [{"type": "Reboot"}]}]},
    }
    with pytest.raises(Invalid) as err:
        kube.create("MitigationPolicy", namespace, policy)
    assert "spec.responses.actions.type" in err.value.message


def test_new_incident_is_detected_with_conditions_and_event(namespace, operator):
    # The workload "m" does not exist: the incident stays Detected and says why.
    create_incident(
        namespace,
        "leak",
        {"category": "DataLeak", "source": {"type": "External"}, "target": {"name": "m"}},
    )
    incident = wait_for(
        lambda: (
            (i := get_incident(namespace, "leak")).get("status", {}).get("phase") == "Detected"
            and i
        ),
        30,
        "phase Detected",
    )
    status = incident["status"]
    assert status["detectedAt"]
    assert status["observedGeneration"] == incident["metadata"]["generation"]
    assert [c["type"] for c in status["conditions"]] == list(INCIDENT_CONDITION_TYPES)
    triaged = status["conditions"][0]
    assert (triaged["status"], triaged["reason"]) == ("False", "TargetNotFound")
    assert "Deployment " + namespace + "/m not found" in triaged["message"]
    assert all(c["status"] == "Unknown" for c in status["conditions"][1:])
    assert status["timeline"][0]["type"] == "Detected"
    assert "finalizer" not in json.dumps(incident["metadata"].get("annotations", {}))

    def detected_event():
        events = (
            kubernetes.client.CoreV1Api()
            .list_namespaced_event(namespace, field_selector="involvedObject.name=leak")
            .items
        )
        return [e for e in events if e.reason == "Detected"]

    event = wait_for(detected_event, 15, "a Detected event")[0]
    assert event.type == "Normal"
    assert "DataLeak" in event.message and "External" in event.message
