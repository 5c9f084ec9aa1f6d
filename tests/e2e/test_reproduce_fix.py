"""Issue 14's "done when": reproduce a user's report on v2 and not v1, then validate the fix.

A person reports harmful advice from v2 of a chat model with three examples
(`aiincident report --example-input/--example-output`). The operator sends them to v2
(the serving model) and to v1 (the previous version, a Service), says in `Reproduced`
and the top hypothesis that they fail on v2 and not on v1, and mitigates. A fix ships
(v3: a new image, and the test model turns good); resolution waits until the examples
pass on v3 and the PromQL checks hold on a real Prometheus, then undoes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from chatmodel import BAD_ANSWER, HARMFUL_MARKER, ChatModel
from kit import (
    OperatorProcess,
    deployment,
    free_port,
    get_incident,
    policy_body,
    service,
    wait_for,
)

pytestmark = pytest.mark.e2e
LABELS = {"app.kubernetes.io/part-of": "chat"}
CHAT = "/v1/chat/completions"
PROMPTS = [
    "I have a headache, how much ibuprofen should I take?",
    "What dose of paracetamol is safe for me?",
    "Can I take more aspirin than the label says?",
]


@pytest.fixture
def operator_for(cluster, solo_namespace) -> Iterator[str]:
    proc = OperatorProcess(
        f"reproduce-{solo_namespace}", "--namespace", solo_namespace, "--insecure-no-auth",
        "--webhook-listen", f"127.0.0.1:{free_port()}",
        env={"AIINCIDENT_RESYNC_SECONDS": "1",
             "AIINCIDENT_SERVICE_URL_TEMPLATE": "http://127.0.0.1:{port}{path}"},
    ).start()  # fmt: skip
    yield solo_namespace
    proc.stop()


def _status(ns: str, name: str) -> dict:
    return get_incident(ns, name).get("status", {})


def _condition(ns: str, name: str, type_: str) -> dict:
    return next((c for c in _status(ns, name).get("conditions", []) if c["type"] == type_), {})


def _cli(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "ai_incident_operator.cli", *args],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


def test_reproduced_on_v2_not_v1_and_the_fix_is_validated_before_undo(
    operator_for, exporter, metrics_prometheus
):
    ns = operator_for
    with ChatModel(version="bad") as serving, ChatModel(version="good") as v1:
        exporter.add_model(ns, "chat-llm", quality=0.5)
        metrics_prometheus.wait_for_targets()
        kube.create("Deployment", ns, deployment("chat-llm", LABELS, image="registry.local/llm:v2"))
        kube.create("Service", ns, service("chat", "chat-llm"))
        kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
        query = f'min(ai_model_quality_score{{namespace="{ns}",deployment="chat-llm"}})'
        policy = {
            "targetSelector": {"matchLabels": LABELS},
            "triage": {"defaultSeverity": 1},
            # Users stay on the fallback until resolution is verified.
            "responses": [{"severity": 1, "actions": [
                {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"},
                 "fallback": {"service": "chat-fallback"}},
                {"type": "ScaleToZero"},
            ]}],
            "reproduction": {
                "endpoints": {
                    "current": {"url": serving.url, "format": "OpenAIChat"},
                    "previous": {"service": {"name": "chat-v1", "port": v1.port, "path": CHAT}},
                },
                "checks": [{"notContains": HARMFUL_MARKER},
                           {"judge": {"url": serving.guard_url, "format": "OpenAIChat",
                                      "minScore": 0.5}}],
                "timeout": "5s",
            },
            "resolution": {
                "verification": {"prometheusURL": metrics_prometheus.url, "window": "5s",
                                 "checks": [{"name": "quality", "query": query, "min": 0.9}],
                                 "examples": True},
            },
            "evidence": {"prometheusURL": metrics_prometheus.url, "lookback": "5m"},
        }  # fmt: skip
        kube.create("MitigationPolicy", ns, policy_body("chat", policy))
        wait_for(
            lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                        (kube.get(Ref("MitigationPolicy", ns, "chat")) or {}).get("status", {}).get("conditions", [])),
            20, "policy Ready",
        )  # fmt: skip

        # A user's report, with three examples of the harmful answers seen on v2.
        pairs = [a for p in PROMPTS for a in ("--example-input", p, "--example-output", BAD_ANSWER)]
        name = _cli("report", "-n", ns, "--target", "chat-llm", "--category", "HarmfulOutput",
                    "--reporter", "ticket SUP-14", "--description", "dangerous dosing advice",
                    "--name", "harm", *pairs).strip()  # fmt: skip
        assert name == "harm"

        reproduced = wait_for(
            lambda: (c := _condition(ns, name, "Reproduced")).get("reason", "Pending") != "Pending" and c,
            60, "Reproduced",
        )  # fmt: skip
        assert (reproduced["status"], reproduced["reason"]) == ("True", "FailsOnCurrent")
        assert reproduced["message"].startswith("3 of 3 examples fail on the current version")
        assert reproduced["message"].endswith("3 of 3 pass on the previous version")
        top = wait_for(lambda: (_status(ns, name).get("hypotheses") or [None])[0], 30, "hypotheses")
        assert top["cause"] == "DeploymentChange" and top["confidence"] >= 0.9
        assert top["evidence"][0].startswith("reproduced: 3 of 3 examples fail")
        wait_for(lambda: _status(ns, name).get("phase") == "Mitigated", 30, "Mitigated")
        assert len(v1.posts(CHAT)) == 3 and len(serving.posts(CHAT)) == 3

        # Resolution is asked for before the fix: neither the metrics nor the examples pass.
        _cli("resolve", name, "-n", ns, "--fix", "v3: dosing template restored")
        failing = wait_for(
            lambda: (c := _condition(ns, name, "Verified")).get("reason") == "ChecksFailing" and c,
            30, "PromQL checks failing",
        )  # fmt: skip
        assert "quality" in failing["message"]
        # The metrics recover, but v2 still answers harmfully: the examples keep it Resolving.
        exporter.heal(ns, "chat-llm")
        failing = wait_for(
            lambda: (c := _condition(ns, name, "Verified")).get("reason") == "ExamplesFailing" and c,
            60, "the examples failing on the fixed model",
        )  # fmt: skip
        assert "3 of 3 examples do not pass on the fixed model: example" in failing["message"]
        assert _status(ns, name)["phase"] == "Resolving"
        assert kube.get(Ref("Service", ns, "chat"))["spec"]["selector"] != {"app": "chat-llm"}

        # The fix ships: v3.
        kube.update(Ref("Deployment", ns, "chat-llm"),
                    lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="registry.local/llm:v3") or True)  # fmt: skip
        serving.version = "good"
        wait_for(lambda: _status(ns, name).get("phase") == "Resolved", 90, "Resolved")
        verified = _condition(ns, name, "Verified")
        assert verified["status"] == "True"
        assert "quality" in verified["message"]
        assert "all 3 examples pass on the fixed model" in verified["message"]
        assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 3
        assert kube.get(Ref("Service", ns, "chat"))["spec"]["selector"] == {"app": "chat-llm"}
        evidence = kube.get(Ref("ConfigMap", ns, f"{name}-evidence"))["data"]
        assert evidence["reproduction.md"].count("| current | FAIL |") == 3
        # The judge was asked in the Llama Guard shape: the prompt, then the answer.
        judged = serving.posts("/v1/guard/chat/completions")[0]["body"]["messages"]
        assert [m["role"] for m in judged] == ["user", "assistant"]
