"""Regulatory exposure: the report deadline, legal's notification, a warning as it nears."""

from __future__ import annotations

from datetime import datetime, timedelta

import kubernetes
import pytest

from ai_incident_operator import engine, kube

from kit import create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app": "chat"}


def test_regulatory_clock_and_legal_notified(namespace, operator, hook):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS))
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "notifications": {"channels": [{"name": "legal", "format": "Generic", "webhook": {"url": f"{hook.url}/legal"}}]},
        "regulatory": {"reportWithin": "10s", "channels": ["legal"]},
    }  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", policy))
    wait_for(
        lambda: (kube.get(kube.Ref("MitigationPolicy", namespace, "chat")) or {}).get("status"),
        20,
        "policy checked",
    )
    create_incident(
        namespace,
        "leak",
        {"category": "DataLeak", "regulatoryExposure": True, "target": {"name": "chat-llm"}},
    )
    status = wait_for(
        lambda: (
            (s := get_incident(namespace, "leak").get("status", {})).get("regulatoryReportDueBy")
            and s
        ),
        30,
        "deadline",
    )
    detected = datetime.fromisoformat(status["detectedAt"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(status["regulatoryReportDueBy"].replace("Z", "+00:00"))
    assert due - detected == timedelta(seconds=10)
    body = wait_for(lambda: hook.bodies.get("/legal"), 20, "legal notified")[0]
    assert body["incident"] == "leak" and body["category"] == "DataLeak"

    def reasons() -> list[str]:
        items = (
            kubernetes.client.CoreV1Api()
            .list_namespaced_event(namespace, field_selector="involvedObject.name=leak")
            .items
        )
        return [e.reason for e in items]

    assert wait_for(lambda: "RegulatoryClockStarted" in reasons(), 15, "clock event")
    assert wait_for(lambda: "RegulatoryDeadlineNear" in reasons(), 30, "deadline-near event")
    assert len(hook.bodies["/legal"]) == 1  # notified once, not on every pass


# --- The ordering that made the deadline the 15-day default --------------------------------
# kopf's watch of incidents and its watch of policies are not ordered with each other: a
# pass can see a new incident while the policy index still holds the policy as created
# (no status yet). The passes below run the engine against the real apiserver with the
# index as it was at each moment; no operator runs, so nothing else writes.


def _as_indexed(namespace: str, name: str, ready: bool) -> dict:
    """The policy as kopf's index holds it: before its check (no status), or once Ready."""
    body = kube.get(kube.Ref("MitigationPolicy", namespace, name))
    assert body is not None
    if ready:
        body["status"] = {
            "observedGeneration": body["metadata"]["generation"],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}],
        }
    else:
        body.pop("status", None)
    return body


def _deadline(namespace: str, name: str) -> timedelta | None:
    status = get_incident(namespace, name).get("status") or {}
    if not status.get("regulatoryReportDueBy"):
        return None
    return datetime.fromisoformat(
        status["regulatoryReportDueBy"].replace("Z", "+00:00")
    ) - datetime.fromisoformat(status["detectedAt"].replace("Z", "+00:00"))


def _timeline(namespace: str, name: str) -> list[str]:
    return [t["type"] for t in (get_incident(namespace, name).get("status") or {})["timeline"]]


def _leak(namespace: str, name: str) -> None:
    create_incident(
        namespace,
        name,
        {"category": "DataLeak", "regulatoryExposure": True, "target": {"name": "chat-llm"}},
    )


def test_deadline_waits_for_the_policy_check_not_the_default(namespace):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS))
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "regulatory": {"reportWithin": "10s"},
    }
    kube.create("MitigationPolicy", namespace, policy_body("chat", policy))
    _leak(namespace, "leak")
    api = kube.cluster()

    # The incident's first pass, with the policy indexed but not yet checked.
    early = engine.World(policies=[_as_indexed(namespace, "chat", ready=False)])
    result = engine.reconcile(namespace, "leak", early, api=api)
    assert _deadline(namespace, "leak") is None  # not the 15-day default
    assert "RegulatoryClockStarted" not in _timeline(namespace, "leak")
    assert result.requeue_after is not None and result.requeue_after <= 5

    # The policy's Ready status reaches the index; its event plans the incident again.
    ready = engine.World(policies=[_as_indexed(namespace, "chat", ready=True)])
    engine.reconcile(namespace, "leak", ready, api=api)
    assert _deadline(namespace, "leak") == timedelta(seconds=10)
    assert _timeline(namespace, "leak").count("RegulatoryClockStarted") == 1
    assert "RegulatoryDeadlineChanged" not in _timeline(namespace, "leak")


def test_deadline_set_without_a_policy_follows_the_policy_that_comes(namespace):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS))
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "regulatory": {"reportWithin": "10s"},
    }
    _leak(namespace, "leak")
    api = kube.cluster()

    # No policy anywhere yet (a GitOps sync applying both, the incident first): the default.
    engine.reconcile(namespace, "leak", engine.World(), api=api)
    assert _deadline(namespace, "leak") == timedelta(days=15)

    kube.create("MitigationPolicy", namespace, policy_body("chat", policy))
    ready = engine.World(policies=[_as_indexed(namespace, "chat", ready=True)])
    engine.reconcile(namespace, "leak", ready, api=api)
    assert _deadline(namespace, "leak") == timedelta(seconds=10)
    assert "RegulatoryDeadlineChanged" in _timeline(namespace, "leak")

    # The policy goes: the deadline it set stays (never back to the default).
    engine.reconcile(namespace, "leak", engine.World(), api=api)
    assert _deadline(namespace, "leak") == timedelta(seconds=10)
