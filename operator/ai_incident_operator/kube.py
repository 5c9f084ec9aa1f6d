"""Kubernetes client set-up and the few calls every module shares.

The official client is synchronous: callers run inside kopf's sync handlers (which
kopf runs in threads) or through `asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import GROUP, VERSION

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ConfigError(RuntimeError):
    """No usable cluster configuration; the message says what to do."""


class TransientError(RuntimeError):
    """Worth trying again later (the object kept changing, the apiserver is away)."""


def load_config() -> None:
    """Load configuration as kubectl does: KUBECONFIG (or ~/.kube/config), else in-cluster."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig:
        missing = [p for p in kubeconfig.split(os.pathsep) if p and not Path(p).exists()]
        if missing:
            raise ConfigError(
                f"KUBECONFIG names {', '.join(missing)}, which does not exist: point it at a "
                "kubeconfig file (for the local control plane: make cluster, then "
                "KUBECONFIG=.local/kubeconfig)"
            )
    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig or None)
        return
    except (kubernetes.config.ConfigException, OSError, TypeError) as err:
        kube_err = err
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        raise ConfigError(
            f"no cluster configuration: {kube_err}. Set KUBECONFIG to a kubeconfig file "
            "(for the local control plane: make cluster, then KUBECONFIG=.local/kubeconfig), "
            "or run inside a cluster"
        ) from None


POOL_SIZE = 32  # kopf's worker threads plus the intake's share the connections


@cache
def api_client() -> ApiClient:
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = POOL_SIZE
    return ApiClient(config)


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client())


def apps() -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(api_client())


def custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


def operator_namespace() -> str:
    """Where the operator's own objects live: AIINCIDENT_NAMESPACE, the SA namespace, else default."""
    env = os.environ.get("AIINCIDENT_NAMESPACE")
    if env:
        return env
    try:
        return SA_NAMESPACE_FILE.read_text().strip() or "default"
    except OSError:
        return "default"


# --- Objects as plain dicts --------------------------------------------------------------
# Every object the operator reads or changes goes through these few calls, as JSON
# dicts (no model classes): one code path for core kinds and custom resources alike.


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


