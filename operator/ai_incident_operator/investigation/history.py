"""The serving version and its history for the model-serving kinds (evidence, item 4).

A Deployment's history is its ReplicaSets (`evidence`). The other kinds keep theirs
where their own controllers do:

- Argo Rollout: its ReplicaSets, numbered by `rollout.argoproj.io/revision`;
- StatefulSet: its ControllerRevisions (`revision`, the pod template in `data`);
- LeaderWorkerSet: its ControllerRevisions (label `leaderworkerset.sigs.k8s.io/name`,
  the leader and worker templates in `data`; LWS keeps only those of a rollout in
  progress, so the current one tells when the templates last changed);
- InferenceService: the predictor's revisions in `status.components.predictor`
  (Serverless mode: a Knative revision per change of the predictor), the
  `storageUri` it loads and who last wrote it (managedFields);
- LLMInferenceService: the model URI and who last wrote the model or template.

`revisions` reads them (newest first) into `Revision`s, which the evidence shows as
a table and turns into the DeploymentChange hypothesis' `Rollout` fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import managers, workloads
from ..access import Access
from ..fieldpath import get
from ..policy import selector_string
from ..times import parse_time
from ..workloads.leaderworkerset import NAME_LABEL

Body = dict[str, Any]
ROLLOUT_REVISION = "rollout.argoproj.io/revision"
_NUMBER = re.compile(r"-(\d+)$")


@dataclass
class Revision:
    """One version of a workload as its controller recorded it."""

    number: int
    name: str  # "ReplicaSet/chat-6d4f", "ControllerRevision/vllm-abc-2", "llama-predictor-00002"
    created: datetime | None
    images: list[str] = field(default_factory=list)
    model: str = ""  # the model it loads (a URI, a model-version label or env), "" unknown
    replicas: str = "-"  # "ready/wanted" where the record says
    what: str = ""  # how it was found, for the table's notes


def _owned(obj: Body, items: list[Body]) -> list[Body]:
    uid = (obj.get("metadata") or {}).get("uid")
    return [
        i for i in items
        if any(o.get("uid") == uid for o in (i.get("metadata") or {}).get("ownerReferences") or [])
    ]  # fmt: skip


def _created(obj: Body) -> datetime | None:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp"))


def _images(pods: list[Body]) -> list[str]:
    seen: list[str] = []
    for pod in pods:
        for c in (pod or {}).get("containers") or []:
            image = c.get("image", "?") if isinstance(c, dict) else "?"
            if image not in seen:
                seen.append(image)
    return seen


def revisions(
    api: Access, namespace: str, obj: Body, snapshot: Body | None = None, model_of: Any = None
) -> list[Revision]:
    """OBJ's recorded versions, newest first (reads the apiserver; raises what it raises).

    SNAPSHOT is OBJ as it was before any mitigation (its spec is what people made);
    MODEL_OF(template) names the model a pod template serves (the evidence's rule).
    """
    kind = obj.get("kind") or "Deployment"
    model_of = model_of or (lambda template: "")
    spec = {**obj, "spec": (snapshot or obj).get("spec") or {}}
    if kind == "Rollout":
        return _rollout(api, namespace, obj, model_of)
    if kind == "StatefulSet":
        return _controller_revisions(api, namespace, obj, model_of)
    if kind == "LeaderWorkerSet":
        return _lws(api, namespace, obj, model_of)
    if kind == "InferenceService":
        return _isvc(spec)
    if kind == "LLMInferenceService":
        return _llmisvc(spec)
    return []


def _rollout(api: Access, namespace: str, obj: Body, model_of: Any) -> list[Revision]:
    selector = selector_string((obj.get("spec") or {}).get("selector") or {})
    found = []
    for rs in _owned(obj, api.list("ReplicaSet", namespace, selector)):
        annotations = rs["metadata"].get("annotations") or {}
        template = (rs.get("spec") or {}).get("template") or {}
        status = rs.get("status") or {}
        found.append(Revision(
            _int(annotations.get(ROLLOUT_REVISION)), f"ReplicaSet/{rs['metadata']['name']}",
            _created(rs), _images([template.get("spec") or {}]), model_of(template),
            f"{status.get('readyReplicas', 0)}/{(rs.get('spec') or {}).get('replicas', 0)}",
        ))  # fmt: skip
    return sorted(found, key=lambda r: r.number, reverse=True)


def _controller_revisions(api: Access, namespace: str, obj: Body, model_of: Any) -> list[Revision]:
    selector = selector_string((obj.get("spec") or {}).get("selector") or {})
    found = []
    for cr in _owned(obj, api.list("ControllerRevision", namespace, selector)):
        template = ((cr.get("data") or {}).get("spec") or {}).get("template") or {}
        status = obj.get("status") or {}
        name = cr["metadata"]["name"]
        serving = name in (status.get("currentRevision"), status.get("updateRevision"))
        found.append(Revision(
            _int(cr.get("revision")), f"ControllerRevision/{name}", _created(cr),
            _images([template.get("spec") or {}]), model_of(template),
            what="current" if serving else "",
        ))  # fmt: skip
    return sorted(found, key=lambda r: r.number, reverse=True)


def _lws(api: Access, namespace: str, obj: Body, model_of: Any) -> list[Revision]:
    name = obj["metadata"]["name"]
    found = []
    for cr in _owned(obj, api.list("ControllerRevision", namespace, f"{NAME_LABEL}={name}")):
        group = ((cr.get("data") or {}).get("spec") or {}).get("leaderWorkerTemplate") or {}
        templates = [t for t in (group.get("leaderTemplate"), group.get("workerTemplate"))
                     if isinstance(t, dict)]  # fmt: skip
        models = [m for m in (model_of(t) for t in templates) if m]
        found.append(Revision(
            _int(cr.get("revision")), f"ControllerRevision/{cr['metadata']['name']}",
            _created(cr), _images([t.get("spec") or {} for t in templates]),
            models[0] if models else "", what="leader and worker templates",
        ))  # fmt: skip
    return sorted(found, key=lambda r: r.number, reverse=True)


def _written(obj: Body, paths: list[str]) -> datetime | None:
    """When people last wrote PATHS (managedFields), else when OBJ was created."""
    writer = managers.last_writer(obj, paths)
    return (writer.time if writer else None) or _created(obj)


def _isvc(obj: Body) -> list[Revision]:
    adapter = workloads.adapter("InferenceService")
    uri = get(obj, "/spec/predictor/model/storageUri")
    model = uri if isinstance(uri, str) else ""
    images = _images([get(obj, "/spec/predictor") or {}])
    predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
    latest = predictor.get("latestReadyRevision") or predictor.get("latestCreatedRevision")
    previous = predictor.get("previousRolledoutRevision")
    when = _written(obj, [p.path for p in adapter.pod_specs(obj)])
    found = [Revision(_number(latest) if latest else 1, latest or "the current predictor", when,
                      images, model, what="serving now")]  # fmt: skip
    if previous and previous != latest:
        # Knative keeps no record here of what it loaded: only its name is known.
        found.append(Revision(_number(previous), previous, None, [], "", what="rolled out before"))
    return found


def _llmisvc(obj: Body) -> list[Revision]:
    uri = get(obj, "/spec/model/uri")
    pods = [get(obj, p.path) or {} for p in workloads.adapter("LLMInferenceService").pod_specs(obj)]
    when = _written(obj, ["/spec/model", "/spec/template", "/spec/worker", "/spec/prefill"])
    generation = (obj.get("metadata") or {}).get("generation") or 1
    return [Revision(int(generation), "the current spec", when, _images(pods),
                     uri if isinstance(uri, str) else "", what="generation")]  # fmt: skip


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _number(name: str) -> int:
    match = _NUMBER.search(name or "")
    return int(match[1]) if match else 0
