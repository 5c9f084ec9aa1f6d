"""Start-up and GitOps (issue 12 items 9, 10, 14): what the operator watches, and keeps watching.

- The CRDs applied after the operator started (a GitOps sync applying both at once):
  `/readyz` says what is not served yet, and the policies are served once they are.
- Namespaces created while the operator starts (the start-up race: kopf's namespace
  observer ignores what its watch's first listing shows) are all served.
- The kube-apiserver restarted under a running operator (kopf's watches got 404s and
  the process ended): it keeps running, and what is created afterwards is served.

Each test has its own control plane (`localcluster`), since absent CRDs or a restarted
apiserver would disturb the session's other operators on the shared one. Its operator
re-checks policies only every 10 minutes, so that only watch events can make them Ready.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
import yaml

from ai_incident_operator import GROUP, VERSION, localcluster

from kit import REPO, OperatorProcess, deployment, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}
POLICY = {
    "targetSelector": {"matchLabels": LABELS},
    "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
}
OPERATOR_ENV = {"AIINCIDENT_RESYNC_SECONDS": "300"}
BULK_NAMESPACES = 100  # not served; their listing (about 20 MB) takes kopf a while
BULK_ANNOTATION = 200_000  # bytes (the apiserver takes 256 kB of annotations at most)
BURST_SECONDS = 2.0  # namespaces to serve made from kopf's authentication on, for so long


@dataclass
class Own:
    """A control plane of the test's own, and an API client for it (not the session's)."""

    local: localcluster.LocalCluster
    api: kubernetes.client.ApiClient

    def operator(self, name: str, *args: str) -> OperatorProcess:
        env = {**OPERATOR_ENV, "KUBECONFIG": str(self.local.kubeconfig)}
        return OperatorProcess(name, "--namespace", "ns-*", *args, env=env)

    def crds(self) -> list[dict]:
        docs = []
        for path in sorted((REPO / "crds").glob("*.yaml")):
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
        return docs

    def apply_crds(self) -> None:
        """Create the operator's CRDs, not waiting for them (as `kubectl apply` does)."""
        for doc in self.crds():
            kubernetes.client.ApiextensionsV1Api(self.api).create_custom_resource_definition(doc)

    def wait_established(self) -> None:
        extensions = kubernetes.client.ApiextensionsV1Api(self.api)

        def established() -> bool:
            for doc in self.crds():
                crd = extensions.read_custom_resource_definition(doc["metadata"]["name"])
                conditions = crd.status.conditions or []
                if not any(c.type == "Established" and c.status == "True" for c in conditions):
                    return False
            return True

        wait_for(established, 30, "CRDs established")

    def namespace(self, name: str, annotations: dict[str, str] | None = None) -> None:
        meta = {"name": name, **({"annotations": annotations} if annotations else {})}
        kubernetes.client.CoreV1Api(self.api).create_namespace({"metadata": meta})

    def policy(self, namespace: str, name: str = "chat") -> None:
        """Create a policy, retrying while its CRD is not served yet (as GitOps tools do)."""
        custom = kubernetes.client.CustomObjectsApi(self.api)

        def create() -> bool:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "mitigationpolicies", policy_body(name, POLICY)
            )
            return True

        wait_for(create, 30, f"MitigationPolicy {namespace}/{name} created")

    def policy_ready(self, namespace: str, name: str = "chat") -> dict:
        """The policy's Ready condition ({} while the operator has written none)."""
        body = kubernetes.client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "mitigationpolicies", name
        )
        conditions = (body.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def incident_phase(self, namespace: str, name: str) -> str | None:
        body = kubernetes.client.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiincidents", name
        )
        return (body.get("status") or {}).get("phase")

    def mitigate(self, namespace: str) -> None:
        """A model and an incident about it: the policy's ScaleToZero must be applied."""
        kubernetes.client.AppsV1Api(self.api).create_namespaced_deployment(
            namespace, deployment("chat-llm", LABELS)
        )
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "AIIncident",
            "metadata": {"name": "harm"},
            "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}},
        }
        kubernetes.client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "aiincidents", body
        )
        wait_for(lambda: self.incident_phase(namespace, "harm") == "Mitigated", 30, "Mitigated")
        scale = kubernetes.client.AppsV1Api(self.api).read_namespaced_deployment(
            "chat-llm", namespace
        )
        assert scale.spec.replicas == 0


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Own]:
    try:
        local = localcluster.up(tmp_path / "cp")
    except localcluster.ClusterError as err:
        pytest.fail(str(err), pytrace=False)
    api = kubernetes.config.new_client_from_config(config_file=str(local.kubeconfig))
    try:
        yield Own(local, api)
    finally:
        api.close()
        localcluster.down(local.root)


