"""Fixtures: one real control plane per test session, a namespace per test, the operator.

USE_EXISTING_CLUSTER=1 runs the same suites against the cluster in KUBECONFIG
(kind, or any real cluster), as controller-runtime's envtest does.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml

from ai_incident_operator import localcluster

from kit import OPERATOR_ENV, PROTECTED_NAMESPACE, REPO, Hook, OperatorProcess, wait_for
from kubelet import Kubelet

# Real upstream CRDs (Istio, Gateway API, KEDA, Prometheus Operator): data from their
# projects, kept beside the repository (../shared), not in it.
THIRDPARTY_CRDS = Path(
    os.environ.get("AIINCIDENT_THIRDPARTY_CRDS", REPO.parent / "shared" / "thirdparty-crds")
)
NO_THIRDPARTY_CRDS = (
    f"no third-party CRDs in {THIRDPARTY_CRDS}: the suites check every patch against the "
    "real Istio, Gateway API, KEDA and Prometheus Operator schemas. Keep shared/ beside "
    "the repository or set AIINCIDENT_THIRDPARTY_CRDS to a folder of them."
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the third-party CRDs, one line says what to do (not an error per test)."""
    needs_cluster = any("cluster" in getattr(item, "fixturenames", ()) for item in items)
    if needs_cluster and not sorted(THIRDPARTY_CRDS.glob("*.yaml")):
        pytest.exit(NO_THIRDPARTY_CRDS, returncode=2)


def _apply_crds(paths: list[Path]) -> None:
    api = kubernetes.client.ApiextensionsV1Api()
    names = []
    for path in paths:
        # The C parser: the model-serving CRDs are megabytes of YAML (seconds, not minutes).
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
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

    def established() -> bool:
        for name in names:
            conds = api.read_custom_resource_definition(name).status.conditions or []
            if not any(c.type == "Established" and c.status == "True" for c in conds):
                return False
        return True

    wait_for(established, 30, "CRDs to be established")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Path]:
    """A real kube-apiserver; yields its admin kubeconfig, also exported as KUBECONFIG."""
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        local = None
    else:
        root = Path(tempfile.mkdtemp(prefix="aiincident-cp-")) / "cluster"
        try:
            local = localcluster.up(root)
        except localcluster.ClusterError as err:
            pytest.fail(str(err), pytrace=False)
        kubeconfig = local.kubeconfig
    os.environ["KUBECONFIG"] = str(kubeconfig)
    kubernetes.config.load_kube_config(config_file=str(kubeconfig))
    _apply_crds(sorted((REPO / "crds").glob("*.yaml")))
    thirdparty = sorted(THIRDPARTY_CRDS.glob("*.yaml"))
    if not thirdparty:
        pytest.fail(NO_THIRDPARTY_CRDS, pytrace=False)
    _apply_crds(thirdparty)
    pods = Kubelet().start()  # Pods become Ready, as a kubelet would report them
    yield kubeconfig
    pods.stop()
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
