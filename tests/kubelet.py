"""What a kubelet would do for the tests: Pods become Running and Ready.

The local control plane has no kubelet (nor scheduler): the controller-manager creates
Pods that stay Pending, so no Deployment ever has available replicas, and the operator
(which gives traffic back only to a ready model) would wait forever. `Kubelet` watches
every Pod and marks it Ready through `pods/status`, as a kubelet reports a started
container. A test that needs Pods to stay Pending (or to become ready at a moment it
chooses) calls `hold(namespace)` first and `mark_ready(...)` when it wants.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from typing import Any

import kubernetes

CONDITIONS = ("PodScheduled", "Initialized", "ContainersReady", "Ready")
_held: set[str] = set()


def hold(namespace: str) -> None:
    """Pods of NAMESPACE are left as they are (Pending), until `mark_ready`."""
    _held.add(namespace)


def ready_status() -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now} for t in CONDITIONS
            ],
        }
    }


def is_ready(pod: Any) -> bool:
    conditions = (pod.status and pod.status.conditions) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def mark_ready(namespace: str, label_selector: str = "") -> int:
    """Mark the Pods of NAMESPACE (matching LABEL_SELECTOR) Ready; how many were marked."""
    core = kubernetes.client.CoreV1Api()
    marked = 0
    for pod in core.list_namespaced_pod(namespace, label_selector=label_selector).items:
        if not is_ready(pod) and not pod.metadata.deletion_timestamp:
            with contextlib.suppress(kubernetes.client.ApiException):  # gone meanwhile
                core.patch_namespaced_pod_status(pod.metadata.name, namespace, ready_status())
                marked += 1
    return marked


class Kubelet:
    """Marks every new Pod Ready, outside held namespaces, until stopped."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._watch: kubernetes.watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="kubelet", daemon=True)

    def start(self) -> Kubelet:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        core = kubernetes.client.CoreV1Api()
        while not self._stop.is_set():
            self._watch = kubernetes.watch.Watch()
            try:
                for event in self._watch.stream(
                    core.list_pod_for_all_namespaces, timeout_seconds=60
                ):
                    pod = event["object"]
                    if self._stop.is_set():
                        return
                    if event["type"] == "DELETED" or is_ready(pod):
                        continue
                    if pod.metadata.namespace in _held or pod.metadata.deletion_timestamp:
                        continue
                    with contextlib.suppress(kubernetes.client.ApiException):
                        core.patch_namespaced_pod_status(
                            pod.metadata.name, pod.metadata.namespace, ready_status()
                        )
            except Exception:  # the apiserver restarted or went away: watch again
                self._stop.wait(0.5)
