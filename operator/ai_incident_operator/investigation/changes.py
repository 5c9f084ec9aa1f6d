"""Changes people make during an incident: rollouts of the targets, edits of their ConfigMaps.

The targets, and the ConfigMaps their pods read, are compared with the fingerprints
the incident keeps in `status.lastSeen` (per object: the resourceVersion, the
images, a short hash of each part of the pod template or of each ConfigMap key).
The ledgers' originals are put back first, so the operator's own writes (a scale to
zero, a conservative config, a sidecar) never count: its ledger already says what
it changed. A difference is a timeline entry at the time it was made:

- `TargetChanged`: the pod template changed (a rollout: a new ReplicaSet), with
  each image old -> new and the other parts that changed;
- `ConfigChanged`: a ConfigMap the pods read changed (resourceVersion old -> new,
  the keys changed, added, removed), was created or was deleted;

each naming who did it (the field manager that owns what changed) and when (that
manager's managedFields time, or the time it was noticed when that is older than
the last look: Kubernetes before 1.25 does not always move it). The review's
timeline is the status timeline, so the review shows them too.

Pure, apart from `read_configmaps` (the apiserver) and the recheck clock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import ledger, managers, workloads
from ..access import Access
from ..errors import APIError
from ..fieldpath import ABSENT, get, put
from ..lifecycle import add_timeline
from ..resources import Ref
from ..times import iso, parse_time

STATUS = "lastSeen"
CONFIG_RECHECK = timedelta(seconds=30)  # ConfigMaps are read again at most this often per pass
WORKLOADS = workloads.KINDS  # every kind with pod templates (see `workloads`)
Body = dict[str, Any]


@dataclass(frozen=True)
class Change:
    time: datetime
    type: str  # TargetChanged | ConfigChanged
    message: str


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def restored(obj: Body) -> Body:
    """OBJ with the ledger's originals put back: as it would be without the operator."""
    snap = copy.deepcopy(obj)
    for path, value in ledger.originals(obj).items():
        put(snap, path, value)
    return snap


@dataclass(frozen=True)
class _Pod:
    """One pod template of a workload, as people made it (the ledger's originals back)."""

    prefix: str  # "" for a kind with one `/spec/template`; else "leader template/" etc.
    path: str  # its PodSpec
    spec: Body
    meta: Body  # the labels and annotations of its Pods
    containers: list[tuple[str, str, Body]]  # (name, path, container), a KServe model too


def _pods(obj: Body) -> list[_Pod]:
    snap = restored(obj)
    adapter = workloads.adapter(obj.get("kind"))
    pods = adapter.pod_specs(snap)
    # Deployments and StatefulSets keep the fingerprint they always had (no prefix).
    single = [p.path for p in pods] == ["/spec/template/spec"]
    found = []
    for pod in pods:
        spec = get(snap, pod.path)
        spec = spec if isinstance(spec, dict) else {}
        meta = {
            k: get(snap, path)
            for k, path in (("labels", pod.labels), ("annotations", pod.annotations))
            if path
        }
        if single:
            meta = ((snap.get("spec") or {}).get("template") or {}).get("metadata") or {}
        items = []
        if isinstance(spec.get("model"), dict):  # a KServe predictor's model container
            model = spec["model"]
            items.append((str(model.get("name") or "kserve-container"), f"{pod.path}/model", model))
        for field in ("initContainers", "containers"):
            for c in spec.get(field) or []:
                if isinstance(c, dict):
                    name = str(c.get("name", "?"))
                    items.append((name, f"{pod.path}/{field}[name={name}]", c))
        found.append(
            _Pod(
                "" if single else f"{pod.what}/",
                pod.path,
                spec,
                {k: v for k, v in meta.items() if v not in (None, ABSENT)},
                items,
            )
        )
    return found


def _models(obj: Body) -> dict[str, str]:
    """Where the model a workload serves is named (a KServe storageUri, an LLM's model
    URI) -> that URI, without the operator's changes."""
    snap = restored(obj)
    found = {}
    for path in workloads.adapter(obj.get("kind")).model_paths(snap):
        value = get(snap, path)
        if isinstance(value, str):
            found[path] = value
    return found


def target_print(obj: Body, now: datetime) -> Body:
    """A workload's fingerprint: images, the model it loads, and a hash of each part of
    each of its pod templates."""
    parts: dict[str, str] = {}
    images: dict[str, str] = {}
    for pod in _pods(obj):
        parts[f"{pod.prefix}metadata"] = _hash(pod.meta)
        for name, _, c in pod.containers:
            images[f"{pod.prefix}{name}"] = str(c.get("image", ""))
            for key, value in c.items():
                if key not in ("name", "image", "storageUri"):  # the model's URI: `models`
                    parts[f"{pod.prefix}{name}.{key}"] = _hash(value)
        for key, value in pod.spec.items():
            if key not in ("containers", "initContainers", "model"):
                parts[f"{pod.prefix}pod.{key}"] = _hash(value)
    meta = obj.get("metadata") or {}
    found = {"resourceVersion": meta.get("resourceVersion", ""), "images": images,
             "parts": parts, "seen": iso(now)}  # fmt: skip
    models = _models(obj)
    if models:
        found["models"] = models
    return found


