"""Incident creation -> target mitigated, beside the floor of the same API writes done directly.

Each of N incidents targets its own Deployment under a ScaleToZero policy. The
latency is from the start of the incident's POST to the watch event that shows the
Deployment at 0 replicas; incidents are created one at a time, each once the
previous one has settled (its evidence gathered). The floor is, per incident, the plain writes the operator's
work amounts to (create the incident, set replicas, write the incident status),
done back to back by this process.

Then, per model-serving kind (StatefulSet, Argo Rollout, LeaderWorkerSet, KServe
InferenceService and LLMInferenceService, on their upstream CRDs from
../shared/thirdparty-crds), KIND_N incidents the same way: incident created -> the
watch shows the workload offline (replicas 0, or KServe's stop annotation); one line
per kind is printed and kept under `by_kind`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import kubernetes
import yaml

from ai_incident_operator import kube, workloads
from ai_incident_operator.errors import APIError
from ai_incident_operator.kube import Ref

from . import common
from .common import REPO, ZeroWatcher, control_plane, operator_process, percentiles, save

NS = "bench"
LABELS = {"bench": "mitigation"}
KIND_N = int(os.environ.get("AIINCIDENT_BENCH_KIND_N", "20"))
THIRDPARTY = Path(
    os.environ.get("AIINCIDENT_THIRDPARTY_CRDS", REPO.parent / "shared" / "thirdparty-crds")
)
KIND_CRDS = {
    "Rollout": "argo-rollouts-rollouts.yaml",
    "LeaderWorkerSet": "lws-leaderworkersets.yaml",
    "InferenceService": "kserve-inferenceservices.yaml",
    "LLMInferenceService": "kserve-llminferenceservices.yaml",
}
SERVING_KINDS = ("StatefulSet", "Rollout", "LeaderWorkerSet", "InferenceService",
                 "LLMInferenceService")  # fmt: skip


def _pod(name: str) -> dict:
    return {"metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "llm", "image": "llm:1"}]}}  # fmt: skip


def _workload(kind: str, name: str) -> dict:
    """A small KIND named NAME with LABELS, as the upstream samples have it."""
    k = kube.KINDS[kind]
    meta = {"name": name, "labels": LABELS}
    selector = {"matchLabels": {"app": name}}
    spec: dict = {
        "StatefulSet": {"replicas": 2, "serviceName": name, "selector": selector,
                        "template": _pod(name)},
        "Rollout": {"replicas": 2, "selector": selector, "template": _pod(name),
                    "strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
        "LeaderWorkerSet": {"replicas": 2, "leaderWorkerTemplate": {
            "size": 2, "workerTemplate": {"spec": _pod(name)["spec"]}}},
        "InferenceService": {"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                                     "storageUri": "hf://bench/model"}}},
        "LLMInferenceService": {"model": {"uri": "hf://bench/model"}, "replicas": 1,
                                "template": {"containers": [{"name": "main", "image": "vllm:1"}]}},
    }[kind]  # fmt: skip
    return {"apiVersion": k.api_version, "kind": kind, "metadata": meta, "spec": spec}


def _install_serving_crds() -> None:
    """The upstream CRDs of the model-serving kinds (the C YAML parser: they are large)."""
    api = kubernetes.client.ApiextensionsV1Api()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    names = []
    for file in KIND_CRDS.values():
        for doc in yaml.load_all((THIRDPARTY / file).read_text(), Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            names.append(doc["metadata"]["name"])
            try:
                api.create_custom_resource_definition(doc)
            except kubernetes.client.ApiException as err:
                if err.status != 409:
                    raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conditions = [api.read_custom_resource_definition(n).status.conditions or [] for n in names]
        if all(
            any(c.type == "Established" and c.status == "True" for c in cs) for cs in conditions
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("the model-serving CRDs were not established within 60s")


class OfflineWatcher:
    """Records when each workload of KIND in NS is first seen offline (perf_counter)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.adapter = workloads.adapter(kind)
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        version = ""
        selector = ",".join(f"{k}={v}" for k, v in LABELS.items())
        while not self._stop:
            try:
                for _, obj in kube.watch(self.kind, NS, selector, version):
                    version = obj["metadata"].get("resourceVersion", version)
                    if not obj["metadata"].get("name"):
                        continue  # a bookmark: only its resourceVersion counts
                    if self.adapter.is_offline(obj):
                        with self.cond:
                            self.seen.setdefault(obj["metadata"]["name"], time.perf_counter())
                            self.cond.notify_all()
                    if self._stop:
                        return
            except APIError:
                version = ""
                time.sleep(0.1)

    def stop(self) -> None:
        self._stop = True

    def wait(self, name: str, timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.seen, timeout):
                raise TimeoutError(f"{self.kind}/{name} was not taken offline within {timeout}s")
            return self.seen[name]


