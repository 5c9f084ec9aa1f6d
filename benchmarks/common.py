"""What every benchmark needs: a control plane, the CRDs, the operator, figures on disk,
and a watch for Deployments scaled to zero (`ZeroWatcher`)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import urllib3
import yaml

from ai_incident_operator import kube, localcluster
from ai_incident_operator.localcluster import free_port

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
    # kube caches its client: drop one made for an earlier benchmark's control plane.
    kube.api_client.cache_clear()
    api = kubernetes.client.ApiextensionsV1Api()
    for path in sorted((REPO / "crds").glob("*.yaml")):
        doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
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


@dataclass
class Operator:
    proc: subprocess.Popen
    webhook_url: str  # http://127.0.0.1:PORT/api/v1/alerts
    token: str


@contextmanager
def operator_process(*args: str, env: dict[str, str] | None = None) -> Iterator[Operator]:
    """`aiincident run` in its own process, webhook on a free port with a random token;
    yields once its liveness endpoint answers."""
    import secrets

    port, webhook_port = free_port(), free_port()
    token = secrets.token_hex(16)
    RESULTS.mkdir(exist_ok=True)
    log = open(RESULTS / "operator.log", "wb")  # noqa: SIM115
    argv = [
        sys.executable, "-m", "ai_incident_operator.cli", "run",
        "--liveness-listen", f"127.0.0.1:{port}", "--webhook-listen", f"127.0.0.1:{webhook_port}",
        *args,
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "AIINCIDENT_WEBHOOK_TOKEN": token, **(env or {})},
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
        yield Operator(proc, f"http://127.0.0.1:{webhook_port}/api/v1/alerts", token)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) PID has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """PID's resident memory now (or FIELD of /proc/PID/status, e.g. VmHWM: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class ZeroWatcher:
    """Records when each Deployment in NAMESPACE (matching LABEL_SELECTOR) is first seen at
    0 replicas (perf_counter)."""

    def __init__(self, namespace: str, label_selector: str = "") -> None:
        self.namespace = namespace
        self.label_selector = label_selector
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        apps = kubernetes.client.AppsV1Api()
        while not self._stop:
            try:
                self._watch(apps)
            except (urllib3.exceptions.HTTPError, OSError, kubernetes.client.ApiException):
                # A watch cut off (a busy apiserver) is started again; one cut off after stop()
                # (the control plane went away) just ends.
                time.sleep(0.1)

    def _watch(self, apps: kubernetes.client.AppsV1Api) -> None:
        for event in kubernetes.watch.Watch().stream(
            apps.list_namespaced_deployment,
            self.namespace,
            label_selector=self.label_selector,
            timeout_seconds=30,
        ):
            obj = event["object"]
            if obj.spec.replicas == 0:
                with self.cond:
                    self.seen.setdefault(obj.metadata.name, time.perf_counter())
                    self.cond.notify_all()
            if self._stop:
                return

    def stop(self) -> None:
        self._stop = True  # the daemon thread ends at its next event or watch timeout

    def wait(self, name: str, timeout: float = 30) -> float:
        with self.cond:
            if not self.cond.wait_for(lambda: name in self.seen, timeout):
                raise TimeoutError(f"{name} was not scaled to zero within {timeout}s")
            return self.seen[name]


# --- The objects every benchmark makes --------------------------------------------------------


def deployment(name: str, labels: dict[str, str], replicas: int) -> dict:
    """A model Deployment (its pods stay Pending: the control plane has no kubelet)."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "llm", "image": "llm:1"}]}}},
    }  # fmt: skip


def incident(name: str, target: str) -> dict:
    """A severity-1 AIIncident naming one Deployment."""
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": name},
        "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": target}},
    }  # fmt: skip


def scale_to_zero_policy(labels: dict[str, str]) -> dict:
    """A MitigationPolicy answering severity 1 with ScaleToZero for Deployments with LABELS."""
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "bench"},
        "spec": {"targetSelector": {"matchLabels": labels},
                 "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]},
    }  # fmt: skip
