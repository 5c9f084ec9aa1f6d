"""Regulator-ready: the EU AI Act clock, the evidence freeze before ScaleToZero, the
`aiincident regulatory-report` command, and the response metrics after one incident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ai_incident_operator import kube
from ai_incident_operator.engine import regulatory
from ai_incident_operator.kube import Ref

from alertkit import Webhook
from kit import create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
AIINCIDENT = Path(sys.executable).parent / "aiincident"
LABELS = {"app": "chat", "app.kubernetes.io/version": "v42"}
FIELDS = {
    "apiVersion", "kind", "regime", "article", "reportType", "reportTypeReason", "generatedAt",
    "incident", "provider", "system", "harm", "seriousIncidentCategory", "deadline",
    "servingModel", "causalLink", "correctiveActions", "evidence",
}  # fmt: skip


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ready(namespace: str, name: str) -> dict:
    def ready() -> dict | None:
        body = kube.get(Ref("MitigationPolicy", namespace, name)) or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        return (
            body
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            else None
        )

    return wait_for(ready, 30, "policy Ready")


def test_death_gets_ten_days_and_scale_to_zero_freezes_the_replicas_it_found(namespace, operator):
    kube.create("Deployment", namespace, deployment("chat-llm", LABELS))
    spec = {
        "targetSelector": {"matchLabels": {"app": "chat"}},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "regulatory": {"provider": "Example AI GmbH", "system": "SupportBot 2 (EU-DB 0042)"},
    }
    kube.create("MitigationPolicy", namespace, policy_body("chat", spec))
    _ready(namespace, "chat")
    replicas = kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"]
    assert replicas > 0
    create_incident(namespace, "harm", {
        "category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"},
        "regulatory": {"regime": "EUAIAct", "harm": "Death"},
    })  # fmt: skip
    status = wait_for(
        lambda: (
            (s := get_incident(namespace, "harm").get("status", {})).get("phase") == "Mitigated"
            and s.get("regulatoryReportDueBy")
            and s
        ),
        30,
        "mitigated, with a deadline",
    )
    assert _time(status["regulatoryReportDueBy"]) - _time(status["detectedAt"]) == timedelta(
        days=10
    )
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 0

    # The freeze: in the same status write as the ScaleToZero entry, of the replicas found.
    assert status["frozenEvidenceRef"]["name"] == "harm-frozen"
    configmap = kube.get(Ref("ConfigMap", namespace, "harm-frozen"))
    assert configmap["immutable"] is True
    text = configmap["data"]["evidence.json"]
    assert regulatory.digest(text) == status["evidenceDigest"]
    (target,) = json.loads(text)["targets"]
    assert target["ref"] == "Deployment/chat-llm"
    assert target["object"]["spec"]["replicas"] == replicas
    (entry,) = status["mitigations"]
    assert _time(status["evidenceFrozenAt"]) <= _time(entry["appliedAt"])

    # The report, as a user runs it.
    done = subprocess.run(
        [str(AIINCIDENT), "regulatory-report", "harm", "-n", namespace, "-o", "json"],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= FIELDS
    assert report["reportType"] == "initial" and report["harm"] == "Death"
    assert report["provider"]["name"] == "Example AI GmbH"
    assert report["system"]["name"] == "SupportBot 2 (EU-DB 0042)"
    assert report["seriousIncidentCategory"]["article"] == "Art. 3(49)(a)"
    assert report["deadline"]["dueBy"] == status["regulatoryReportDueBy"]
    (model,) = report["servingModel"]
    assert model["version"] == "v42" and model["images"] and model["source"].startswith("frozen")
    assert [a["action"] for a in report["correctiveActions"]] == ["ScaleToZero"]
    assert report["correctiveActions"][0]["appliedAt"] == entry["appliedAt"]
    frozen = report["evidence"]["frozen"]
    assert frozen["verified"] is True and frozen["digest"] == status["evidenceDigest"]
    assert frozen["content"]["targets"][0]["object"]["spec"]["replicas"] == replicas
    assert set(report["causalLink"]) >= {"hypotheses", "reproduction", "reproduced"}
    md = subprocess.run(
        [str(AIINCIDENT), "regulatory-report", "harm", "-n", namespace],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),
    )  # fmt: skip
    assert md.returncode == 0, md.stderr
    assert status["evidenceDigest"] in md.stdout and "Art. 3(49)(a)" in md.stdout

    # The response metrics, labelled, after this one incident.
    hook = Webhook.of(operator)
    labels = {"namespace": namespace, "severity": "1", "category": "HarmfulOutput"}
    for step in ("triage", "mitigate"):
        wait_for(
            lambda step=step: (
                hook.metric(f"aiincident_time_to_{step}_seconds_count", **labels) == 1
            ),
            15,
            f"time to {step} observed",
        )
    open_ = hook.metric(
        "aiincident_incidents", namespace=namespace, phase="Mitigated", severity="1"
    )
    assert open_ == 1
