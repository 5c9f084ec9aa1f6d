"""`aiincident simulate` against a real apiserver: the operator's plan, with nothing changed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import deployment, service, spec_snapshot, virtual_service

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}


def simulate(tmp_path, policy: dict, incident: dict, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "incident.yaml").write_text(yaml.safe_dump(incident))
    return subprocess.run(
        [sys.executable, "-m", "ai_incident_operator.cli", "simulate",
         "--policy", str(tmp_path / "policy.yaml"), "--incident", str(tmp_path / "incident.yaml"), *args],
        capture_output=True, text=True,
    )  # fmt: skip


def policy(ns: str, fallback: str = "chat-fallback") -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "chat", "namespace": ns},
        "spec": {
            "targetSelector": {"matchLabels": LABELS},
            "triage": {"rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}]},
            "responses": [
                {"severity": 1, "actions": [
                    {"type": "TrafficShift", "router": {"kind": "VirtualService", "name": "chat"},
                     "fallback": {"service": fallback}},
                    {"type": "ScaleToZero"},
                    {"type": "Notify", "channels": ["oncall"]},
                ]},
            ],
            "notifications": {"channels": [{"name": "oncall", "webhook": {"url": "http://127.0.0.1:9/x"}}]},
        },
    }  # fmt: skip


def incident(category: str = "HarmfulOutput") -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "harm"},
        "spec": {"category": category, "target": {"name": "chat-llm"}},
    }


@pytest.fixture
def model(solo_namespace: str) -> str:
    ns = solo_namespace  # no operator watches it: whatever changes, simulate did it
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    kube.create("Service", ns, service("chat", "chat-llm"))
    kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
    kube.create("VirtualService", ns, virtual_service("chat", "chat"))
    return ns


def state(ns: str) -> dict:
    objects = {
        kind: kube.get(Ref(kind, ns, name))
        for kind, name in (("Deployment", "chat-llm"), ("Service", "chat"), ("VirtualService", "chat"))
    }  # fmt: skip
    return {
        # The spec as written (generation: no write happened, not even one of the same values).
        "objects": {k: (spec_snapshot(o), o["metadata"].get("generation")) for k, o in objects.items()},
        "incidents": kube.list_objects("AIIncident", ns),
        "policies": kube.list_objects("MitigationPolicy", ns),
    }  # fmt: skip


def test_simulate_plans_the_response_and_changes_nothing(model, tmp_path):
    before = state(model)
    result = simulate(tmp_path, policy(model), incident(), "--namespace", model, "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(result.stdout)
    assert plan["targets"] == ["Deployment/chat-llm"]
    assert plan["severity"] == 1 and plan["severityReason"].startswith("PolicyRule:")
    assert plan["outcome"] == "WouldMitigate"
    assert [(s["action"], s["target"], s["state"], s["message"]) for s in plan["steps"]] == [
        ("TrafficShift", "Deployment/chat-llm", "DryRun",
         "would set VirtualService/chat: 100% to chat-fallback (was 0%)"),
        ("ScaleToZero", "Deployment/chat-llm", "DryRun",
         "would set Deployment/chat-llm: replicas 3 -> 0"),
        ("Notify", "AIIncident/harm", "DryRun", "would notify oncall"),
    ]  # fmt: skip
    assert state(model) == before

    text = simulate(tmp_path, policy(model), incident(), "--namespace", model)
    assert text.returncode == 0
    assert f"Incident {model}/harm under MitigationPolicy {model}/chat:" in text.stdout
    assert "ScaleToZero on Deployment/chat-llm: DryRun: would set" in text.stdout
    assert state(model) == before


def test_simulate_says_what_would_fail_or_block(model, tmp_path):
    before = state(model)
    result = simulate(tmp_path, policy(model, fallback="nope"), incident(), "-n", model)
    assert result.returncode == 1
    assert "TrafficShift fallback Service" in result.stdout and "does not exist" in result.stdout
    assert (
        "TrafficShift on Deployment/chat-llm: Failed: fallback Service nope not found"
        in result.stdout
    )
    assert "outcome:  WouldFail" in result.stdout

    minor = simulate(tmp_path, policy(model), incident("CostAnomaly"), "-n", model, "-o", "json")
    assert minor.returncode == 0
    assert json.loads(minor.stdout)["outcome"] == "NoResponse"

    broken = policy(model)
    broken["spec"]["responses"][0]["actions"][0]["type"] = "Rollback"
    invalid = simulate(tmp_path, broken, incident(), "-n", model)
    assert invalid.returncode == 1
    assert 'unsupported value "Rollback"' in invalid.stdout
    assert state(model) == before
