"""LeaderWorkerSet (leaderworkerset.x-k8s.io/v1): multi-node serving, e.g. vLLM with
tensor and pipeline parallelism. `spec.replicas` counts groups (one leader and its
workers each); the leader and the workers have their own templates, and without a
leader template the leader uses the worker's."""

from __future__ import annotations

from ..fieldpath import ABSENT, get
from .base import Body, PodSpec, Workload, condition, generation_seen, name_of, replicas_wanted

TEMPLATES = "/spec/leaderWorkerTemplate"
# Set by the LWS controller on every Pod of the set; the leader is worker 0 of its group.
NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"


class LeaderWorkerSet(Workload):
    kind = "LeaderWorkerSet"
    scale_kind = "LeaderWorkerSet"

    def pod_specs(self, obj: Body) -> list[PodSpec]:
        pods = []
        if get(obj, f"{TEMPLATES}/leaderTemplate") is not ABSENT:
            pods.append(_template("leaderTemplate", "leader template"))
        pods.append(_template("workerTemplate", "worker template"))
        return pods

    # serving_pod: the first template, the leader's (without its own, the leader runs
    # the worker's): the leader takes the requests.

    def pod_selector(self, obj: Body) -> dict[str, str]:
        return {NAME_LABEL: str((obj.get("metadata") or {}).get("name", ""))}

    def pod_labels(self, obj: Body, pod: PodSpec) -> dict[str, str]:
        extra = {NAME_LABEL: str((obj.get("metadata") or {}).get("name", ""))}
        if pod == self.serving_pod(obj):
            extra[INDEX_LABEL] = "0"
        return {**super().pod_labels(obj, pod), **extra}

    def ready(self, obj: Body) -> tuple[bool, str]:
        name, status = name_of({"kind": self.kind, **obj}), obj.get("status") or {}
        if not generation_seen(obj):
            return False, f"{name}: its controller has not yet seen the latest change"
        wanted = replicas_wanted(obj)
        if wanted == 0:
            return True, f"{name}: 0 groups wanted"
        updated = status.get("updatedReplicas", wanted)
        if updated < wanted:
            return False, f"{name}: {updated} of {wanted} groups run the current templates"
        ready = status.get("readyReplicas") or 0
        available = condition(obj, "Available") or {}
        if ready < wanted or available.get("status") != "True":
            return False, f"{name}: {ready} of {wanted} groups ready"
        return True, f"{name}: {ready} of {wanted} groups ready"


def _template(field: str, what: str) -> PodSpec:
    base = f"{TEMPLATES}/{field}"
    return PodSpec(f"{base}/spec", what, f"{base}/metadata/annotations", f"{base}/metadata/labels")
