"""Fixtures: one real control plane per test session, a namespace per test, the operator.

USE_EXISTING_CLUSTER=1 runs the same suites against the cluster in KUBECONFIG
(kind, or any real cluster), as controller-runtime's envtest does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import kubernetes
import pytest
import yaml

from ai_incident_operator import localcluster
from ai_incident_operator.resources import KINDS

from kit import OPERATOR_ENV, PROTECTED_NAMESPACE, REPO, Hook, OperatorProcess, wait_for
from kubelet import Kubelet


def _load_hack_module(name: str) -> ModuleType:
    """hack/ is scripts, not a package: load one by path (dataclasses need sys.modules)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "hack" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


# Real upstream CRDs (Istio, Gateway API, KEDA, Prometheus Operator, model serving): data
# from their projects, not kept in the repository. hack/thirdparty_crds.py says where
# they are: AIINCIDENT_THIRDPARTY_CRDS, ../shared/thirdparty-crds, or its checked download.
thirdparty_crds = _load_hack_module("thirdparty_crds")
_CHOICE = thirdparty_crds.choose(os.environ.get(thirdparty_crds.ENV))
THIRDPARTY_CRDS: Path | None = _CHOICE.folder
NO_THIRDPARTY_CRDS = thirdparty_crds.missing_message(os.environ.get(thirdparty_crds.ENV))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the third-party CRDs, one line says what to do (not an error per test)."""
    needs_cluster = any("cluster" in getattr(item, "fixturenames", ()) for item in items)
    if needs_cluster and THIRDPARTY_CRDS is None:
        pytest.exit(NO_THIRDPARTY_CRDS, returncode=2)


def _apply_crds(paths: list[Path], only: set[str] | None = None) -> None:
    """Install the CRDs of PATHS (of the kinds in ONLY, if given) and wait until served."""
    api = kubernetes.client.ApiextensionsV1Api()
    names = []
    for path in paths:
        # The C parser: the model-serving CRDs are megabytes of YAML (seconds, not minutes).
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            if only is not None and doc["spec"]["names"]["kind"] not in only:
                continue
            names.append(doc["metadata"]["name"])
            try:
                api.create_custom_resource_definition(doc)
            except kubernetes.client.ApiException as err:
                if err.status != 409:
                    raise
                current = api.read_custom_resource_definition(doc["metadata"]["name"])
                doc["metadata"]["resourceVersion"] = current.metadata.resource_version
                api.replace_custom_resource_definition(doc["metadata"]["name"], doc)

    # Each read returns the whole CRD (megabytes for KServe's): read only those not yet
    # established, or the polling itself keeps a loaded apiserver from establishing them.
    pending = set(names)

    def established() -> bool:
        for name in sorted(pending):
            # Raw JSON: the client's models take seconds of CPU for a CRD of megabytes.
            raw = api.read_custom_resource_definition(name, _preload_content=False)
            conds = (json.loads(raw.data).get("status") or {}).get("conditions") or []
            if any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
                pending.discard(name)
        return not pending

    wait_for(established, 30, "CRDs to be established")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    """A real kube-apiserver; yields its admin kubeconfig, also exported as KUBECONFIG."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        local = None
    else:
        root = Path(tempfile.mkdtemp(prefix="aiincident-cp-")) / "cluster"
        localcluster.TIE_TO_PARENT = True  # a killed test run leaves no control plane behind
        try:
            local = localcluster.up(root)
        except localcluster.ClusterError as err:
            pytest.fail(str(err), pytrace=False)
        kubeconfig = local.kubeconfig
    # Stopped whatever happens after it started: a set-up failure (a CRD not established)
    # must not leave an apiserver and etcd running for the rest of the machine's life.
    try:
        os.environ["KUBECONFIG"] = str(kubeconfig)
        kubernetes.config.load_kube_config(config_file=str(kubeconfig))
        _apply_crds(sorted((REPO / "crds").glob("*.yaml")))
        if THIRDPARTY_CRDS is None:
            pytest.fail(NO_THIRDPARTY_CRDS, pytrace=False)
        thirdparty = sorted(THIRDPARTY_CRDS.glob("*.yaml"))
        # Only the kinds the operator knows: each CRD costs the apiserver seconds of CPU to
        # establish (KubeRay's RayService alone about 20 s), on every control plane started.
        _apply_crds(thirdparty, only={k.kind for k in KINDS.values()})
        pods = Kubelet().start()  # Pods become Ready, as a kubelet would report them
        try:
            yield kubeconfig
        finally:
            pods.stop()
    finally:
        if local is not None:
            localcluster.down(local.root)


@pytest.fixture
def namespace(cluster: Path) -> Iterator[str]:
    """A fresh namespace that the session's operator watches."""
    yield from _namespace("t")


@pytest.fixture
def solo_namespace(cluster: Path) -> Iterator[str]:
    """A fresh namespace that the session's operator does not watch, for a test's own operator."""
    yield from _namespace("solo")


def _namespace(prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api()
    core.create_namespace({"metadata": {"name": name}})
    yield name
    # Incidents hold finalizers; the operator may be gone, so drop them before deleting.
    custom = kubernetes.client.CustomObjectsApi()
    for item in custom.list_namespaced_custom_object(
        "aiincident.io", "v1alpha1", name, "aiincidents"
    )["items"]:
        custom.patch_namespaced_custom_object(
            "aiincident.io",
            "v1alpha1",
            name,
            "aiincidents",
            item["metadata"]["name"],
            {"metadata": {"finalizers": None}},
        )
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def operator(cluster: Path) -> Iterator[OperatorProcess]:
    """The operator, watching all namespaces, for the whole session."""
    proc = OperatorProcess(
        "session", "--namespace", "t-*", "--namespace", PROTECTED_NAMESPACE, env=OPERATOR_ENV
    ).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def intake(cluster: Path) -> Iterator[OperatorProcess]:
    """An operator taking alerts on its webhook (`webhook_url`, `webhook_token`), watching the
    namespaces `intake-*`; its own namespace, where unmappable alerts go, is one of them
    (`intake.env["AIINCIDENT_NAMESPACE"]`)."""
    homes = _namespace("intake-home")
    home = next(homes)
    proc = OperatorProcess(
        "intake", "--namespace", "intake-*", env={**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": home}
    ).start()
    wait_for(proc.webhook_ready, 30, f"webhook ready (log: {proc.log_path})")
    yield proc
    proc.stop()
    next(homes, None)


@pytest.fixture
def intake_namespace(cluster: Path) -> Iterator[str]:
    """A fresh namespace that the `intake` operator watches."""
    yield from _namespace("intake")


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver on 127.0.0.1 (notification channels point at it)."""
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


@pytest.fixture(scope="session")
def local_cluster(cluster: Path) -> localcluster.LocalCluster | None:
    """The harness's own control plane (static ServiceAccount tokens); None on an existing cluster."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        return None
    return localcluster.current(cluster.parent)