def readyz(proc: OperatorProcess) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{proc.webhook_url}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
    except OSError as err:
        return 0, {"reason": str(err)}


def alive(proc: OperatorProcess) -> bool:
    assert proc.proc is not None
    if proc.proc.poll() is not None:
        raise AssertionError(f"operator exited {proc.proc.returncode}:\n{proc.log_tail()}")
    return True


def test_the_crds_applied_after_the_operator_started_are_served(own: Own) -> None:
    proc = own.operator("startup-crds-later").start()
    try:
        # The apiserver answers, but nothing the operator handles is served: not ready, and
        # /readyz says what is missing (not merely that the apiserver answers).
        _, body = wait_for(
            lambda: (r := readyz(proc))[0] == 503 and "mitigationpolicies" in r[1]["reason"] and r,
            30,
            f"/readyz 503 naming the missing CRDs (log: {proc.log_path})",
        )
        assert "aiincidents.aiincident.io" in body["reason"], body
        time.sleep(3)  # it stays so: nothing is watched until the CRDs come
        assert readyz(proc)[0] == 503

        own.apply_crds()  # and at once the objects, as one GitOps sync applies them
        own.namespace("ns-app")
        own.policy("ns-app")
        wait_for(
            lambda: own.policy_ready("ns-app").get("status") == "True",
            20,
            f"the policy Ready once its CRD is served (log: {proc.log_path})",
        )
        wait_for(lambda: readyz(proc)[0] == 200, 20, f"/readyz 200 (log: {proc.log_path})")
        own.mitigate("ns-app")
        assert alive(proc)
    finally:
        proc.stop()


def test_namespaces_created_while_the_operator_starts_are_all_served(own: Own) -> None:
    own.apply_crds()
    own.wait_established()
    # Namespaces the operator does not serve, with the annotations real clusters have
    # (last-applied configurations): listing them takes kopf a moment, as on a big cluster.
    blob = {"example.com/last-applied": "x" * BULK_ANNOTATION}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: own.namespace(f"bulk-{i}", blob), range(BULK_NAMESPACES)))
    proc = own.operator("startup-namespaces")
    made: list[str] = []
    stop = threading.Event()

    def burst() -> None:
        # From kopf's authentication on (its namespace observer lists the namespaces, then
        # lists them again to start its watch), a namespace to serve every few milliseconds.
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            if "Initial authentication has finished" in proc.log_path.read_text("utf-8", "replace"):
                break
            stop.wait(0.01)
        until = time.monotonic() + BURST_SECONDS
        while not stop.is_set() and time.monotonic() < until:
            made.append(f"ns-b{len(made)}")
            own.namespace(made[-1])
            stop.wait(0.02)

    thread = threading.Thread(target=burst, daemon=True)
    try:
        proc.log_path.write_text("")
        thread.start()
        proc.start()
        thread.join(90)
        assert made, f"no namespace made (log: {proc.log_path})"
        for ns in made:
            own.policy(ns)
        for ns in made:
            wait_for(
                lambda ns=ns: own.policy_ready(ns).get("status") == "True",
                20,
                f"the policy in {ns}, one of {len(made)} namespaces, Ready (log: {proc.log_path})",
            )
        wait_for(lambda: readyz(proc)[0] == 200, 20, f"/readyz 200 (log: {proc.log_path})")
        assert alive(proc)
    finally:
        stop.set()
        proc.stop()


RESTARTS = 2
WATCHED_BEFORE = 6


def test_the_operator_keeps_serving_through_apiserver_restarts(own: Own) -> None:
    own.apply_crds()
    own.wait_established()
    # Watches in several namespaces: each reconnects on its own after a restart, so that
    # some of them meet the moment custom resources are answered 404.
    for i in range(WATCHED_BEFORE):
        own.namespace(f"ns-before-{i}")
    proc = own.operator("startup-apiserver-restart").start()
    try:
        wait_for(lambda: readyz(proc)[0] == 200, 30, f"/readyz 200 (log: {proc.log_path})")
        for i in range(RESTARTS):
            localcluster.restart_apiserver(own.local.root)
            # Made at once, while kopf's watches reconnect (and get 404s or 410s).
            ns = f"ns-after-{i}"
            own.namespace(ns)
            own.policy(ns)
            wait_for(
                lambda ns=ns: alive(proc) and own.policy_ready(ns).get("status") == "True",
                30,
                f"the policy in {ns} Ready after restart {i + 1} (log: {proc.log_path})",
            )
        own.mitigate(f"ns-after-{RESTARTS - 1}")
        wait_for(lambda: readyz(proc)[0] == 200, 30, f"/readyz 200 (log: {proc.log_path})")
        assert alive(proc)
    finally:
        proc.stop()
