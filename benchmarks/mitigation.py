"""Incident creation -> target mitigated, beside the floor of the same API writes done directly.

Each of N incidents targets its own Deployment under a ScaleToZero policy. The
latency is from the start of the incident's POST to the watch event that shows the
Deployment at 0 replicas. The floor is, per incident, the plain writes the operator's
work amounts to (create the incident, set replicas, write the incident status),
done back to back by this process.
"""

from __future__ import annotations

import threading
import time

import kubernetes

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from .common import control_plane, operator_process, percentiles, save

NS = "bench"
LABELS = {"bench": "mitigation"}


def _deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "llm", "image": "llm:1"}]}}},
    }  # fmt: skip


def _incident(name: str, target: str) -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": name},
        "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": target}},
    }  # fmt: skip


def _policy() -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "bench"},
        "spec": {"targetSelector": {"matchLabels": LABELS},
                 "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]},
    }  # fmt: skip


class ZeroWatcher:
    """Records when each Deployment in the namespace is first seen at 0 replicas."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        apps = kubernetes.client.AppsV1Api()
        while not self._stop:
            for event in kubernetes.watch.Watch().stream(
                apps.list_namespaced_deployment, NS, timeout_seconds=30
            ):
                obj = event["object"]
                if obj.spec.replicas == 0:
                    with self.cond:
                        self.seen.setdefault(obj.metadata.name, time.perf_counter())
                        self.cond.notify_all()
                if self._stop:
                    return

    def wait(self, name: str, timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.seen, timeout):
                raise TimeoutError(f"{name} was not scaled to zero within {timeout}s")
            return self.seen[name]


def run(n: int = 120) -> dict:
    with control_plane():
        kube.create("Namespace", "", {"metadata": {"name": NS}})
        for i in range(n):
            kube.create("Deployment", NS, _deployment(f"m{i}"))
            kube.create("Deployment", NS, _deployment(f"floor{i}"))
        kube.create("MitigationPolicy", NS, _policy())
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
            watcher = ZeroWatcher()
            time.sleep(1)
            latencies = []
            for i in range(n):
                start = time.perf_counter()
                kube.create("AIIncident", NS, _incident(f"i{i}", f"m{i}"))
                latencies.append((watcher.wait(f"m{i}") - start) * 1000)
            watcher._stop = True

        floor = []
        for i in range(n):
            start = time.perf_counter()
            kube.create("AIIncident", NS, _incident(f"f{i}", f"floor{i}"))
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
        "aims": {"p50_ratio_to_floor_max": 3, "p99_ms_max": 100},
    }
    save("mitigation", figures)
    return figures
