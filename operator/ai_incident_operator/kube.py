"""Kubernetes client set-up and the few calls every module shares.

The official client is synchronous: callers run inside kopf's sync handlers (which
kopf runs in threads) or through `asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import kubernetes
from kubernetes.client import ApiClient

from . import GROUP, VERSION

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ConfigError(RuntimeError):
    """No usable cluster configuration; the message says what to do."""


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
        kubernetes.config.load_kube_config()
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


@cache
def api_client() -> ApiClient:
    return ApiClient()


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


def patch_incident_status(
    namespace: str, name: str, resource_version: str | None, status: dict
) -> dict:
    """Write an incident's status; with a resourceVersion, fail with 409 if it changed since read."""
    body: dict = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    return custom().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "aiincidents", name, body
    )
