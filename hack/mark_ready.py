"""Mark a namespace's Pods Ready, as a kubelet would once their containers have started.

The local control plane has no kubelet: Pods stay Pending, and the operator gives
traffic back only to a ready model. Usage: mark_ready.py NAMESPACE [LABEL_SELECTOR]
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import kubernetes


def main(namespace: str, selector: str = "") -> int:
    kubernetes.config.load_kube_config()
    core = kubernetes.client.CoreV1Api()
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
        }
    }
    marked = 0
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.metadata.deletion_timestamp:
            continue
        core.patch_namespaced_pod_status(pod.metadata.name, namespace, ready)
        marked += 1
    return marked


if __name__ == "__main__":
    print(main(*sys.argv[1:3]))
