"""Incident creation -> target mitigated, beside the floor of the same API writes done directly.

Each of N incidents targets its own Deployment under a ScaleToZero policy. The
latency is from the start of the incident's POST to the watch event that shows the
Deployment at 0 replicas; incidents are created one at a time, each once the
previous one has settled (its evidence gathered). The floor is, per incident, the plain writes the operator's
work amounts to (create the incident, set replicas, write the incident status),
done back to back by this process.
"""

from __future__ import annotations

import time

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from . import common
from .common import ZeroWatcher, control_plane, operator_process, percentiles, save

NS = "bench"
LABELS = {"bench": "mitigation"}


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


def run(n: int = 120) -> dict:
    with control_plane():
        kube.create("Namespace", "", {"metadata": {"name": NS}})
        for i in range(n):
            kube.create("Deployment", NS, _deployment(f"m{i}"))
            kube.create("Deployment", NS, _deployment(f"floor{i}"))
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
        "aims": {"p50_ratio_to_floor_max": 3, "p99_ms_max": 100},
    }
    save("mitigation", figures)
    return figures
