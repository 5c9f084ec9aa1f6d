"""Policy gates on a live operator (issue 12, item 17): a ClusterMitigationPolicy chosen by
its namespaceSelector, `safety.cooldown` between two incidents on one target, and a
policy's own `safety.protectedNamespaces`. Each asserts the object as a user reads it
back, so that a gate that stops working fails here."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from test_mitigation import LABELS, SEV1, chat_policy, patch_spec, phase_is, setup_model, snapshot

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import create_incident, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
SCALE_ONLY = {"severity": 1, "actions": [{"type": "ScaleToZero"}]}


def conditions(incident: dict) -> dict[str, dict]:
    return {c["type"]: c for c in incident.get("status", {}).get("conditions", [])}


def replicas(ns: str, name: str = "chat-llm") -> int:
    return kube.get(Ref("Deployment", ns, name))["spec"]["replicas"]


@pytest.fixture
def cluster_policy() -> Iterator[tuple[str, str]]:
    """A ClusterMitigationPolicy name and a namespace label value only this test uses."""
    name, value = f"gates-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex[:8]
    yield name, value
    kube.delete(Ref("ClusterMitigationPolicy", "", name))


def test_cluster_policy_is_chosen_by_its_namespace_selector(namespace, operator, cluster_policy):
    name, value = cluster_policy
    spec = {
        "priority": 10,
        "namespaceSelector": {"matchLabels": {"aiincident-test/gates": value}},
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"defaultSeverity": 1},
        "responses": [SCALE_ONLY],
    }
    setup_model(namespace)
    kube.create("ClusterMitigationPolicy", "", policy_body(name, spec, "ClusterMitigationPolicy"))
    ready = wait_for(
        lambda: conditions(kube.get(Ref("ClusterMitigationPolicy", "", name)) or {}).get("Ready"),
        20,
        "the ClusterMitigationPolicy's Ready condition",
    )
    assert ready["status"] == "True", ready

    # Not selected yet: the namespace lacks the label, so no policy and nothing changes.
    create_incident(namespace, "before", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})  # fmt: skip
    unpolicied = wait_for(
        lambda: conditions(get_incident(namespace, "before")).get("Mitigated"), 20, "Mitigated"
    )
    assert unpolicied["reason"] == "NoPolicy", unpolicied
    assert replicas(namespace) == 3

    kube.patch(
        Ref("Namespace", "", namespace), {"metadata": {"labels": {"aiincident-test/gates": value}}}
    )
    create_incident(namespace, "after", {"category": "ModelFailure", "target": {"name": "chat-llm"}})  # fmt: skip
    incident = phase_is(namespace, "after", "Mitigated")
    assert incident["status"]["policyRef"] == {"kind": "ClusterMitigationPolicy", "name": name}
    assert replicas(namespace) == 0


def test_cooldown_holds_a_second_incident_back(namespace, operator):
    policy = chat_policy(safety={"cooldown": "1h"})
    policy["responses"] = [SCALE_ONLY]
    setup_model(namespace, policy)
    create_incident(namespace, "first", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})  # fmt: skip
    phase_is(namespace, "first", "Mitigated")
    assert replicas(namespace) == 0
    patch_spec(namespace, "first", {"resolution": {"requested": True}})
    phase_is(namespace, "first", "Resolved", "Closed")
    assert replicas(namespace) == 3

    create_incident(namespace, "second", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})  # fmt: skip
    mitigated = wait_for(
        lambda: (
            conditions(get_incident(namespace, "second")).get("Mitigated", {}).get("reason")
            == "CooldownActive"
            and conditions(get_incident(namespace, "second"))["Mitigated"]
        ),
        30,
        "second incident held back by the cooldown",
    )
    incident = get_incident(namespace, "second")
    assert mitigated["status"] == "False", mitigated
    assert "cooldown that ends at" in mitigated["message"], mitigated
    assert incident["status"]["phase"] != "Mitigated"
    assert [m["state"] for m in incident["status"]["mitigations"]] == ["Skipped"]
    assert replicas(namespace) == 3  # the target that just came back stays up


def test_policy_protected_namespaces_change_nothing(namespace, operator):
    policy = chat_policy(safety={"protectedNamespaces": [namespace]})
    policy["responses"] = [SEV1]
    setup_model(namespace, policy)
    before = snapshot(namespace)
    create_incident(namespace, "p", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    mitigated = wait_for(
        lambda: conditions(get_incident(namespace, "p")).get("Mitigated"), 30, "Mitigated"
    )
    assert (mitigated["status"], mitigated["reason"]) == ("False", "ProtectedNamespace"), mitigated
    assert namespace in mitigated["message"]
    assert snapshot(namespace) == before
