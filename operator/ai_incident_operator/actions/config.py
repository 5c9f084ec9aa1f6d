"""ConservativeConfig: run the model with safer settings (the engine calls it).

Sets environment variables and, optionally, a pinned image on one container of
the workload (every pod template's container of that name: a LeaderWorkerSet's
leader and workers, a KServe predictor's model container `kserve-container`; see
`workloads`), and keys of a ConfigMap. Pods read a ConfigMap when they start, so
when a pod template uses that ConfigMap the action also stamps it with an
annotation that names the new data, which rolls the pods; the ConfigMap is changed
first, so the new pods see the new data. Undo (the ledger) restores
every value as it was, "was absent" included, and removes the annotation, which
rolls the pods back onto the restored data.

`plan` is pure (dicts in, Changes out); `ConservativeConfig.changes` only fetches
the ConfigMap.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from .. import GROUP, ledger, workloads
from ..fieldpath import ABSENT, escape, get, join
from ..resources import Ref
from .base import ActionContext, ActionError, Change, FieldAction

ROLLOUT_ANNOTATION = f"{GROUP}/conservative-config"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # Kubernetes 1.20's C_IDENTIFIER rule
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def uses_configmap(pod_spec: dict[str, Any], name: str) -> bool:
    """Whether the pods read ConfigMap NAME (volume, projected volume, envFrom or env)."""
    for volume in pod_spec.get("volumes") or []:
        if (volume.get("configMap") or {}).get("name") == name:
            return True
        sources = (volume.get("projected") or {}).get("sources") or []
        if any((s.get("configMap") or {}).get("name") == name for s in sources):
            return True
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        if any((e.get("configMapRef") or {}).get("name") == name for e in c.get("envFrom") or []):
            return True
        for env in c.get("env") or []:
            if ((env.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name") == name:
                return True
    return False


def env_names_of_key(pod_spec: dict[str, Any], name: str, key: str) -> set[str]:
    """The environment variables that KEY of ConfigMap NAME becomes in the pods.

    `envFrom` turns every key into a variable (its `prefix` put before it); an env
    var's `configMapKeyRef` takes one key. A key read only as a file (a volume) is
    in no variable.
    """
    found: set[str] = set()
    for c in (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or []):
        for source in c.get("envFrom") or []:
            if (source.get("configMapRef") or {}).get("name") == name:
                found.add(f"{source.get('prefix') or ''}{key}")
        for env in c.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or {}
            if ref.get("name") == name and ref.get("key") == key and env.get("name"):
                found.add(env["name"])
    return found


def _digest(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def plan(
    namespace: str,
    workload: dict[str, Any],
    spec: dict[str, Any],
    configmap: dict[str, Any] | None = None,
) -> list[Change]:
    """The Changes for SPEC: the ConfigMap's keys (when given), then the workload's fields."""
    container = spec["container"]
    kind = workload.get("kind") or "Deployment"
    adapter = workloads.adapter(kind)
    name = workload["metadata"]["name"]
    found = adapter.containers(workload)
    paths = [c.path for c in found if c.name == container]
    if not paths:
        names = list(dict.fromkeys(c.name for c in found))
        raise ActionError(
            f"container {container} is not in {kind} {name}; containers: " + ", ".join(names)
        )
    result = []
    values: dict[str, Any] = {}
    said: list[str] = []
    cm_spec = spec.get("configMap")
    if cm_spec:
        if configmap is None:
            raise ActionError(f"ConfigMap {cm_spec['name']} not found in {namespace}")
        data = cm_spec["data"]
        result.append(
            Change(
                Ref("ConfigMap", namespace, cm_spec["name"]),
                {join("data", escape(k)): v for k, v in data.items()},
                "data " + ", ".join(f"{k}={v}" for k, v in data.items()),
            )
        )
        for pod in adapter.pod_specs(workload):
            pod_spec = workloads.as_pod(get(workload, pod.path))
            if pod.annotations and uses_configmap(pod_spec, cm_spec["name"]):
                values[f"{pod.annotations}/{escape(ROLLOUT_ANNOTATION)}"] = _digest(data)
        if values:
            said.append(f"pods restarted to read ConfigMap {cm_spec['name']}")
    for base in paths:
        for env, value in (spec.get("env") or {}).items():
            values[f"{base}/env[name={env}]"] = {"name": env, "value": value}
    said += [f"{container} env {env}={value}" for env, value in (spec.get("env") or {}).items()]
    if spec.get("image"):
        # Once held, the field shows our value; the ledger still knows the one before.
        originals = ledger.read(workload)["originals"]
        before = originals.get(f"{paths[0]}/image", get(workload, f"{paths[0]}/image"))
        for base in paths:
            values[f"{base}/image"] = spec["image"]
        shown = "(none)" if before is ABSENT else before
        said.append(f"{container} image {shown} -> {spec['image']}")
    if values:
        result.append(Change(Ref(kind, namespace, name), values, "; ".join(said)))
    return result


class ConservativeConfig(FieldAction):
    type = "ConservativeConfig"

    def key(self, spec: dict[str, Any]) -> str:
        return f"{self.type}:{spec.get('container')}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        problems = []
        container = spec.get("container")
        if not isinstance(container, str) or not container:
            problems.append("ConservativeConfig: container must be the name of a container")
        if not any(spec.get(k) for k in ("env", "image", "configMap")):
            problems.append("ConservativeConfig: give at least one of env, image, configMap")
        for name in spec.get("env") or {}:
            if not _ENV_NAME.match(name):
                problems.append(
                    f"ConservativeConfig: {name!r} is not a valid environment variable name"
                )
        cm_spec = spec.get("configMap")
        if cm_spec is not None:
            if not isinstance(cm_spec, dict) or not cm_spec.get("name"):
                problems.append("ConservativeConfig: configMap needs a name")
            elif not cm_spec.get("data"):
                problems.append(f"ConservativeConfig: configMap {cm_spec['name']} has no data")
            else:
                problems += [
                    f"ConservativeConfig: {key!r} is not a valid ConfigMap key"
                    for key in cm_spec["data"]
                    if not _CONFIG_KEY.match(key) or len(key) > 253
                ]
        return problems

    def touches(self, ctx: ActionContext) -> list[Ref]:
        cm = (ctx.spec.get("configMap") or {}).get("name")
        return ([Ref("ConfigMap", ctx.namespace, cm)] if cm else []) + super().touches(ctx)

    def changes(self, ctx: ActionContext) -> list[Change]:
        cm_spec = ctx.spec.get("configMap")
        configmap = (
            ctx.api.get(Ref("ConfigMap", ctx.namespace, cm_spec["name"])) if cm_spec else None
        )
        return plan(ctx.namespace, ctx.target, ctx.spec, configmap)
