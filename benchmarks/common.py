"""What every benchmark needs: a control plane, the CRDs, the operator, and figures on disk."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes
import yaml

from ai_incident_operator import localcluster

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench-results"


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {
        "n": len(ordered),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": round(ordered[-1], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def save(name: str, figures: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    figures = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **figures,
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path


@contextmanager
def control_plane() -> Iterator[Path]:
    """A fresh local control plane with the CRDs (or the cluster in KUBECONFIG with USE_EXISTING_CLUSTER=1)."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        kubeconfig = Path(os.environ["KUBECONFIG"])
        local = None
    else:
        local = localcluster.up(Path(tempfile.mkdtemp(prefix="aiincident-bench-")) / "cluster")
        kubeconfig = local.kubeconfig
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kubernetes.config.load_kube_config(config_file=str(kubeconfig))
    api = kubernetes.client.ApiextensionsV1Api()
    for path in sorted((REPO / "crds").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        try:
            api.create_custom_resource_definition(doc)
        except kubernetes.client.ApiException as err:
            if err.status != 409:
                raise
    time.sleep(2)  # let the CRDs be served
    try:
        yield kubeconfig
    finally:
        if local is not None:
            localcluster.down(local.root)


@contextmanager
def operator_process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """`aiincident run` in its own process; yields once its liveness endpoint answers."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    RESULTS.mkdir(exist_ok=True)
    log = open(RESULTS / "operator.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ai_incident_operator.cli", "run", "--liveness-listen", f"127.0.0.1:{port}", *args],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("operator did not start; see bench-results/operator.log")
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