KINDS = {
    k.kind: k
    for k in (
        Kind("apps", "v1", "deployments", "Deployment"),
        Kind("apps", "v1", "replicasets", "ReplicaSet"),
        Kind("", "v1", "pods", "Pod"),
        Kind("batch", "v1", "jobs", "Job"),
        Kind("batch", "v1", "cronjobs", "CronJob"),  # Kubernetes 1.21 and newer
        Kind("batch", "v1beta1", "cronjobs", "CronJob/v1beta1"),  # up to 1.24
        Kind("", "v1", "services", "Service"),
        Kind("", "v1", "configmaps", "ConfigMap"),
        Kind("", "v1", "secrets", "Secret"),
        Kind("", "v1", "events", "Event"),
        Kind("", "v1", "namespaces", "Namespace", namespaced=False),
        Kind("autoscaling", "v1", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
        Kind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler/v2"),
        Kind(
            "autoscaling", "v2beta2", "horizontalpodautoscalers", "HorizontalPodAutoscaler/v2beta2"
        ),
        Kind("networking.istio.io", "v1beta1", "virtualservices", "VirtualService"),
        Kind("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
        Kind("keda.sh", "v1alpha1", "scaledobjects", "ScaledObject"),
        Kind("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"),
        Kind(GROUP, VERSION, "aiincidents", "AIIncident"),
        Kind(GROUP, VERSION, "mitigationpolicies", "MitigationPolicy"),
        Kind(
            GROUP, VERSION, "clustermitigationpolicies", "ClusterMitigationPolicy", namespaced=False
        ),
    )
}


@dataclass(frozen=True)
class Ref:
    """One object: kind (a KINDS key), namespace, name."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


FIELD_MANAGER = "ai-incident-operator"
WRITES = frozenset({"POST", "PUT", "PATCH"})


def _call(method: str, path: str, body: Any = None, query: list | None = None) -> Any:
    """One REST call; JSON in and out as plain dicts; ApiException on any non-2xx answer."""
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    if method in WRITES:
        # So that managedFields (and GitOps tools reading them) name the operator.
        query = [*(query or []), ("fieldManager", FIELD_MANAGER)]
    client = api_client()
    request = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Accept": "application/json", "Content-Type": content_type},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = client.call_api(*request)
    data = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    return json.loads(data) if data else None


def get(ref: Ref) -> dict | None:
    """The object, or None when it does not exist (or its kind is not installed)."""
    try:
        return _call("GET", KINDS[ref.kind].path(ref.namespace, ref.name))
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def replace(ref: Ref, body: dict) -> dict:
    """PUT: body carries metadata.resourceVersion, so a concurrent change fails with 409."""
    return _call("PUT", KINDS[ref.kind].path(ref.namespace, ref.name), body)


def create(kind: str, namespace: str, body: dict) -> dict:
    return _call("POST", KINDS[kind].path(namespace), body)


def patch(ref: Ref, body: dict) -> dict:
    return _call("PATCH", KINDS[ref.kind].path(ref.namespace, ref.name), body)


def delete(ref: Ref) -> bool:
    """Delete; False if it was already gone."""
    try:
        _call("DELETE", KINDS[ref.kind].path(ref.namespace, ref.name))
        return True
    except ApiException as err:
        if err.status == 404:
            return False
        raise


def list_objects(kind: str, namespace: str | None, label_selector: str = "") -> list[dict]:
    query = [("labelSelector", label_selector)] if label_selector else []
    return _call("GET", KINDS[kind].path(namespace), query=query)["items"]


_installed: dict[str, tuple[float, bool]] = {}
INSTALLED_TTL = 30.0  # seconds a discovery answer is trusted; CRDs come and go rarely


def kind_installed(kind: str) -> bool:
    """Whether the apiserver serves KIND (a CRD such as PrometheusRule may be absent)."""
    cached = _installed.get(kind)
    if cached and time.monotonic() - cached[0] < INSTALLED_TTL:
        return cached[1]
    _installed[kind] = (time.monotonic(), _discover(kind))
    return _installed[kind][1]


def _discover(kind: str) -> bool:
    k = KINDS[kind]
    try:
        resources = _call("GET", f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}")
    except ApiException as err:
        if err.status == 404:
            return False
        raise
    return any(r["name"] == k.plural for r in resources.get("resources", []))


def update(
    ref: Ref, mutate: Callable[[dict], bool], attempts: int = 5, current: dict | None = None
) -> tuple[dict | None, bool]:
    """Read, MUTATE in place, write with the read resourceVersion; retry on conflict.

    MUTATE returns whether it changed anything; nothing is written when it did not.
    CURRENT, a copy just read by the caller, saves the first read.
    Returns the object as last seen (None when it does not exist) and whether it was written.
    """
    for attempt in range(attempts):
        obj = copy.deepcopy(current) if current is not None and attempt == 0 else get(ref)
        if obj is None:
            return None, False
        if not mutate(obj):
            return obj, False
        try:
            return replace(ref, obj), True
        except ApiException as err:
            if err.status != 409 or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def patch_status(ref: Ref, status: dict, resource_version: str | None = None) -> dict:
    """Merge-patch the status subresource; with a resourceVersion, 409 if the object changed."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return _call("PATCH", KINDS[ref.kind].path(ref.namespace, ref.name) + "/status", body)


def owner_reference(owner: dict) -> dict:
    """An ownerReference to OWNER, so that Kubernetes deletes what it owns along with it."""
    return {
        "apiVersion": owner.get("apiVersion") or f"{GROUP}/{VERSION}",
        "kind": owner.get("kind") or "AIIncident",
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        # Blocking the owner's deletion would need the finalizers permission on it, and
        # what it owns has nothing to clean up first.
        "blockOwnerDeletion": False,
    }
