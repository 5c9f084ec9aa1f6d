"""The Alertmanager intake under misuse (issue 11, findings 4, 5, 6 and 10), end to end.

Real HTTP to the session's `intake` operator (watching `intake-*`, its own namespace
among them), a real apiserver: an alert cannot resolve a manual incident, cannot
touch the operator or a protected namespace, a squatted name does not capture it,
and one bad alert does not cost the good ones of its payload.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator

import pytest

from ai_incident_operator import kube
from ai_incident_operator.intake import mapping
from ai_incident_operator.kube import Ref

from alertkit import Webhook, am_alert, am_payload
from kit import (
    PROTECTED_NAMESPACE,
    OperatorProcess,
    create_incident,
    deployment,
    policy_body,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def hook(intake: OperatorProcess) -> Webhook:
    return Webhook.of(intake)


def _incident(ns: str, name: str) -> dict:
    found = kube.get(Ref("AIIncident", ns, name))
    assert found is not None, f"{ns}/{name}"
    return found


def _phase(ns: str, name: str) -> str:
    return (_incident(ns, name).get("status") or {}).get("phase", "")


def _condition(incident: dict, type_: str) -> dict | None:
    conditions = (incident.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def _replicas(ns: str, name: str) -> int:
    return kube.get(Ref("Deployment", ns, name))["spec"]["replicas"]


def _ready(kind: str, ns: str, name: str) -> bool:
    body = kube.get(Ref(kind, ns, name)) or {}
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (body.get("status") or {}).get("conditions", [])
    )


def _scale_policy(labels: dict[str, str]) -> dict:
    """Severity 1, scale to zero; resolved once every alert is (the lever an alert pulls)."""
    return {
        "priority": 100,
        "targetSelector": {"matchLabels": labels},
        "triage": {"defaultSeverity": 1},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "resolution": {"autoResolveWhenAlertsResolve": True},
    }


# --- 4. an alert can resolve any incident ------------------------------------------------------


def test_a_resolved_alert_cannot_resolve_a_manual_incident(hook, intake, intake_namespace):
    ns, home = intake_namespace, intake.env["AIINCIDENT_NAMESPACE"]
    labels = {"app.kubernetes.io/part-of": "chat"}
    kube.create("Deployment", ns, deployment("chat-llm", labels))
    kube.create("MitigationPolicy", ns, policy_body("chat", _scale_policy(labels)))
    wait_for(lambda: _ready("MitigationPolicy", ns, "chat"), 30, "policy Ready")
    create_incident(ns, "chat-harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    wait_for(lambda: _phase(ns, "chat-harm") == "Mitigated", 30, "the manual incident Mitigated")
    assert _replicas(ns, "chat-llm") == 0
    before = _incident(ns, "chat-harm")

    # The red team's alert: resolved, naming the incident, as IncreaseMonitoring's rules do.
    resolved = am_alert("resolved", alertname="ChatQualityWatch", namespace=ns,
                        aiincident_incident="chat-harm")  # fmt: skip
    reply = hook.post(am_payload(resolved))
    assert reply.status == 200, reply.body
    (delivered,) = reply.body["incidents"]
    assert (delivered["namespace"], delivered["name"]) != (ns, "chat-harm")
    assert delivered["namespace"] == home and delivered["unmapped"]
    assert "was not opened by the intake" in delivered["note"]
    # The intake answers after its writes: the manual incident was not written at all, so
    # nothing can resolve it (its spec is what autoResolveWhenAlertsResolve reads).
    after = _incident(ns, "chat-harm")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"] and "alerts" not in after["spec"]
    assert after["status"]["phase"] == "Mitigated" and _replicas(ns, "chat-llm") == 0


def test_alerts_fold_into_an_incident_the_intake_opened_and_resolve_only_themselves(
    hook, intake_namespace
):
    ns = intake_namespace
    one, two = (am_alert(namespace=ns, deployment="chat-llm", pod=p) for p in ("p1", "p2"))
    (opened,) = hook.post(am_payload(one, two)).body["incidents"]
    assert opened["result"] == "created"
    done = copy.deepcopy(one) | {"status": "resolved", "endsAt": "2026-01-01T10:30:00Z"}
    watch = am_alert("resolved", alertname="Watch", namespace=ns,
                     aiincident_incident=opened["name"])  # fmt: skip
    replies = [hook.post(am_payload(done)), hook.post(am_payload(watch))]
    assert [r.body["incidents"][0]["name"] for r in replies] == [opened["name"]] * 2
    statuses = {a["fingerprint"]: a["status"] for a in _incident(ns, opened["name"])["spec"]["alerts"]}  # fmt: skip
    assert statuses == {
        one["fingerprint"]: "resolved",
        two["fingerprint"]: "firing",  # not resolved by the others
        watch["fingerprint"]: "resolved",
    }


# --- 5. an alert can take the operator offline -------------------------------------------------


@pytest.fixture
def everywhere_policy(cluster) -> Iterator[dict[str, str]]:
    """A ClusterMitigationPolicy for every namespace (`namespaceSelector: {}`) that scales its
    targets to zero at once; its targets are only the Deployments with the labels yielded."""
    labels = {"misuse-test": uuid.uuid4().hex[:8]}
    name = f"everywhere-{labels['misuse-test']}"
    body = policy_body(name, {**_scale_policy(labels), "namespaceSelector": {}},
                       kind="ClusterMitigationPolicy")  # fmt: skip
    kube.create("ClusterMitigationPolicy", "", body)
    try:
        wait_for(lambda: _ready("ClusterMitigationPolicy", "", name), 30, "cluster policy Ready")
        yield labels
    finally:
        kube.delete(Ref("ClusterMitigationPolicy", "", name))


def test_an_alert_cannot_scale_the_operator_or_open_incidents_in_protected_namespaces(
    hook, intake, everywhere_policy
):
    home = intake.env["AIINCIDENT_NAMESPACE"]
    operator = f"ai-incident-operator-{everywhere_policy['misuse-test']}"
    kube.create("Deployment", home, deployment(operator, everywhere_policy, replicas=1))
    alerts = [
        am_alert(namespace=home, deployment=operator, ai_incident_category="HarmfulOutput"),
        am_alert(
            namespace="kube-system", deployment="coredns", ai_incident_category="HarmfulOutput"
        ),
        am_alert(namespace=PROTECTED_NAMESPACE, model="chat", ai_incident_category="HarmfulOutput"),
    ]
    reply = hook.post(am_payload(*alerts))
    assert reply.status == 200, reply.body
    delivered = reply.body["incidents"]
    assert [d["namespace"] for d in delivered] == [home] * 3
    assert "operator's own namespace" in delivered[0]["unmapped"]
    assert "namespace kube-system is protected" in delivered[1]["unmapped"]
    assert f"namespace {PROTECTED_NAMESPACE} is protected" in delivered[2]["unmapped"]
    assert not kube.list_objects("AIIncident", "kube-system")
    for d in delivered:
        incident = _incident(home, d["name"])
        assert "target" not in incident["spec"]
        assert incident["metadata"]["annotations"][mapping.UNMAPPED_ANNOTATION] == d["unmapped"]
        assert d["unmapped"] in incident["spec"]["description"]
    # The engine takes the incident about the operator up: with no target, it changes nothing.
    triaged = wait_for(
        lambda: _condition(_incident(home, delivered[0]["name"]), "Triaged"), 30, "triage"
    )
    assert (triaged["status"], triaged["reason"]) == ("False", "TargetNotFound")
    assert _replicas(home, operator) == 1


# --- 6. name squatting and hash collisions ------------------------------------------------------


def test_a_squatted_name_does_not_capture_the_alert(hook, intake_namespace):
    ns = intake_namespace
    harm = am_alert(namespace=ns, deployment="chat-llm", ai_incident_category="HarmfulOutput")
    key, _, _ = mapping.locate(mapping.parse(am_payload(harm)).alerts[0], "unused")
    # Someone pre-creates the name the alert would use, about a decoy, at low severity.
    squat = create_incident(ns, key.name, {"category": "HarmfulOutput", "severity": 3,
                                           "target": {"name": "decoy"}})  # fmt: skip
    reply = hook.post(am_payload(harm))
    assert reply.status == 200, reply.body
    (delivered,) = reply.body["incidents"]
    assert (delivered["name"], delivered["result"]) == (f"{key.name}-2", "created")
    assert "was not opened by the intake" in delivered["displaced"]
    squatted = _incident(ns, key.name)
    assert squatted["metadata"]["generation"] == squat["metadata"]["generation"]
    assert "alerts" not in squatted["spec"]
    real = _incident(ns, delivered["name"])
    assert real["spec"]["target"] == {"kind": "Deployment", "name": "chat-llm"}
    assert "severity" not in real["spec"]  # triage decides, not the squatter
    assert key.name in real["metadata"]["annotations"][mapping.DISPLACED_ANNOTATION]
    assert f"not {key.name}" in real["spec"]["description"]
    # A resend and further alerts keep going to the real incident.
    assert hook.post(am_payload(harm)).body["incidents"][0]["name"] == delivered["name"]
    more = am_alert(namespace=ns, deployment="chat-llm", ai_incident_category="HarmfulOutput",
                    pod="p2")  # fmt: skip
    assert hook.post(am_payload(more)).body["incidents"][0] == {
        "namespace": ns, "name": delivered["name"], "result": "updated", "alerts": 1,
        "displaced": delivered["displaced"],
    }  # fmt: skip
    assert "alerts" not in _incident(ns, key.name)["spec"]
    # And names are not for guessing collisions: 64 bits of hash.
    assert len(key.name) - key.name.rindex("-") - 1 == mapping.HASH_LENGTH == 16


def test_an_incident_of_another_key_under_the_name_gets_a_distinct_incident(hook, intake_namespace):
    ns = intake_namespace
    harm = am_alert(namespace=ns, deployment="chat-llm", ai_incident_category="HarmfulOutput")
    key, _, _ = mapping.locate(mapping.parse(am_payload(harm)).alerts[0], "unused")
    # As a hash collision would leave it: the intake's incident of another key, same name.
    other = f"{ns}/deployment/chat-llm-x/HarmfulOutput"
    body = {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": key.name, "annotations": {mapping.KEY_ANNOTATION: other}},
        "spec": {"category": "HarmfulOutput", "target": {"name": "chat-llm-x"}},
    }  # fmt: skip
    kube.create("AIIncident", ns, body)
    (delivered,) = hook.post(am_payload(harm)).body["incidents"]
    assert (
        delivered["name"] == f"{key.name}-2"
        and "holds another alert group" in delivered["displaced"]
    )
    assert "alerts" not in _incident(ns, key.name)["spec"]
    assert _incident(ns, delivered["name"])["metadata"]["annotations"][
        mapping.KEY_ANNOTATION
    ] == key.annotation  # fmt: skip


# --- 10. one poison alert drops the batch --------------------------------------------------------


def test_one_poison_alert_does_not_drop_the_good_ones(hook, intake_namespace):
    ns = intake_namespace
    good = am_alert(namespace=ns, deployment="chat-llm", ai_incident_category="CostAnomaly")
    poison = am_alert(namespace=ns, deployment="chat-llm", big="x" * 5000)
    before = hook.metric("aiincident_alerts_invalid_total", field="labels")
    reply = hook.post(am_payload(good, poison))
    assert reply.status == 200, reply.body
    (delivered,) = reply.body["incidents"]
    assert delivered["result"] == "created"
    assert reply.body["rejected"] == 1
    (problem,) = reply.body["problems"]
    assert problem["field"] == "alerts[1].labels" and "must take at most" in problem["problem"]
    held = _incident(ns, delivered["name"])["spec"]["alerts"]
    assert [a["fingerprint"] for a in held] == [good["fingerprint"]]
    assert hook.metric("aiincident_alerts_invalid_total", field="labels") == before + 1
    # Alertmanager sends the same group again: the good alert is there once, nothing lost.
    again = hook.post(am_payload(good, poison))
    assert again.status == 200 and again.body["incidents"][0]["result"] == "unchanged"
    # Only bad alerts: still a 422, as before.
    only = hook.post(am_payload(poison))
    assert only.status == 422 and only.body["field"] == "alerts[0].labels"
