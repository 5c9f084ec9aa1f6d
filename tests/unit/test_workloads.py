"""The workload adapters (pure): how each kind goes offline, where its containers are,
what it serves and when it is ready again. Bodies are shaped like the upstream samples."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator import workloads
from ai_incident_operator.fieldpath import get, put

ISVC = {
    "kind": "InferenceService",
    "metadata": {"name": "llama", "generation": 2, "annotations": {"serving.kserve.io/stop": "false"}},
    "spec": {
        "predictor": {
            "canaryTrafficPercent": 20,
            "model": {"modelFormat": {"name": "huggingface"}, "storageUri": "hf://meta/llama-3.1"},
            "containers": [{"name": "guard", "image": "registry.local/guard:1"}],
        },
        "canary": [{"trafficPercent": 10, "predictor": {"model": {"name": "kserve-container", "storageUri": "hf://qwen"}}}],
    },
    "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}],
               "components": {"predictor": {"latestReadyRevision": "llama-predictor-00002"}}},
}  # fmt: skip
LWS = {
    "kind": "LeaderWorkerSet",
    "metadata": {"name": "vllm", "generation": 1},
    "spec": {
        "replicas": 2,
        "leaderWorkerTemplate": {
            "size": 4,
            "leaderTemplate": {"spec": {"containers": [{"name": "vllm-leader", "image": "vllm:0.11"}]}},
            "workerTemplate": {"spec": {"containers": [{"name": "vllm-worker", "image": "vllm:0.11"}]}},
        },
    },
    "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
               "conditions": [{"type": "Available", "status": "True"}]},
}  # fmt: skip


def test_every_kind_of_the_contract_has_an_adapter():
    assert workloads.KINDS == (
        "Deployment", "StatefulSet", "Rollout", "LeaderWorkerSet", "InferenceService", "LLMInferenceService",
    )  # fmt: skip
    assert workloads.adapter(None).kind == "Deployment"
    with pytest.raises(workloads.UnknownKind, match="one of: Deployment"):
        workloads.adapter("DaemonSet")


def test_kserve_goes_offline_by_its_own_stop_and_others_by_replicas():
    isvc = workloads.adapter("InferenceService")
    assert isvc.offline(ISVC) == {"/metadata/annotations/serving.kserve.io~1stop": "true"}
    assert not isvc.is_offline(ISVC)
    for kind in ("Deployment", "StatefulSet", "Rollout", "LeaderWorkerSet"):
        assert workloads.adapter(kind).offline({}) == {"/spec/replicas": 0}
    assert workloads.adapter("LeaderWorkerSet").scale_kind == "LeaderWorkerSet"
    assert isvc.scale_kind is None  # KServe autoscales its own


def test_containers_of_every_template():
    isvc = workloads.adapter("InferenceService").containers(ISVC)
    assert [(c.name, c.path) for c in isvc] == [
        ("kserve-container", "/spec/predictor/model"),
        ("kserve-container", "/spec/canary[0]/predictor/model"),
        ("guard", "/spec/predictor/containers[name=guard]"),
    ]
    lws = workloads.adapter("LeaderWorkerSet")
    assert [c.path for c in lws.containers(LWS)] == [
        "/spec/leaderWorkerTemplate/leaderTemplate/spec/containers[name=vllm-leader]",
        "/spec/leaderWorkerTemplate/workerTemplate/spec/containers[name=vllm-worker]",
    ]
    for container in lws.containers(LWS):
        assert get(LWS, container.path)["name"] == container.name
    without_leader = {**LWS, "spec": {"leaderWorkerTemplate": {"workerTemplate": LWS["spec"]["leaderWorkerTemplate"]["workerTemplate"]}}}  # fmt: skip
    assert [p.what for p in lws.pod_specs(without_leader)] == ["worker template"]


def test_version_names_the_model():
    assert workloads.adapter("InferenceService").version(ISVC) == (
        "storageUri=hf://meta/llama-3.1, revision=llama-predictor-00002, guard=registry.local/guard:1"
    )
    llm = {"spec": {"model": {"uri": "hf://meta/llama"}, "template": {"containers": [{"name": "main", "image": "vllm:0.11"}]}}}  # fmt: skip
    assert workloads.adapter("LLMInferenceService").version(llm) == "model=hf://meta/llama, main=vllm:0.11"  # fmt: skip


def test_ready_rules_per_kind():
    isvc = workloads.adapter("InferenceService")
    assert isvc.ready(ISVC) == (True, "InferenceService/llama: Ready")
    stopped = {**ISVC, "metadata": {**ISVC["metadata"], "annotations": {"serving.kserve.io/stop": "true"}}}  # fmt: skip
    assert isvc.ready(stopped)[0] is False
    stale = {**ISVC, "metadata": {**ISVC["metadata"], "generation": 3}}
    assert "not yet seen" in isvc.ready(stale)[1]
    lws = workloads.adapter("LeaderWorkerSet")
    assert lws.ready(LWS)[0]
    assert lws.ready({**LWS, "status": {**LWS["status"], "readyReplicas": 1}}) == (
        False, "LeaderWorkerSet/vllm: 1 of 2 groups ready",
    )  # fmt: skip
    rollout = {"kind": "Rollout", "metadata": {"name": "m", "generation": 4},
               "spec": {"replicas": 4}, "status": {"observedGeneration": "4", "phase": "Healthy", "availableReplicas": 4}}  # fmt: skip
    assert workloads.adapter("Rollout").ready(rollout)[0]
    degraded = {**rollout, "status": {**rollout["status"], "phase": "Degraded", "message": "ProgressDeadlineExceeded"}}  # fmt: skip
    assert workloads.adapter("Rollout").ready(degraded) == (
        False, "Rollout/m: phase Degraded: ProgressDeadlineExceeded",
    )  # fmt: skip
    sts = {"kind": "StatefulSet", "metadata": {"name": "s", "generation": 1}, "spec": {"replicas": 2},
           "status": {"observedGeneration": 1, "readyReplicas": 2, "currentRevision": "a", "updateRevision": "b", "updatedReplicas": 1}}  # fmt: skip
    assert workloads.adapter("StatefulSet").ready(sts) == (
        False, "StatefulSet/s: 1 of 2 replicas run the current revision",
    )  # fmt: skip
    sts["status"]["currentRevision"] = "b"
    assert workloads.adapter("StatefulSet").ready(sts)[0]


@given(kind=st.sampled_from(workloads.KINDS), replicas=st.integers(0, 50))
def test_offline_then_restored_is_exactly_the_original(kind, replicas):
    """Taking any kind offline touches only the fields `offline` names, so putting the
    originals back gives the object it was."""
    adapter = workloads.adapter(kind)
    original = {
        "metadata": {"name": "x", "annotations": {"a": "b"}},
        "spec": {"replicas": replicas},
    }
    changed = {"metadata": {"name": "x", "annotations": {"a": "b"}}, "spec": {"replicas": replicas}}
    saved = {path: get(changed, path) for path in adapter.offline(changed)}
    for path, value in adapter.offline(changed).items():
        put(changed, path, value)
    assert adapter.is_offline(changed)
    for path, value in saved.items():
        put(changed, path, value)
    assert changed == original
