"""What the operator needs to know about one kind of model workload (pure).

Each kind the operator may target (a Deployment, a StatefulSet, an Argo Rollout, a
LeaderWorkerSet, a KServe InferenceService or LLMInferenceService) has one adapter:
how to take it offline in the way its own project documents, where its pod
templates and containers are, what version it serves, and whether it serves again.
Actions and resolution ask the adapter instead of assuming a Deployment, and change
the object the user owns, never the Deployments a controller makes from it (the
controller would undo that).

Paths are `fieldpath` paths, so that every change goes through the ledger and is
undone field by field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..fieldpath import ABSENT, get

Body = dict[str, Any]


@dataclass(frozen=True)
class PodSpec:
    """One pod template of a workload: PATH to its PodSpec (the object holding
    `containers`), WHAT it is, in words (e.g. "worker template"), ANNOTATIONS, the
    path to the annotations of the Pods made from it (a change there rolls them; None
    when the kind has no such place), and LABELS, the path to their own labels."""

    path: str
    what: str = "pod template"
    annotations: str | None = None
    labels: str | None = None

    @property
    def containers(self) -> str:
        return f"{self.path}/containers"


@dataclass(frozen=True)
class Container:
    """One container of a workload: its NAME and the PATH to it."""

    name: str
    path: str


class Workload:
    """The adapter interface; one subclass per kind, registered in `workloads.ADAPTERS`."""

    kind: str = ""
    # The kind HPAs and KEDA ScaledObjects name in scaleTargetRef (None: they cannot
    # scale it; its own controller autoscales).
    scale_kind: str | None = None

    def offline(self, obj: Body) -> dict[str, Any]:
        """The fields that take OBJ offline (path -> value): ScaleToZero."""
        return {"/spec/replicas": 0}

    def is_offline(self, obj: Body) -> bool:
        return all(get(obj, path) == value for path, value in self.offline(obj).items())

    def pod_specs(self, obj: Body) -> list[PodSpec]:
        """The pod templates OBJ makes its Pods from, in order."""
        return [
            PodSpec(
                "/spec/template/spec",
                annotations="/spec/template/metadata/annotations",
                labels="/spec/template/metadata/labels",
            )
        ]

    def pod_labels(self, obj: Body, pod: PodSpec) -> dict[str, str]:
        """The labels the Pods made from POD carry: the template's own, plus those the
        kind's controller adds (what a Service or an InferencePool selects them by)."""
        own = get(obj, pod.labels) if pod.labels else ABSENT
        return {str(k): str(v) for k, v in own.items()} if isinstance(own, dict) else {}

    def pod_selector(self, obj: Body) -> dict[str, str]:
        """Labels every Pod of OBJ carries (to list them): its selector's matchLabels, or
        for kinds without a selector, what their controller labels their Pods with."""
        found = get(obj, "/spec/selector/matchLabels")
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    def serving_labels(self, obj: Body) -> dict[str, str]:
        """The labels of the Pods that take requests (see `serving_pod`)."""
        return self.pod_labels(obj, self.serving_pod(obj))

    def serving_pod(self, obj: Body) -> PodSpec:
        """The pod template of the Pods that take requests (a LeaderWorkerSet's leader, a
        KServe predictor): where a guardrail sidecar goes."""
        return self.pod_specs(obj)[0]

    def containers(self, obj: Body) -> list[Container]:
        """Every container of OBJ's pod templates (a container name may repeat across
        templates: a LeaderWorkerSet's leader and workers)."""
        found = []
        for pod in self.pod_specs(obj):
            for item in _list(get(obj, pod.containers)):
                if isinstance(item, dict) and item.get("name"):
                    found.append(Container(item["name"], f"{pod.containers}[name={item['name']}]"))
        return found

    def model_paths(self, obj: Body) -> list[str]:
        """Where OBJ names the model it loads, when not (only) by image: a KServe
        predictor's storageUri, an LLMInferenceService's model URI."""
        return []

    def version(self, obj: Body) -> str:
        """What OBJ serves now, in words: its images (or model URI), for evidence and
        the DeploymentChange hypothesis."""
        return images(obj, self.pod_specs(obj))

    def ready(self, obj: Body) -> tuple[bool, str]:
        """(serves again, why not / what is): traffic goes back only when True."""
        raise NotImplementedError


def as_pod(spec: object) -> Body:
    """SPEC (what a PodSpec path holds) as a plain PodSpec: a KServe predictor's model
    (`model`, a container named kserve-container unless it says) among its containers,
    so that rules on containers (the ConfigMaps they read, their env) see it too."""
    if not isinstance(spec, dict):
        return {}
    model = spec.get("model")
    if not isinstance(model, dict):
        return spec
    first = {"name": model.get("name") or "kserve-container", **model}
    return {**spec, "containers": [first, *(spec.get("containers") or [])]}


def images(obj: Body, pods: list[PodSpec]) -> str:
    seen: list[str] = []
    for pod in pods:
        for item in _list(get(obj, pod.containers)):
            if isinstance(item, dict) and item.get("image"):
                entry = f"{item.get('name', '?')}={item['image']}"
                if entry not in seen:
                    seen.append(entry)
    return ", ".join(seen) or "no image"


def name_of(obj: Body) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def generation_seen(obj: Body) -> bool:
    """Its controller has seen the latest spec (status.observedGeneration, a number or,
    for Argo Rollouts, a string)."""
    seen = (obj.get("status") or {}).get("observedGeneration")
    wanted = (obj.get("metadata") or {}).get("generation")
    if seen is None or wanted is None:
        return seen is None and wanted is None
    try:
        return int(seen) >= int(wanted)
    except (TypeError, ValueError):
        return False


def condition(obj: Body, type_: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == type_:
            return cond
    return None


def replicas_wanted(obj: Body, path: str = "/spec/replicas", default: int = 1) -> int:
    value = get(obj, path)
    return default if value is ABSENT or not isinstance(value, int) else value


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []
