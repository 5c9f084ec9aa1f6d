"""Resolution against real monitoring: verified through Prometheus, undone step by step.

A real Prometheus scrapes a model-metrics exporter; the operator verifies the
policy's checks over the window before undoing anything, gives traffic back in
steps, restores the full mitigation when a check fails mid-undo, and leaves the
post-incident review document behind.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import (
    OperatorProcess,
    create_incident,
    deployment,
    free_port,
    get_incident,
    policy_body,
    service,
    virtual_service,
    wait_for,
)

pytestmark = pytest.mark.e2e
LABELS = {"app.kubernetes.io/part-of": "chat"}


@pytest.fixture
def operator_for(cluster, solo_namespace):
    proc = OperatorProcess(
        f"resolution-{solo_namespace}", "--namespace", solo_namespace, "--insecure-no-auth",
        "--webhook-listen", f"127.0.0.1:{free_port()}",
        env={"AIINCIDENT_RESYNC_SECONDS": "1"},
    ).start()  # fmt: skip
    yield solo_namespace
    proc.stop()


def _setup(ns: str, prometheus_url: str, steps: list[int], interval: str) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    kube.create("Service", ns, service("chat", "chat-llm"))
    kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
    kube.create("VirtualService", ns, virtual_service("chat", "chat"))
    query = f'min(ai_model_quality_score{{namespace="{ns}",deployment="chat-llm"}})'
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [
            {"type": "TrafficShift", "router": {"kind": "VirtualService", "name": "chat"},
             "fallback": {"service": "chat-fallback"}},
            {"type": "ScaleToZero"},
        ]}],
        "resolution": {
            "verification": {"prometheusURL": prometheus_url, "window": "5s",
                             "checks": [{"name": "quality", "query": query, "min": 0.9}]},
            "undo": {"trafficSteps": steps, "stepInterval": interval},
        },
        "evidence": {"prometheusURL": prometheus_url, "lookback": "5m",
                     "queries": [{"name": "quality", "query": query}]},
        "review": {"dueWithin": "72h"},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", policy))
    wait_for(
        lambda: (kube.get(Ref("MitigationPolicy", ns, "chat")) or {}).get("status"), 20, "policy"
    )


def _status(ns: str) -> dict:
    return get_incident(ns, "harm").get("status", {})


def _condition(ns: str, type_: str) -> dict:
    return next((c for c in _status(ns).get("conditions", []) if c["type"] == type_), {})


def _weights(ns: str) -> dict[str, int]:
    route = kube.get(Ref("VirtualService", ns, "chat"))["spec"]["http"][0]["route"]
    return {d["destination"]["host"]: d.get("weight", 100) for d in route}


def _replicas(ns: str) -> int:
    return kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"]


def _timeline(ns: str) -> list[str]:
    return [t["type"] for t in _status(ns).get("timeline", [])]


def test_resolution_waits_for_healthy_metrics_then_undoes_step_by_step(
    operator_for, exporter, metrics_prometheus
):
    ns = operator_for
    exporter.add_model(ns, "chat-llm", quality=0.5)
    metrics_prometheus.wait_for_targets()
    _setup(ns, metrics_prometheus.url, steps=[50], interval="3s")
    before = kube.get(Ref("VirtualService", ns, "chat"))["spec"]
    create_incident(
        ns, "harm", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: _status(ns).get("phase") == "Mitigated", 30, "mitigated")
    assert _weights(ns) == {"chat": 0, "chat-fallback": 100} and _replicas(ns) == 0
    wait_for(lambda: _condition(ns, "EvidenceCollected").get("status") == "True", 30, "evidence")

    # Asked to resolve while the model is still bad: the model comes back (so that its
    # metrics can show recovery), traffic stays on the fallback, and the status says why.
    kube.patch(
        Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True, "fix": "v43"}}}
    )
    failing = wait_for(
        lambda: (c := _condition(ns, "Verified")).get("reason") == "ChecksFailing" and c,
        30,
        "checks failing",
    )
    assert "quality" in failing["message"]
    assert _status(ns)["phase"] == "Resolving"
    assert _weights(ns)["chat-fallback"] == 100 and _replicas(ns) == 3

    # Healthy again: after the window, traffic comes back in steps.
    exporter.heal(ns, "chat-llm")
    wait_for(lambda: _weights(ns) == {"chat": 50, "chat-fallback": 50}, 20, "the 50% step")
    # The step is written to the router before the pass's status write: wait for the latter.
    wait_for(lambda: "UndoStep" in _timeline(ns), 10, "the step recorded")
    assert _condition(ns, "Verified")["status"] == "True"
    wait_for(lambda: _status(ns).get("phase") == "Resolved", 30, "resolved")
    assert kube.get(Ref("VirtualService", ns, "chat"))["spec"] == before
    assert "UndoStep" in _timeline(ns)

    status = _status(ns)
    assert status["reviewRef"] == {"kind": "ConfigMap", "name": "harm-review"}
    assert status["reviewDueBy"]
    document = kube.get(Ref("ConfigMap", ns, "harm-review"))["data"]["review.md"]
    assert "Post-incident review" in document and "TrafficShift" in document
    assert status["evidenceRef"]["name"] == "harm-evidence"
    evidence = kube.get(Ref("ConfigMap", ns, "harm-evidence"))["data"]
    assert "metrics.md" in evidence

    printed = subprocess.run(
        [sys.executable, "-m", "ai_incident_operator.cli", "review", "harm", "-n", ns],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert printed.strip() == document.strip()

    kube.patch(
        Ref("AIIncident", ns, "harm"),
        {"spec": {"review": {"completed": True, "summary": "template fixed"}}},
    )
    wait_for(lambda: _status(ns).get("phase") == "Closed", 20, "closed")
    assert "template fixed" in kube.get(Ref("ConfigMap", ns, "harm-review"))["data"]["review.md"]


def test_a_check_failing_mid_undo_restores_the_full_mitigation(
    operator_for, exporter, metrics_prometheus
):
    ns = operator_for
    exporter.add_model(ns, "chat-llm")
    metrics_prometheus.wait_for_targets()
    _setup(ns, metrics_prometheus.url, steps=[25, 50], interval="8s")
    create_incident(
        ns, "harm", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
    )
    wait_for(lambda: _status(ns).get("phase") == "Mitigated", 30, "mitigated")
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
    wait_for(lambda: _weights(ns) == {"chat": 25, "chat-fallback": 75}, 40, "the first step")

    exporter.degrade_quality(ns, "chat-llm")  # the model regresses while traffic comes back
    wait_for(lambda: "UndoAborted" in _timeline(ns), 30, "undo aborted")
    assert _weights(ns) == {"chat": 0, "chat-fallback": 100}
    assert _replicas(ns) == 3  # running, unserved: verification must see it recover
    status = _status(ns)
    assert status["phase"] == "Resolving"
    assert _condition(ns, "Verified")["reason"] == "ChecksFailing"
    states = {m["action"]: m["state"] for m in status["mitigations"]}
    assert states == {"TrafficShift": "Applied", "ScaleToZero": "Reverted"}
