"""Logs and traces in the evidence (issue 14 item 5), on the real apiserver.

The evidence ConfigMap gets `logs.md`: the last lines of the targets' Pods' logs,
through `pods/log`. This control plane has no kubelet nor scheduler: a Pod on no node
has no log, and one bound to a node that is not there makes the apiserver refuse the
read. The section must say so, Pod by Pod, in place of the lines (the bounding of
real lines is tests/unit/test_evidence_logs_rules.py). A target without Pods gets a note too. The
policy's `evidence.tracesURL` becomes a link per target in the evidence summary,
with its values URL-encoded, never fetched.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime, timedelta

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.investigation import evidence, logs
from ai_incident_operator.kube import Ref

from kit import create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}
TRACES = ("http://127.0.0.1:9/jaeger/search?service={workload}.{namespace}&kind={kind}"
          "&start={startUs}&end={endUs}&from={start}")  # fmt: skip


def pods_of(ns: str, selector: str, count: int) -> list[dict]:
    return wait_for(
        lambda: len(found := kube.list_objects("Pod", ns, selector)) == count and found,
        30, f"{count} Pods",
    )  # fmt: skip


def test_the_operators_evidence_has_the_pods_logs_and_a_traces_link(namespace, operator):
    ns = namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=2))
    pods = pods_of(ns, "app=chat-llm", 2)
    # A dry run: the operator changes nothing (the Pods stay), the evidence is collected.
    spec = {"targetSelector": {"matchLabels": LABELS}, "safety": {"dryRun": True},
            "evidence": {"tracesURL": TRACES, "lookback": "30m"},
            "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]}  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))
    stored = kube.get(Ref("MitigationPolicy", ns, "chat"))["spec"]["evidence"]
    assert stored["tracesURL"] == TRACES  # the CRD keeps the field (not pruned)

    def ready() -> dict | None:
        status = kube.get(Ref("MitigationPolicy", ns, "chat")).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)

    assert wait_for(ready, 30, "the policy checked")["status"] == "True"
    create_incident(ns, "drift", {"category": "AccuracyDegradation", "severity": 1,
                                  "target": {"name": "chat-llm"}})  # fmt: skip
    ref = wait_for(lambda: (get_incident(ns, "drift").get("status") or {}).get("evidenceRef"),
                   60, "the evidence")  # fmt: skip
    data = kube.get(Ref("ConfigMap", ns, ref["name"]))["data"]

    section = data["logs.md"]
    assert section.startswith("# Model logs\n") and "## Deployment/chat-llm" in section
    for pod in pods:
        name = pod["metadata"]["name"]
        # One note per Pod: no node, so no container ran.
        assert re.search(rf"### Pod {name} \([^)]*\), container llm\n\nNo log: "
                         rf"{re.escape(logs.UNSCHEDULED)}\n", section), section  # fmt: skip
    assert "```" not in section  # no lines were made up
    assert "- `logs.md`: the last lines" in data["summary.md"]

    summary = data["summary.md"]
    lines = [x for x in summary.splitlines() if x.startswith("- Deployment/chat-llm (from ")]
    assert len(lines) == 1, summary
    line = lines[0]
    link = line.rsplit("<", 1)[1].rstrip(">")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(link).query))
    assert query["service"] == f"chat-llm.{ns}" and query["kind"] == "Deployment"
    start, end = (datetime.fromtimestamp(int(query[k]) / 1e6, UTC) for k in ("start", "end"))
    assert timedelta(minutes=29) < end - start < timedelta(minutes=31)  # the lookback
    assert query["from"].endswith("Z") and "%3A" in link  # RFC 3339, URL-encoded
    assert "## Traces" in summary


def test_kserve_pods_are_found_by_its_labels_and_a_target_without_pods_says_so(solo_namespace):
    """No KServe controller runs: a Pod labelled as KServe labels a predictor's stands in."""
    ns = solo_namespace
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "llama"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                         "storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}},
    }  # fmt: skip
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": "vllm"},
        "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {
            "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.11.0"}]}}}},
    }  # fmt: skip
    targets = [kube.create("InferenceService", ns, isvc), kube.create("LeaderWorkerSet", ns, lws)]
    # Pods are admitted once the namespace's default ServiceAccount exists; without a token
    # mounted they need not wait for its token Secret too (1.20's admission asks for one).
    core = kubernetes.client.CoreV1Api()
    wait_for(lambda: core.read_namespaced_service_account("default", ns), 30, "its ServiceAccount")
    kube.create("Pod", ns, {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "llama-predictor-00001-deployment-abc",
                     "labels": {"serving.kserve.io/inferenceservice": "llama",
                                "component": "predictor"}},
        "spec": {"automountServiceAccountToken": False,
                 "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver"},
                                {"name": "queue-proxy", "image": "knative/queue"}]},
    })  # fmt: skip
    kube.create("Pod", ns, {  # bound to a node that is not there: the read is refused
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "llama-predictor-00002-deployment-def",
                     "labels": {"serving.kserve.io/inferenceservice": "llama"}},
        "spec": {"nodeName": "gpu-node-7", "automountServiceAccountToken": False,
                 "containers": [{"name": "kserve-container", "image": "kserve/huggingfaceserver"}]},
    })  # fmt: skip
    kube.create("Pod", ns, {  # another model's Pod: not this target's
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "other", "labels": {"serving.kserve.io/inferenceservice": "other"}},
        "spec": {"automountServiceAccountToken": False, "containers": [{"name": "x", "image": "x"}]},
    })  # fmt: skip
    incident = {"metadata": {"namespace": ns, "name": "harm",
                             "creationTimestamp": "2026-12-01T17:00:00Z"},
                "spec": {"category": "HarmfulOutput"}}  # fmt: skip
    bad = {"evidence": {"tracesURL": "https://tempo.example/search?svc={service}"}}
    data, _ = evidence.collect(incident, targets, bad, datetime.now(UTC))

    section = data["logs.md"]
    isvc_part = section.split("## InferenceService/llama")[1].split("## LeaderWorkerSet/vllm")[0]
    for container in ("kserve-container", "queue-proxy"):
        # (Running and Ready by tests/kubelet.py, but bound to no node.)
        head = f"### Pod llama-predictor-00001-deployment-abc (Running, Ready), container {container}"  # fmt: skip
        assert f"{head}\n\nNo log: {logs.UNSCHEDULED}\n" in isvc_part, section
    # The apiserver's refusal, in its words, in place of the lines.
    refused = isvc_part.split("### Pod llama-predictor-00002-deployment-def")[1]
    assert "No log: the apiserver could not read it (" in refused and "gpu-node-7" in refused, (
        section
    )
    assert "### Pod other" not in section and "```" not in section
    assert "No Pod of LeaderWorkerSet/vllm exists" in section
    assert "evidence.tracesURL has {service}: the placeholders are" in data["summary.md"]