def template_fingerprint(obj: Body) -> str:
    """One hash of a workload's pod templates and model without the operator's changes;
    "" for other kinds."""
    if obj.get("kind", "Deployment") not in WORKLOADS or not any(p.spec for p in _pods(obj)):
        return ""
    found = target_print(obj, datetime.now(UTC))
    return _hash([found["images"], found["parts"], found.get("models") or {}])


def configmap_print(cm: Body | None, now: datetime) -> Body:
    """A ConfigMap's fingerprint: its resourceVersion and a hash of each key's value."""
    if cm is None:
        return {"missing": True, "seen": iso(now)}
    data = restored(cm)
    keys = {k: _hash(v) for k, v in (data.get("data") or {}).items()}
    keys |= {k: _hash(v) for k, v in (data.get("binaryData") or {}).items()}
    return {"resourceVersion": cm["metadata"].get("resourceVersion", ""), "keys": keys,
            "seen": iso(now)}  # fmt: skip


def configmap_names(obj: Body) -> list[str]:
    """The ConfigMaps a workload's pods read (volumes, projected volumes, envFrom, env),
    in any of its pod templates."""
    names: list[str] = []
    for found in _pods(obj):
        pod = found.spec
        for vol in pod.get("volumes") or []:
            names.append((vol.get("configMap") or {}).get("name"))
            for source in (vol.get("projected") or {}).get("sources") or []:
                names.append((source.get("configMap") or {}).get("name"))
        for _, _, c in found.containers:
            names += [(e.get("configMapRef") or {}).get("name") for e in c.get("envFrom") or []]
            names += [((e.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
                      for e in c.get("env") or []]  # fmt: skip
    return sorted({n for n in names if n})


def _when(writer: managers.Writer | None, before: Body, now: datetime) -> datetime:
    """The writer's managedFields time when it is news since the last look, else NOW."""
    seen = parse_time(before.get("seen"))
    if writer and writer.time and (seen is None or writer.time > seen) and writer.time <= now:
        return writer.time
    return now


def _model_words(path: str) -> str:
    """ "/spec/predictor/model/storageUri" -> "predictor storageUri" (pure)."""
    parts = [p for p in path.split("/") if p and p not in ("spec", "model")]
    return " ".join(parts)


def target_change(ref: str, obj: Body, before: Body, after: Body, now: datetime) -> Change | None:
    """What a person changed in a workload's pod templates or model since BEFORE, or None."""
    models_was, models = before.get("models") or {}, after.get("models") or {}
    if (before.get("images") == after["images"] and before.get("parts") == after["parts"]
            and models_was == models):  # fmt: skip
        return None
    old, new = before.get("images") or {}, after["images"]
    where = {f"{p.prefix}{name}": path for p in _pods(obj) for name, path, _ in p.containers}
    what, paths = [], []
    for path in sorted({*models_was, *models}):
        if models_was.get(path) != models.get(path):
            what.append(f"model {_model_words(path)} {models_was.get(path, '(none)')} -> "
                        f"{models.get(path, '(none)')}")  # fmt: skip
            paths.append(path)
    for name in sorted({*old, *new}):
        if name not in old:
            what.append(f"container {name} added ({new[name]})")
        elif name not in new:
            what.append(f"container {name} removed (was {old[name]})")
        elif old[name] != new[name]:
            what.append(f"image of {name} {old[name]} -> {new[name]}")
            if name in where:
                paths.append(f"{where[name]}/image")
    was, now_parts = before.get("parts") or {}, after["parts"]
    parts = sorted(k for k in {*was, *now_parts} if was.get(k) != now_parts.get(k))
    if parts:
        what.append(f"pod template changed ({', '.join(parts)})")
    writer = managers.last_writer(obj, paths) if paths else None
    templates = [p.path for p in workloads.adapter(obj.get("kind")).pod_specs(obj)]
    writer = writer or managers.last_writer(
        obj, ["/spec/template"] if templates == ["/spec/template/spec"] else templates
    )
    message = (
        f"{ref}: {'; '.join(what)}: a rollout (new pods), by {managers.describe(writer)} "
        f"(resourceVersion {before.get('resourceVersion', '?')} -> {after['resourceVersion']})"
    )
    return Change(_when(writer, before, now), "TargetChanged", message)


def configmap_change(
    name: str, users: list[str], cm: Body | None, before: Body, after: Body, now: datetime
) -> Change | None:
    """What a person changed in a ConfigMap the targets read since BEFORE, or None."""
    read_by = f" (read by {', '.join(users)})"
    if before.get("missing") and after.get("missing"):
        return None
    if after.get("missing"):
        return Change(now, "ConfigChanged", f"ConfigMap/{name}{read_by}: deleted")
    assert cm is not None
    old, new = before.get("keys") or {}, after["keys"]
    if not before.get("missing") and old == new:
        return None  # only metadata moved (a label, the operator's ledger)
    changed = sorted(k for k in old.keys() & new.keys() if old[k] != new[k])
    added, removed = sorted(new.keys() - old.keys()), sorted(old.keys() - new.keys())
    what = [f"{label}: {', '.join(keys)}" for label, keys in
            (("keys changed", changed), ("added", added), ("removed", removed)) if keys]  # fmt: skip
    writer = managers.last_writer(cm, [f"/data/{k}" for k in changed + added]) or (
        managers.newest_writer(cm)
    )
    if before.get("missing"):
        head = "created"
    else:
        head = f"resourceVersion {before.get('resourceVersion', '?')} -> {after['resourceVersion']}"
    message = f"ConfigMap/{name}{read_by}: {head}; {'; '.join(what) or 'no keys'}; by {managers.describe(writer)}"
    return Change(_when(writer, before, now), "ConfigChanged", message)


def compare(
    seen: dict[str, Body],
    targets: list[Body],
    configmaps: dict[str, Body | None] | None,
    now: datetime,
) -> tuple[list[Change], dict[str, Body]]:
    """The changes since SEEN and the fingerprints to keep (pure).

    CONFIGMAPS: name -> the ConfigMap read (None: it does not exist), or None when
    they were not read this time (their fingerprints are kept as they were). An
    object seen for the first time is only recorded: what it was before the incident
    is the evidence's business.
    """
    found: list[Change] = []
    kept: dict[str, Body] = {}
    users: dict[str, list[str]] = {}
    for obj in targets:
        ref = f"{obj.get('kind', 'Deployment')}/{obj['metadata']['name']}"
        after = target_print(obj, now)
        before = seen.get(ref)
        change = target_change(ref, obj, before, after, now) if before else None
        if change:
            found.append(change)
        kept[ref] = after if before is None or change else before  # no status write per pass
        for name in configmap_names(obj):
            users.setdefault(name, []).append(ref)
    for name, readers in users.items():
        ref = f"ConfigMap/{name}"
        before = seen.get(ref)
        if configmaps is None or name not in configmaps:
            if before:
                kept[ref] = before
            continue
        after = configmap_print(configmaps[name], now)
        change = (
            configmap_change(name, readers, configmaps[name], before, after, now)
            if before
            else None
        )
        if change:
            found.append(change)
        kept[ref] = after if before is None or change else before
    return sorted(found, key=lambda c: c.time), kept


# --- I/O: what to read, and when ----------------------------------------------------------

_checked: dict[tuple[str, str], datetime] = {}  # incident -> when its ConfigMaps were last read
_checked_lock = threading.Lock()


def configmaps_due(key: tuple[str, str], now: datetime, force: bool = False) -> bool:
    """Whether the ConfigMaps of incident KEY are read on this pass (and note that they are)."""
    with _checked_lock:
        last = _checked.get(key)
        if not force and last is not None and timedelta(0) <= now - last < CONFIG_RECHECK:
            return False
        _checked[key] = now
        for old in [k for k, t in _checked.items() if abs(now - t) > timedelta(hours=1)]:
            del _checked[old]
        return True


def read_configmaps(api: Access, namespace: str, targets: list[Body]) -> dict[str, Body | None]:
    """The ConfigMaps TARGETS read, by name (None: absent; left out: could not be read)."""
    found: dict[str, Body | None] = {}
    for name in sorted({n for t in targets for n in configmap_names(t)}):
        try:
            found[name] = api.get(Ref("ConfigMap", namespace, name))
        except APIError:
            continue  # compared on a later look
    return found


def observe(
    api: Access, status: Body, namespace: str, targets: list[Body], now: datetime, *,
    configmaps: bool, read: dict[str, Body | None] | None = None,
) -> list[Change]:  # fmt: skip
    """Compare TARGETS (and their ConfigMaps when asked: READ when already read) with
    STATUS's fingerprints; record each change in the timeline, at its own time. The changes."""
    targets = [t for t in targets if t.get("kind", "Deployment") in WORKLOADS]
    if not targets:
        return []
    if configmaps and read is None:
        read = read_configmaps(api, namespace, targets)
    found, kept = compare(status.get(STATUS) or {}, targets, read if configmaps else None, now)
    status[STATUS] = kept
    for change in found:
        add_timeline(status, change.type, change.message, change.time)  # when it was made
    return found
