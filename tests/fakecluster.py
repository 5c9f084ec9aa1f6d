"""An in-memory `access.Access` for unit tests of the engine, the actions and simulate.

As controller-runtime's `client/fake`: objects are plain dicts keyed by (kind,
namespace, name); writes check and bump resourceVersion (a stale one is a
Conflict), metadata.generation moves when the spec does, and `deny` makes a verb on
a kind Forbidden, as RBAC would. Events are kept in `events`. No cluster, no kopf.
Workloads read back rolled out and ready (as if the controller-manager and the
kubelets had caught up at once), unless `rollouts_ready` is set False.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from typing import Any

from ai_incident_operator.access import Access
from ai_incident_operator.errors import Conflict, Forbidden, NotFound
from ai_incident_operator.resources import Ref

Body = dict[str, Any]
DEFAULT_KINDS = frozenset(
    {"Deployment", "Service", "ConfigMap", "Secret", "Namespace", "AIIncident", "Event",
     "MitigationPolicy", "ClusterMitigationPolicy", "ReplicaSet", "Pod"}
)  # fmt: skip


def _merge(into: Body, patch: Body) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


def _matches(labels: dict[str, str], selector: str) -> bool:
    for part in filter(None, selector.split(",")):
        key, eq, value = part.partition("=")
        if (labels.get(key) != value) if eq else (key not in labels):
            return False
    return True


def _fields_match(obj: Body, selector: str) -> bool:
    """A field selector of `a.b=value` terms, as the apiserver reads it."""
    for part in filter(None, selector.split(",")):
        path, _, value = part.partition("=")
        node: Any = obj
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if str(node) != value:
            return False
    return True


_MISSING = object()


class FakeCluster(Access):
    def __init__(self, installed: frozenset[str] | set[str] = DEFAULT_KINDS) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.installed = set(installed)
        self.events: list[tuple[str, str, str, str]] = []  # (kind/name, type, reason, message)
        self.denied: set[tuple[str, str]] = set()  # (verb, kind)
        self.writes: list[tuple[str, str]] = []  # (verb, "Kind/name")
        self._rv = itertools.count(1)
        self.rollouts_ready = True

    # --- set-up for tests ----------------------------------------------------------------

    def add(self, body: Body) -> Body:
        """Store BODY as if created (no RBAC check); the stored copy."""
        kind = body["kind"]
        meta = body.setdefault("metadata", {})
        meta.setdefault(
            "namespace", "" if kind in ("Namespace", "ClusterMitigationPolicy") else "default"
        )
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._rv))
        self.objects[(kind, meta["namespace"], meta["name"])] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def deny(self, verb: str, kind: str) -> None:
        self.denied.add((verb, kind))

    def allow(self, verb: str, kind: str) -> None:
        self.denied.discard((verb, kind))

    def obj(self, kind: str, namespace: str, name: str) -> Body | None:
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def _as_read(self, found: Body | None) -> Body | None:
        """What a read returns: a workload rolled out and ready, unless rollouts_ready is off."""
        kind = (found or {}).get("kind")
        if found and kind in ("Deployment", "StatefulSet") and self.rollouts_ready:
            wanted = (found.get("spec") or {}).get("replicas", 1)
            found["status"] = {
                **(found.get("status") or {}),
                "observedGeneration": found["metadata"].get("generation", 1),
                **dict.fromkeys(
                    ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas"), wanted
                ),
            }
        return found

    # --- Access --------------------------------------------------------------------------

    def _check(self, verb: str, kind: str, name: str) -> None:
        if (verb, kind) in self.denied:
            raise Forbidden(
                403,
                f'{kind.lower()}s "{name}" is forbidden: User "test" cannot {verb} resource',
                "Forbidden",
            )

    def get(self, ref: Ref) -> Body | None:
        if ref.kind not in self.installed:
            return None
        self._check("get", ref.kind, ref.name)
        return self._as_read(self.obj(ref.kind, ref.namespace, ref.name))

    def list(
        self, kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[Body]:
        if kind not in self.installed:
            raise NotFound(404, f"the server could not find the requested resource ({kind})")
        self._check("list", kind, "")
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and namespace in (None, ns)
            and _matches(o["metadata"].get("labels") or {}, label_selector)
            and _fields_match(o, field_selector)
        ]  # fmt: skip

    def list_objects(
        self, kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[Body]:
        """`kube.list_objects`, for code that calls the module (the intake's store)."""
        return self.list(kind, namespace, label_selector, field_selector)

    def create(self, kind: str, namespace: str, body: Body) -> Body:
        self._check("create", kind, body["metadata"]["name"])
        if (kind, namespace, body["metadata"]["name"]) in self.objects:
            raise Conflict(
                409, f'{kind} "{body["metadata"]["name"]}" already exists', "AlreadyExists"
            )
        body = copy.deepcopy(body)
        body["kind"] = kind
        body["metadata"]["namespace"] = namespace
        body["metadata"].pop("resourceVersion", None)
        self.writes.append(("create", f"{kind}/{body['metadata']['name']}"))
        return self.add(body)

    def replace(self, ref: Ref, body: Body) -> Body:
        self._check("update", ref.kind, ref.name)
        key = (ref.kind, ref.namespace, ref.name)
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, f'{ref.kind} "{ref.name}" not found', "NotFound")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, f"the object {ref} has been modified", "Conflict")
        body = copy.deepcopy(body)
        if body.get("spec") != current.get("spec"):
            body["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        # The status subresource: a PUT of the object never changes the status.
        if "status" in current:
            body["status"] = copy.deepcopy(current["status"])
        else:
            body.pop("status", None)
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[key] = body
        self.writes.append(("update", str(ref)))
        return copy.deepcopy(body)

    def patch(self, ref: Ref, body: Body) -> Body:
        self._check("patch", ref.kind, ref.name)
        current = self.obj(ref.kind, ref.namespace, ref.name)
        if current is None:
            raise NotFound(404, f'{ref.kind} "{ref.name}" not found', "NotFound")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise Conflict(409, f"the object {ref} has been modified", "Conflict")
        before_spec = copy.deepcopy(current.get("spec"))
        _merge(current, {k: v for k, v in body.items()})
        return self._patched(ref, current, before_spec)

    def json_patch(self, ref: Ref, operations: list[Body]) -> Body:
        """RFC 6902 `test`, `add`, `replace` and `remove` on object members (what the code uses)."""
        self._check("patch", ref.kind, ref.name)
        current = self.obj(ref.kind, ref.namespace, ref.name)
        if current is None:
            raise NotFound(404, f'{ref.kind} "{ref.name}" not found', "NotFound")
        before_spec = copy.deepcopy(current.get("spec"))
        for op in operations:
            *parents, last = [
                p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
            ]
            node = current
            for part in parents:
                node = node[part]
            if op["op"] == "test":
                if node.get(last, _MISSING) != op["value"]:
                    raise Conflict(409, f"{ref}: testing value {op['path']} failed", "Conflict")
            elif op["op"] in ("add", "replace"):
                node[last] = copy.deepcopy(op["value"])
            elif op["op"] == "remove":
                del node[last]
        return self._patched(ref, current, before_spec)

    def _patched(self, ref: Ref, current: Body, before_spec: Any) -> Body:
        """Store a patched CURRENT: a new generation if its spec changed, a new version."""
        if current.get("spec") != before_spec:
            current["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        current["metadata"]["resourceVersion"] = str(next(self._rv))
        self.objects[(ref.kind, ref.namespace, ref.name)] = current
        self.writes.append(("patch", str(ref)))
        return copy.deepcopy(current)

    def delete(self, ref: Ref) -> bool:
        self._check("delete", ref.kind, ref.name)
        self.writes.append(("delete", str(ref)))
        return self.objects.pop((ref.kind, ref.namespace, ref.name), None) is not None

    def patch_status(self, ref: Ref, status: Body, resource_version: str | None = None) -> Body:
        self._check("patch", f"{ref.kind}/status", ref.name)
        key = (ref.kind, ref.namespace, ref.name)
        current = self.objects.get(key)
        if current is None:
            raise NotFound(404, f'{ref.kind} "{ref.name}" not found', "NotFound")
        if resource_version and resource_version != current["metadata"]["resourceVersion"]:
            raise Conflict(409, f"the object {ref} has been modified", "Conflict")
        merged = copy.deepcopy(current.get("status") or {})
        _merge(merged, status)
        current["status"] = merged
        current["metadata"]["resourceVersion"] = str(next(self._rv))
        self.writes.append(("status", str(ref)))
        return copy.deepcopy(current)

    def dry_run_replace(self, ref: Ref, body: Body) -> Body:
        self._check("update", ref.kind, ref.name)
        return copy.deepcopy(body)

    def kind_installed(self, kind: str) -> bool:
        return kind in self.installed

    def event(self, obj: Body, reason: str, message: str, *, warning: bool = False) -> None:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        self.events.append((name, "Warning" if warning else "Normal", reason, message))
