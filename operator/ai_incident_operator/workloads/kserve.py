"""KServe InferenceService (serving.kserve.io/v1beta1) and LLMInferenceService
(serving.kserve.io/v1alpha2).

Taken offline with KServe's own stop, the annotation `serving.kserve.io/stop: "true"`
(KServe deletes what it made and reports Ready=False/Stopped; removing it starts the
model again); never by scaling the Deployments KServe owns. Ready is KServe's Ready
condition for the latest generation.

An InferenceService's predictor is a PodSpec with the model as a container
(`spec.predictor.model`, named `kserve-container` unless it says otherwise); the
RawDeployment-mode canary predictors of `spec.canary[]` are pod specs too. An
LLMInferenceService has `spec.template` (and `spec.worker` for multi-node) and, when
prefill is split out, `spec.prefill.template` and `spec.prefill.worker`.
"""

from __future__ import annotations

from ..fieldpath import ABSENT, escape, get, join
from .base import Body, Container, PodSpec, Workload, condition, generation_seen, name_of

STOP = "serving.kserve.io/stop"
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # KServe's label on a predictor's Pods
STOP_PATH = join("metadata", "annotations", escape(STOP))
MODEL_CONTAINER = "kserve-container"


class _KServe(Workload):
    def offline(self, obj: Body) -> dict[str, str]:
        return {STOP_PATH: "true"}

    def ready(self, obj: Body) -> tuple[bool, str]:
        name = name_of({"kind": self.kind, **obj})
        if get(obj, STOP_PATH) == "true":
            return False, f"{name}: stopped ({STOP}: true)"
        if not generation_seen(obj):
            return False, f"{name}: KServe has not yet seen the latest change"
        ready = condition(obj, "Ready")
        if ready is None:
            return False, f"{name}: no Ready condition yet"
        if ready.get("status") != "True":
            why = ready.get("message") or ready.get("reason") or "not ready"
            return False, f"{name}: Ready={ready.get('status')}: {why}"
        return True, f"{name}: Ready"


class InferenceService(_KServe):
    kind = "InferenceService"

    def pod_specs(self, obj: Body) -> list[PodSpec]:
        # A predictor's own `annotations` go onto its Pods.
        pods = [PodSpec("/spec/predictor", "predictor", "/spec/predictor/annotations",
                        "/spec/predictor/labels")]  # fmt: skip
        for i, _ in enumerate(_items(get(obj, "/spec/canary"))):
            path = f"/spec/canary[{i}]/predictor"
            pods.append(
                PodSpec(path, f"canary {i} predictor", f"{path}/annotations", f"{path}/labels")
            )
        return pods

    def pod_selector(self, obj: Body) -> dict[str, str]:
        return {ISVC_LABEL: str((obj.get("metadata") or {}).get("name", ""))}

    def pod_labels(self, obj: Body, pod: PodSpec) -> dict[str, str]:
        name = str((obj.get("metadata") or {}).get("name", ""))
        return {**super().pod_labels(obj, pod), ISVC_LABEL: name, "component": "predictor"}

    def containers(self, obj: Body) -> list[Container]:
        found = []
        for pod in self.pod_specs(obj):
            model = get(obj, f"{pod.path}/model")
            if isinstance(model, dict):
                found.append(Container(model.get("name") or MODEL_CONTAINER, f"{pod.path}/model"))
        return found + super().containers(obj)

    def model_paths(self, obj: Body) -> list[str]:
        return [f"{pod.path}/model/storageUri" for pod in self.pod_specs(obj)]

    def version(self, obj: Body) -> str:
        uri = get(obj, "/spec/predictor/model/storageUri")
        revision = get(obj, "/status/components/predictor/latestReadyRevision")
        parts = [f"storageUri={uri}"] if isinstance(uri, str) else []
        if isinstance(revision, str):
            parts.append(f"revision={revision}")
        images = super().version(obj)
        return ", ".join(parts + ([images] if images != "no image" else [])) or "no model"


class LLMInferenceService(_KServe):
    kind = "LLMInferenceService"

    def pod_specs(self, obj: Body) -> list[PodSpec]:
        pods = []
        for path, what in (
            ("/spec/template", "template"),
            ("/spec/worker", "worker"),
            ("/spec/prefill/template", "prefill template"),
            ("/spec/prefill/worker", "prefill worker"),
        ):
            if get(obj, path) is not ABSENT:
                pods.append(PodSpec(path, what))
        return pods

    def pod_selector(self, obj: Body) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": str((obj.get("metadata") or {}).get("name", "")),
            "app.kubernetes.io/part-of": "llminferenceservice",
        }

    def pod_labels(self, obj: Body, pod: PodSpec) -> dict[str, str]:
        # As KServe's LLMInferenceService controller labels the Pods it makes.
        component = {"template": "workload", "worker": "workload-worker"}.get(
            pod.what, "workload-prefill"
        )
        labels = {
            "app.kubernetes.io/name": str((obj.get("metadata") or {}).get("name", "")),
            "app.kubernetes.io/part-of": "llminferenceservice",
            "app.kubernetes.io/component": f"llminferenceservice-{component}",
        }
        if pod.what == "template":
            labels["kserve.io/component"] = "workload"
        return labels

    def model_paths(self, obj: Body) -> list[str]:
        return ["/spec/model/uri"]

    def version(self, obj: Body) -> str:
        uri = get(obj, "/spec/model/uri")
        images = super().version(obj)
        parts = [f"model={uri}"] if isinstance(uri, str) else []
        return ", ".join(parts + ([images] if images != "no image" else [])) or "no model"


def _items(value: object) -> list:
    return value if isinstance(value, list) else []
