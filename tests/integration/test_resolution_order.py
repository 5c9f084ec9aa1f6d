"""Resolution gives traffic back only to a ready model (issue: undo waits for the model).

The namespace's Pods are held Pending (no kubelet marks them Ready) until the test
marks them Ready through `pods/status`, as a kubelet would once the model has loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

import kubelet
from kit import create_incident, deployment, get_incident, policy_body, service, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "order"}


def _setup(ns: str, undo: dict | None = None) -> None:
    kubelet.hold(ns)
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=2))
    kube.create("Service", ns, service("chat", "chat-llm"))
    fallback = service("chat-fallback", "chat-fallback")
    fallback["metadata"]["labels"] = {"aiincident.io/fallback": "true"}  # tenant bounds
    kube.create("Service", ns, fallback)
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [
            {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"},
             "fallback": {"service": "chat-fallback"}},
            {"type": "ScaleToZero"},
        ]}],
        "resolution": {"undo": undo or {}},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("order", policy))
    wait_for(lambda: _policy_ready(ns), 20, "policy Ready")
    create_incident(
        ns, "harm", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: _status(ns).get("phase") == "Mitigated", 30, "mitigated")
    assert _replicas(ns) == 0 and _selector(ns) == {"app": "chat-fallback"}


def _policy_ready(ns: str) -> bool:
    status = (kube.get(Ref("MitigationPolicy", ns, "order")) or {}).get("status") or {}
    ready = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
    assert not ready or ready[0]["status"] == "True", ready
    return bool(ready)


def _status(ns: str) -> dict:
    return get_incident(ns, "harm").get("status", {})


def _condition(ns: str, type_: str) -> dict:
    return next((c for c in _status(ns).get("conditions", []) if c["type"] == type_), {})


def _replicas(ns: str) -> int:
    return kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"]


def _selector(ns: str) -> dict:
    return kube.get(Ref("Service", ns, "chat"))["spec"]["selector"]


def _available(ns: str) -> int:
    return (kube.get(Ref("Deployment", ns, "chat-llm")).get("status") or {}).get(
        "availableReplicas"
    ) or 0


def test_traffic_waits_until_the_restored_model_is_ready(namespace, operator):
    ns = namespace
    _setup(ns)
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})

    # Capacity first, traffic still on the fallback while the Pods load.
    wait_for(lambda: _replicas(ns) == 2, 20, "replicas restored")
    waiting = wait_for(
        lambda: (
            "0 of 2 replicas ready" in (c := _condition(ns, "Resolved")).get("message", "") and c
        ),
        20,
        "waiting for ready",
    )
    assert waiting["reason"] == "WaitingForReady"
    wait_for(lambda: len(kube.list_objects("Pod", ns, "app=chat-llm")) == 2, 30, "2 pods")
    assert _selector(ns) == {"app": "chat-fallback"}
    assert _status(ns)["phase"] == "Resolving"

    # The model has loaded: its Pods are Ready; then, and only then, traffic comes back.
    assert kubelet.mark_ready(ns, "app=chat-llm") == 2
    wait_for(lambda: _status(ns).get("phase") == "Resolved", 30, "resolved")
    assert _selector(ns) == {"app": "chat-llm"}
    assert _available(ns) == 2
    timeline = [t["type"] for t in _status(ns)["timeline"]]
    assert timeline.index("WorkloadReady") < len(timeline) - 1
    assert "readyWaitSince" not in _status(ns)


def test_a_model_that_never_gets_ready_is_reported_not_hung(namespace, operator):
    ns = namespace
    _setup(ns, undo={"readyTimeout": "2s"})
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
    stuck = wait_for(
        lambda: (c := _condition(ns, "Resolved")).get("reason") == "NotReady" and c,
        30,
        "not ready",
    )
    assert "Traffic stays on the fallback" in stuck["message"]
    assert "--skip-verification" in stuck["message"]
    assert _selector(ns) == {"app": "chat-fallback"} and _replicas(ns) == 2
    events = kube.list_objects("Event", ns, field_selector="involvedObject.name=harm")
    assert any(e["reason"] == "NotReady" and e["type"] == "Warning" for e in events)

    # The way out for a person: recorded with who asked.
    subprocess.run(
        [sys.executable, "-m", "ai_incident_operator.cli", "resolve", "harm", "-n", ns,
         "--skip-verification", "--by", "alice"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    wait_for(lambda: _status(ns).get("phase") == "Resolved", 30, "resolved")
    assert _selector(ns) == {"app": "chat-llm"}
    skipped = [t for t in _status(ns)["timeline"] if t["type"] == "VerificationSkipped"]
    assert len(skipped) == 1 and "alice" in skipped[0]["message"]
    assert get_incident(ns, "harm")["spec"]["resolution"]["by"] == "alice"
    assert _condition(ns, "Verified")["reason"] == "VerificationSkipped"
