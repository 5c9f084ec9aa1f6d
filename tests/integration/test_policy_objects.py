"""A policy reacts to the objects it names: its fallback Service appearing makes it Ready at once.

Its own operator re-checks policies only every 10 minutes (AIINCIDENT_RESYNC_SECONDS),
so that the periodic re-check cannot be what makes the policy Ready.
"""

from __future__ import annotations

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import OperatorProcess, deployment, policy_body, service, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def operator_for(cluster, solo_namespace):
    proc = OperatorProcess(
        f"policy-objects-{solo_namespace}", "--namespace", solo_namespace, "--insecure-no-auth",
        env={"AIINCIDENT_RESYNC_SECONDS": "300"},
    ).start()  # fmt: skip
    yield solo_namespace
    proc.stop()


def _ready(ns: str) -> dict:
    status = (kube.get(Ref("MitigationPolicy", ns, "chat")) or {}).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def test_a_fallback_created_after_its_policy_makes_it_ready(operator_for):
    ns = operator_for
    labels = {"app.kubernetes.io/part-of": "chat"}
    kube.create("Deployment", ns, deployment("chat-llm", labels))
    kube.create("Service", ns, service("chat", "chat-llm"))
    policy = {
        "targetSelector": {"matchLabels": labels},
        "responses": [{"severity": 1, "actions": [
            {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"},
             "fallback": {"service": "chat-fallback"}},
        ]}],
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", policy))
    missing = wait_for(lambda: (c := _ready(ns)).get("status") == "False" and c, 20, "not ready")
    assert "chat-fallback" in missing["message"]

    fallback = service("chat-fallback", "chat-fallback")
    fallback["metadata"]["labels"] = {"aiincident.io/fallback": "true"}
    kube.create("Service", ns, fallback)
    # Well before the 10-minute re-check: the Service's own event re-checked it.
    wait_for(lambda: _ready(ns).get("status") == "True", 20, "Ready after the fallback appeared")
