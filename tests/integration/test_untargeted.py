"""An incident whose target is missing still pages, and can be resolved, reviewed, closed."""

from __future__ import annotations

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "untargeted"}


def _status(ns: str) -> dict:
    return get_incident(ns, "typo").get("status", {})


def _condition(ns: str, type_: str) -> dict:
    return next((c for c in _status(ns).get("conditions", []) if c["type"] == type_), {})


def test_a_mistyped_target_still_pages_and_can_be_resolved_and_closed(namespace, operator, hook):
    ns = namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"},
                                                  {"type": "Notify", "channels": ["oncall"]}]}],
        "notifications": {"channels": [{"name": "oncall", "format": "Generic",
                                        "webhook": {"url": f"{hook.url}/oncall"}}]},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("untargeted", policy))
    wait_for(lambda: (kube.get(Ref("MitigationPolicy", ns, "untargeted")) or {}).get("status"), 20)
    create_incident(
        ns, "typo", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-lmm"}}
    )
    wait_for(lambda: hook.bodies.get("/oncall"), 20, "oncall paged")
    page = hook.bodies["/oncall"][0]
    assert page["severity"] == 1, page
    # The page goes out after the pass's status write; the write may not be read yet: wait.
    triaged = wait_for(
        lambda: _condition(ns, "Triaged").get("reason") and _condition(ns, "Triaged"), 20
    )
    assert triaged["reason"] == "TargetNotFound" and "chat-lmm" in triaged["message"]
    assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 3  # untouched

    kube.patch(Ref("AIIncident", ns, "typo"), {"spec": {"resolution": {"requested": True}}})
    wait_for(lambda: _status(ns).get("phase") == "Resolved", 20, "resolved")
    assert _status(ns)["reviewRef"]["name"] == "typo-review"
    kube.patch(Ref("AIIncident", ns, "typo"), {"spec": {"review": {"completed": True}}})
    wait_for(lambda: _status(ns).get("phase") == "Closed", 20, "closed")
