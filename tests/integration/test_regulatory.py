"""Regulatory exposure: the report deadline, legal's notification, a warning as it nears."""

from __future__ import annotations

from datetime import datetime, timedelta

import kubernetes
import pytest

from ai_incident_operator import kube

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