def _by_kind(n: int) -> dict[str, dict]:
    """Incident created -> offline, per model-serving kind; the operator is running."""
    figures = {}
    for kind in SERVING_KINDS:
        watcher = OfflineWatcher(kind)
        time.sleep(0.5)  # the watch is open before the first incident
        latencies = []
        for i in range(n):
            name = f"{kind.lower()}-{i}"
            start = time.perf_counter()
            body = common.incident(f"i-{name}", name)
            body["spec"]["target"]["kind"] = kind
            kube.create("AIIncident", NS, body)
            latencies.append((watcher.wait(name) - start) * 1000)
            _settled(f"i-{name}")
        watcher.stop()
        found = percentiles(latencies[2:] if n > 4 else latencies)  # warm-up left out
        figures[kind] = found
        print(f"mitigation {kind}: incident -> offline p50 {found['p50_ms']} ms, "
              f"p99 {found['p99_ms']} ms (n={found['n']})", flush=True)  # fmt: skip
    return figures


def _deployment(name: str) -> dict:
    return common.deployment(name, LABELS, 2)


def _settled(name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (kube.get(Ref("AIIncident", NS, name)) or {}).get("status") or {}
        if status.get("evidenceCollectedAt"):
            return
        time.sleep(0.02)
    raise TimeoutError(f"incident {name} did not settle within {timeout}s")


def run(n: int = 120, kind_n: int = KIND_N) -> dict:
    with control_plane():
        _install_serving_crds()
        kube.create("Namespace", "", {"metadata": {"name": NS}})
        for i in range(n):
            kube.create("Deployment", NS, _deployment(f"m{i}"))
            kube.create("Deployment", NS, _deployment(f"floor{i}"))
        for kind in SERVING_KINDS:
            for i in range(kind_n):
                kube.create(kind, NS, _workload(kind, f"{kind.lower()}-{i}"))
        kube.create("MitigationPolicy", NS, common.scale_to_zero_policy(LABELS))
        with operator_process("--namespace", NS):
            deadline = time.monotonic() + 30
            while (
                not (kube.get(Ref("MitigationPolicy", NS, "bench")) or {})
                .get("status", {})
                .get("conditions")
            ):
                if time.monotonic() > deadline:
                    raise RuntimeError("policy was never checked; see bench-results/operator.log")
                time.sleep(0.1)
            watcher = ZeroWatcher(NS)
            time.sleep(1)
            latencies = []
            for i in range(n):
                start = time.perf_counter()
                kube.create("AIIncident", NS, common.incident(f"i{i}", f"m{i}"))
                latencies.append((watcher.wait(f"m{i}") - start) * 1000)
                # One incident at a time: the previous one's evidence gathering (after its
                # mitigation) must not share the CPU with this one's. The storm benchmark
                # measures throughput.
                _settled(f"i{i}")
            watcher.stop()
            by_kind = _by_kind(kind_n)

        floor = []
        for i in range(n):
            start = time.perf_counter()
            kube.create("AIIncident", NS, common.incident(f"f{i}", f"floor{i}"))
            deploy = kube.get(Ref("Deployment", NS, f"floor{i}"))
            deploy["spec"]["replicas"] = 0
            kube.replace(Ref("Deployment", NS, f"floor{i}"), deploy)
            kube.patch_status(Ref("AIIncident", NS, f"f{i}"), {"phase": "Mitigated"})
            floor.append((time.perf_counter() - start) * 1000)

    operator = percentiles(latencies[5:])  # the first few warm the operator's caches up
    floor_figures = percentiles(floor[5:])
    figures = {
        "incidents": n,
        "operator_create_to_mitigated": operator,
        "floor_same_writes_directly": floor_figures,
        "p50_ratio_to_floor": round(operator["p50_ms"] / floor_figures["p50_ms"], 2),
        "by_kind": by_kind,  # incident -> offline, per model-serving kind
        "aims": {"p50_ratio_to_floor_max": 3, "p99_ms_max": 100},
    }
    save("mitigation", figures)
    return figures
