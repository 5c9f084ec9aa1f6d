"""The Kubernetes access layer: client set-up, the one REST path, typed errors, `Cluster`.

Only this module knows the client library: every non-2xx answer and every
connection failure leaves it as an `errors.APIError` subclass with the apiserver's
message, and every call has a timeout. `Cluster` is the real `access.Access`. The
official client is synchronous: callers run inside kopf's sync handlers (which
kopf runs in threads) or through `asyncio.to_thread`, never on the event loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from . import errors, events
from .access import Access
from .errors import APIError, Conflict, Forbidden, Invalid, NotFound, Transient
from .resources import KINDS, Kind, Ref, operator_namespace, owner_reference

__all__ = [
    "KINDS", "APIError", "Access", "Cluster", "ConfigError", "Conflict", "Forbidden",
    "Invalid", "Kind", "NotFound", "Ref", "Transient", "TransientError", "cluster",
    "operator_namespace", "owner_reference",
]  # fmt: skip
TransientError = Transient  # the name callers knew


class ConfigError(RuntimeError):
    """No usable cluster configuration; the message says what to do."""


def current_user() -> str:
    """Who the kubeconfig says the user is (its current context's user), as kubectl shows it."""
    try:
        _, active = kubernetes.config.list_kube_config_contexts(
            config_file=(os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or None
        )
        user = ((active or {}).get("context") or {}).get("user")
    except (kubernetes.config.ConfigException, OSError, TypeError):
        user = None
    return user or os.environ.get("USER") or "unknown"


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
# urllib3 would retry a GET's read timeout 3 times (4 minutes on a dead connection): a
# request already sent is tried once more at most (a pooled connection the apiserver
# closed as it was reused); connecting, which sends nothing, twice more.
RETRIES = urllib3.Retry(total=3, connect=2, read=1, redirect=0, status=0, other=0)


@cache
def api_client() -> ApiClient:
    config = kubernetes.client.Configuration.get_default_copy()
    config.connection_pool_maxsize = POOL_SIZE
    config.retries = RETRIES
    # TCP keepalive: a watch on a connection that died silently (a NAT, a load balancer
    # dropping it) fails instead of waiting out its read timeout.
    config.keep_alive = True
    return ApiClient(config)


# --- Objects as plain dicts --------------------------------------------------------------
# Every object the operator reads or changes goes through these few calls, as JSON
# dicts (no model classes): one code path for core kinds and custom resources alike.
# Kinds and references are in `resources` (pure); re-exported here for callers.

FIELD_MANAGER = "ai-incident-operator"
WRITES = frozenset({"POST", "PUT", "PATCH"})
# (connect, read) seconds: no handler thread waits forever on a dead connection.
TIMEOUT = (10.0, 60.0)
_CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, OSError)


def _typed(err: ApiException) -> APIError:
    """The typed error for ERR, with the apiserver's own message (its Status object)."""
    message, reason = "", err.reason or ""
    try:
        status = json.loads(err.body or "")
        message, reason = status.get("message") or "", status.get("reason") or reason
    except (TypeError, ValueError, AttributeError):
        pass
    return errors.from_status(err.status or 0, message or f"{err.status} {err.reason}", reason)


MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _call(
    method: str,
    path: str,
    body: Any = None,
    query: list | None = None,
    patch_type: str = MERGE_PATCH,
) -> Any:
    """One REST call; JSON in and out as plain dicts; a typed `errors.APIError` on failure."""
    content_type = patch_type if method == "PATCH" else "application/json"
    if method in WRITES:
        # So that managedFields (and GitOps tools reading them) name the operator.
        query = [*(query or []), ("fieldManager", FIELD_MANAGER)]
    headers = {"Accept": "application/json", "Content-Type": content_type}
    data = _send(method, path, body, query or [], headers, TIMEOUT)
    return json.loads(data) if data else None


def _send(
    method: str, path: str, body: Any, query: list, headers: dict[str, str],
    timeout: tuple[float, float],
) -> bytes:  # fmt: skip
    """One request's answer as bytes; a typed `errors.APIError` on failure."""
    client = api_client()
    request = client.param_serialize(
        method=method,
        resource_path=path,
        query_params=query,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    try:
        response = client.call_api(*request, _request_timeout=timeout)
        data = response.read()
    except ApiException as err:
        raise _typed(err) from None
    except _CONNECTION_ERRORS as err:
        raise Transient(0, f"the apiserver did not answer {method} {path}: {err}") from None
    if not 200 <= response.status < 300:
        raise _typed(ApiException(http_resp=response))
    return data or b""


class Cluster(Access):
    """The real cluster, through the one REST path `_call`."""

    def __init__(self) -> None:
        self._installed: dict[str, tuple[float, bool]] = {}

    def get(self, ref: Ref) -> dict | None:
        try:
            return _call("GET", KINDS[ref.kind].path(ref.namespace, ref.name))
        except NotFound:
            return None

    def list(
        self, kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
    ) -> list[dict]:
        query = [("labelSelector", label_selector)] if label_selector else []
        query += [("fieldSelector", field_selector)] if field_selector else []
        return _call("GET", KINDS[kind].path(namespace), query=query)["items"]

    def create(self, kind: str, namespace: str, body: dict) -> dict:
        return _call("POST", KINDS[kind].path(namespace), body)

    def replace(self, ref: Ref, body: dict) -> dict:
        return _call("PUT", KINDS[ref.kind].path(ref.namespace, ref.name), body)

    def patch(self, ref: Ref, body: dict) -> dict:
        return _call("PATCH", KINDS[ref.kind].path(ref.namespace, ref.name), body)

    def json_patch(self, ref: Ref, operations: list[dict]) -> dict:
        path = KINDS[ref.kind].path(ref.namespace, ref.name)
        try:
            return _call("PATCH", path, operations, patch_type=JSON_PATCH)
        except Invalid as err:
            if not _test_failed(err):
                raise
            raise Conflict(
                409, f"{ref} changed since it was read ({err.message})", "Conflict"
            ) from None

    def delete(self, ref: Ref) -> bool:
        try:
            _call("DELETE", KINDS[ref.kind].path(ref.namespace, ref.name))
            return True
        except NotFound:
            return False

    def patch_status(self, ref: Ref, status: dict, resource_version: str | None = None) -> dict:
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return _call("PATCH", KINDS[ref.kind].path(ref.namespace, ref.name) + "/status", body)

    def dry_run_replace(self, ref: Ref, body: dict) -> dict:
        path = KINDS[ref.kind].path(ref.namespace, ref.name)
        return _call("PUT", path, body, query=[("dryRun", "All")])

    def kind_installed(self, kind: str) -> bool:
        """Whether the apiserver serves KIND (a CRD such as PrometheusRule may be absent)."""
        cached = self._installed.get(kind)
        if cached and time.monotonic() - cached[0] < INSTALLED_TTL:
            return cached[1]
        self._installed[kind] = (time.monotonic(), _discover(kind))
        return self._installed[kind][1]

    def event(self, obj: dict, reason: str, message: str, *, warning: bool = False) -> None:
        events.record(obj, reason, message, warning=warning)


INSTALLED_TTL = 30.0  # seconds a discovery answer is trusted; CRDs come and go rarely


def _discover(kind: str) -> bool:
    k = KINDS[kind]
    try:
        resources = _call("GET", f"/apis/{k.group}/{k.version}" if k.group else f"/api/{k.version}")
    except NotFound:
        return False
    return any(r["name"] == k.plural for r in resources.get("resources", []))


@cache
def cluster() -> Cluster:
    """The process's one Cluster (its discovery cache is shared)."""
    return Cluster()


# Module-level calls for the edges (intake, CLI, reports, investigation) that have no
# Access of their own; the engine and the actions are handed one instead.


def get(ref: Ref) -> dict | None:
    return cluster().get(ref)


def replace(ref: Ref, body: dict) -> dict:
    return cluster().replace(ref, body)


def create(kind: str, namespace: str, body: dict) -> dict:
    return cluster().create(kind, namespace, body)


def patch(ref: Ref, body: dict) -> dict:
    return cluster().patch(ref, body)


def json_patch(ref: Ref, operations: list[dict]) -> dict:
    return cluster().json_patch(ref, operations)


# What kube-apiserver answers (422, no details) when a JSON Patch operation cannot be
# applied; newer ones add the patch library's words ("testing value ... failed").
_PATCH_NOT_APPLIED = "the server rejected our request due to an error in our request"


def _test_failed(err: APIError) -> bool:
    """Whether a 422 to a JSON Patch is its `test` operation not holding (the object
    changed since it was read) rather than the result being invalid. The code sends only
    operations that apply to an object of the shape it read, so the apiserver's answer
    that the patch could not be applied means that a `test` failed."""
    message = err.message.lower()
    return message == _PATCH_NOT_APPLIED or "testing value" in message


def delete(ref: Ref) -> bool:
    return cluster().delete(ref)


def list_objects(
    kind: str, namespace: str | None, label_selector: str = "", field_selector: str = ""
) -> list[dict]:
    return cluster().list(kind, namespace, label_selector, field_selector)


def kind_installed(kind: str) -> bool:
    return cluster().kind_installed(kind)


def list_with_version(kind: str, namespace: str | None, label_selector: str = "") -> dict:
    """The whole list answer (items and metadata.resourceVersion, to watch from)."""
    query = [("labelSelector", label_selector)] if label_selector else []
    return _call("GET", KINDS[kind].path(namespace), query=query)


def update(
    ref: Ref, mutate: Callable[[dict], bool], current: dict | None = None
) -> tuple[dict | None, bool]:
    return cluster().update(ref, mutate, current=current)


def patch_status(ref: Ref, status: dict, resource_version: str | None = None) -> dict:
    return cluster().patch_status(ref, status, resource_version)


def pod_log(
    namespace: str, pod: str, container: str, tail_lines: int, limit_bytes: int,
    timeout: tuple[float, float] = (5.0, 10.0),
) -> str:  # fmt: skip
    """The last TAIL_LINES lines of CONTAINER's log in POD, at most LIMIT_BYTES (`pods/log`;
    the apiserver sends no more), as text; a typed `errors.APIError` when it cannot be read."""
    query = [("container", container), ("tailLines", str(tail_lines)),
             ("limitBytes", str(limit_bytes))]  # fmt: skip
    path = f"{KINDS['Pod'].path(namespace, pod)}/log"
    data = _send("GET", path, None, query, {"Accept": "text/plain, */*"}, timeout)
    return data[:limit_bytes].decode(errors="replace")


WATCH_SECONDS = 300  # the server ends a watch after this long; the caller starts another


def watch(
    kind: str, namespace: str | None, label_selector: str, resource_version: str = ""
) -> Iterator[tuple[str, dict]]:
    """(type, object) for each change of KIND matching LABEL_SELECTOR, from RESOURCE_VERSION.

    Ends when the server closes the watch (after WATCH_SECONDS); a 410 (the version is
    too old) is raised as `errors.APIError` with status 410, as every other failure.
    """
    query = [("watch", "true"), ("labelSelector", label_selector),
             ("timeoutSeconds", str(WATCH_SECONDS)), ("allowWatchBookmarks", "true")]  # fmt: skip
    if resource_version:
        query.append(("resourceVersion", resource_version))
    client = api_client()
    request = client.param_serialize(
        method="GET",
        resource_path=KINDS[kind].path(namespace),
        query_params=query,
        header_params={"Accept": "application/json"},
        auth_settings=["BearerToken"],
    )
    try:
        response = client.call_api(*request, _request_timeout=(10, WATCH_SECONDS + 30))
        if not 200 <= response.status < 300:
            raise _typed(ApiException(http_resp=response))
        for line in response.response:
            if not line.strip():
                continue
            event = json.loads(line)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                raise errors.from_status(
                    status.get("code") or 0, status.get("message") or "watch error",
                    status.get("reason") or "",
                )  # fmt: skip
            yield event["type"], event["object"]
    except ApiException as err:
        raise _typed(err) from None
    except _CONNECTION_ERRORS as err:
        raise Transient(0, f"the watch of {kind} ended: {err}") from None
