"""The Helm chart: lint, render every ci/ values file, install it, then run the operator as its ServiceAccount.

The operator process runs here, not in the Deployment's pod (no kubelet: the pod stays
Pending), but with the credentials of the chart's ServiceAccount: a static token of the
local control plane (`LocalCluster.kubeconfig_for`), or on an existing cluster
(USE_EXISTING_CLUSTER=1) a TokenRequest for the installed ServiceAccount. So the
mitigation scenario below proves the chart's RBAC is enough, and the refusals prove it
is not more than that.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from pathlib import Path

import kubernetes
import pytest
import yaml

from ai_incident_operator import kube, ledger
from ai_incident_operator.kube import Ref

import kit
from alertkit import Webhook, am_alert, am_payload
from chartkit import helm
from kit import (
    REPO,
    OperatorProcess,
    create_incident,
    deployment,
    free_port,
    get_incident,
    kubectl,
    policy_body,
    service,
    spec_snapshot,
    virtual_service,
    wait_for,
)

pytestmark = pytest.mark.integration
CHART = REPO / "charts" / "ai-incident-operator"
RELEASE = "ai-incident-operator"
RELEASE_NS = "aiincident-system"
SA = "ai-incident-operator"
USER = f"system:serviceaccount:{RELEASE_NS}:{SA}"
LABELS = {"app.kubernetes.io/part-of": "chat"}
# What the operator's log must not say when its RBAC is right.
# "403" only as an HTTP status: never the milliseconds of a log line's timestamp
# ("08:13:17,403 INFO ..."), which matched once on a fresh machine.
RBAC_TROUBLE = re.compile(
    r"forbidden|Forbidden|(?<![,.:\d])\b403\b(?![,.:]\d)|Not enough permissions"
    r"|Failed to post an event"
)


def render(*args: str) -> list[dict]:
    out = helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def operator_container(docs: list[dict]) -> dict:
    (dep,) = find(docs, "Deployment")
    return dep["spec"]["template"]["spec"]["containers"][0]


def granted(rules: list[dict]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


# --- Offline: lint and template ----------------------------------------------------------


def test_lint_and_template_every_ci_values_file():
    values_files = sorted((CHART / "ci").glob("*.yaml"))
    assert len(values_files) >= 4
    helm("lint", "--strict", str(CHART))
    for values in values_files:
        helm("lint", "--strict", str(CHART), "-f", str(values))
        docs = render("-f", str(values))
        container = operator_container(docs)
        assert container["args"][:7] == [
            "run", "--webhook-listen", "0.0.0.0:8080", "--webhook-token-file",
            "/var/run/aiincident/token", "--liveness-listen", "0.0.0.0:8081",
        ]  # fmt: skip
        pod = find(docs, "Deployment")[0]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["allowPrivilegeEscalation"] is False
        assert container["resources"]["requests"]["cpu"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        env = {e["name"]: e for e in container["env"]}
        assert env["AIINCIDENT_NAMESPACE"]["value"] == RELEASE_NS
        # Secrets: read by name, only in the release namespace; nothing may delete workloads.
        for role in find(docs, "ClusterRole") + find(docs, "Role"):
            rules = granted(role["rules"])
            assert not any("*" in rule for rule in rules), role["metadata"]["name"]
            deletes = {(g, r) for g, r, v in rules if v in ("delete", "deletecollection")}
            assert deletes <= {("monitoring.coreos.com", "prometheusrules")}
            secrets = {v for g, r, v in rules if r == "secrets"}
            if secrets:
                assert role["kind"] == "Role" and role["metadata"]["namespace"] == RELEASE_NS
                assert secrets == {"get"}


def test_namespaced_rbac_renders_roles_and_namespace_flags():
    docs = render("-f", str(CHART / "ci" / "namespaced-values.yaml"))
    args = operator_container(docs)["args"]
    assert "--namespace" in args and "team-a" in args and "team-b" in args
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert env["AIINCIDENT_PROTECTED_NAMESPACES"] == "payments"
    roles = {r["metadata"]["namespace"] for r in find(docs, "Role") if r["rules"]}
    assert roles == {"team-a", "team-b", RELEASE_NS}
    (cluster_role,) = find(docs, "ClusterRole")
    cluster_wide = {r for _, r, _ in granted(cluster_role["rules"])}
    # Only cluster-scoped kinds cluster-wide: no workload can be touched outside the list.
    assert cluster_wide == {
        "clustermitigationpolicies", "clustermitigationpolicies/status", "namespaces",
        "customresourcedefinitions",
    }  # fmt: skip
    failed = helm("template", RELEASE, str(CHART), "--set", "rbac.namespaced=true", check=False)
    # values.schema.json mirrors the template's check (test_chart_lint.py).
    assert failed.returncode != 0 and "/watchNamespaces" in failed.stderr


def test_peering_with_more_than_one_replica():
    single = render()
    assert "--peering" not in operator_container(single)["args"]
    assert find(single, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}
    ha = render("-f", str(CHART / "ci" / "ha-values.yaml"))
    args = operator_container(ha)["args"]
    assert args[args.index("--peering") + 1] == "ai-incident-operator"
    assert find(ha, "ClusterKopfPeering", "ai-incident-operator")
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in granted(
        find(ha, "ClusterRole")[0]["rules"]
    )
    namespaced = render("-f", str(CHART / "ci" / "ha-namespaced-values.yaml"))
    (peering,) = find(namespaced, "KopfPeering")
    assert peering["metadata"]["namespace"] == "team-a"
    (role,) = [r for r in find(namespaced, "Role") if r["metadata"]["namespace"] == "team-a"]
    assert ("kopf.dev", "kopfpeerings", "patch") in granted(role["rules"])


def test_optional_parts_render():
    docs = render("-f", str(CHART / "ci" / "full-values.yaml"))
    assert not find(docs, "Secret")  # webhook.existingSecret: none generated
    volumes = find(docs, "Deployment")[0]["spec"]["template"]["spec"]["volumes"]
    token = next(v for v in volumes if v["name"] == "webhook-token")["secret"]
    assert token["secretName"] == "alertmanager-intake"
    assert token["items"] == [{"key": "bearer", "path": "token"}]
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["bearerTokenSecret"]["name"] == "alertmanager-intake"
    (rule,) = find(docs, "PrometheusRule")
    alerts = {r.get("alert") for g in rule["spec"]["groups"] for r in g["rules"]}
    source = yaml.safe_load((REPO / "deploy" / "prometheus" / "ai-incident-rules.yaml").read_text())
    assert {r["alert"] for g in source["groups"] for r in g["rules"]} | {
        "ChatQualityWatch"
    } == alerts
    # Prometheus's own templates reach it untouched.
    assert "{{ $labels.namespace }}" in json.dumps(rule)
    (dashboard,) = [c for c in find(docs, "ConfigMap") if "tenant-bounds" not in c["metadata"]["name"]]  # fmt: skip
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert json.loads(dashboard["data"]["ai-incidents.json"])["panels"]
    (policy,) = find(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    image = operator_container(docs)["image"]
    assert image.endswith("@sha256:" + "0123456789abcdef" * 4)


def test_values_schema_rejects_mistakes():
    for bad in (
        "rbac.namspaced=true",
        "replicaCount=-1",
        "webhook.port=0",
        "image.pullPolicy=Sometimes",
    ):
        result = helm("template", RELEASE, str(CHART), "--set", bad, check=False)
        assert result.returncode != 0, bad
        assert "schema" in result.stderr.lower(), result.stderr


def test_packaged_chart_carries_the_repository_crds(tmp_path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("ai-incident-operator-*.tgz")
    out = helm("template", RELEASE, str(archive), "--include-crds").stdout
    crds = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "CustomResourceDefinition"
    }
    for path in (REPO / "crds").glob("*.yaml"):
        ours = yaml.safe_load(path.read_text())
        assert crds.pop(ours["metadata"]["name"]) == ours, path.name
    assert set(crds) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


# --- Installed into the control plane ------------------------------------------------------


@pytest.fixture(scope="module")
def release(cluster):
    """The chart installed as users install it; uninstalled (and its namespace removed) after."""
    yield install()
    helm("uninstall", RELEASE, "--namespace", RELEASE_NS, check=False)
    kubernetes.client.CoreV1Api().delete_namespace(RELEASE_NS)


def install(*values: str) -> dict:
    """helm upgrade --install with VALUES (--set strings), reset to the chart's defaults first."""
    optional = []
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        # A real cluster would run the pod (when it can pull the image): a second operator
        # beside the one under test. Here the Deployment only has to exist.
        optional += ["--set", "replicaCount=0"]
    if kube.kind_installed("PrometheusRule"):
        optional += ["--set", "prometheusRule.enabled=true"]
    sets = [arg for value in values for arg in ("--set", value)]
    helm(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
        "--create-namespace", "--reset-values", "--set", f"serviceAccount.name={SA}",
        "--set", "grafanaDashboard.enabled=true", "--set", "networkPolicy.enabled=true",
        *optional, *sets,
    )  # fmt: skip
    return json.loads(helm("status", RELEASE, "--namespace", RELEASE_NS, "-o", "json").stdout)


def token_of_release() -> str:
    secret = kube.get(Ref("Secret", RELEASE_NS, f"{RELEASE}-webhook"))
    return base64.b64decode(secret["data"]["token"]).decode()


def sa_kubeconfig(local_cluster, tmp_path: Path) -> Path:
    """A kubeconfig as the chart's ServiceAccount, its context in the release namespace (as in a pod)."""
    return kit.sa_kubeconfig(local_cluster, RELEASE_NS, SA, tmp_path / "sa-kubeconfig")


def can_i(verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = kubectl("auth", "can-i", verb, resource, *where, "--as", USER, check=False)
    return result.stdout.strip() == "yes"


def run_as_sa(name: str, kubeconfig: Path, *namespaces: str) -> OperatorProcess:
    args = [arg for ns in namespaces for arg in ("--namespace", ns)]
    # The intake as the chart runs it: the token read from the release's Secret, as a file.
    token_file = kubeconfig.parent / "webhook-token"
    token_file.write_text(token_of_release())
    args += ["--webhook-listen", f"127.0.0.1:{free_port()}", "--webhook-token-file", str(token_file)]  # fmt: skip
    env = {
        "KUBECONFIG": str(kubeconfig),
        "AIINCIDENT_NAMESPACE": RELEASE_NS,
        "AIINCIDENT_RESYNC_SECONDS": "2",
    }
    return OperatorProcess(name, *args, env=env).start()


def setup_model(ns: str, policy: dict) -> None:
    model = deployment("chat-llm", LABELS)
    # The model reads chat-config: a namespaced policy changes only ConfigMaps its target uses.
    model["spec"]["template"]["spec"]["volumes"] = [{"name": "config", "configMap": {"name": "chat-config"}}]  # fmt: skip
    kube.create("Deployment", ns, model)
    kube.create("Service", ns, service("chat", "chat-llm"))
    kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
    kube.create("VirtualService", ns, virtual_service("chat", "chat"))
    kube.create("ConfigMap", ns, {"metadata": {"name": "chat-config"}, "data": {"max_tokens": "4096"}})  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", policy))


def snapshot(ns: str) -> dict:
    return {
        kind: spec_snapshot(kube.get(Ref(kind, ns, name)))
        for kind, name in (("Deployment", "chat-llm"), ("Service", "chat"), ("VirtualService", "chat"),
                           ("ConfigMap", "chat-config"))
    }  # fmt: skip


# Severity 2 exercises the rest of the rights: a Service port and a ConfigMap, and the
# server-side dry run of the sidecar.
SEV2 = {
    "severity": 2,
    "actions": [
        {"type": "GuardrailSidecar",
         "container": {"name": "guardrail", "image": "registry.local/guardrail:1", "ports": [{"containerPort": 8001}]},
         "servicePort": {"service": "chat", "port": "http", "targetPort": 8001}},
        {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"},
         "configMap": {"name": "chat-config", "data": {"max_tokens": "256"}}},
    ],
}  # fmt: skip


def sev1_policy(*extra_actions: dict, **spec: object) -> dict:
    return {
        "priority": 1000,  # above any cluster policy another test left behind
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}]},
        "responses": [
            {
                "severity": 1,
                "actions": [
                    {"type": "TrafficShift", "router": {"kind": "VirtualService", "name": "chat"},
                     "fallback": {"service": "chat-fallback"}, "weight": 100},
                    {"type": "ScaleToZero"},
                    *extra_actions,
                ],
            },
            SEV2,
        ],
        **spec,
    }  # fmt: skip


def policy_ready(ns: str) -> bool:
    body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def phase(ns: str, name: str, *phases: str, timeout: float = 40) -> dict:
    return wait_for(
        lambda: (i := get_incident(ns, name)).get("status", {}).get("phase") in phases and i,
        timeout, f"{name} phase in {phases}",
    )  # fmt: skip


def mitigate_and_resolve(ns: str, proc: OperatorProcess, expect: set[str]) -> None:
    """Severity 1: traffic to the fallback and replicas to 0; resolution restores exactly."""
    wait_for(lambda: policy_ready(ns), 30, f"policy Ready (log: {proc.log_path})")
    before = snapshot(ns)
    create_incident(ns, "harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    phase(ns, "harm", "Mitigated")

    def states() -> set[tuple[str, str]]:
        status = kube.get(Ref("AIIncident", ns, "harm"))["status"]
        return {(m["action"], m["state"]) for m in status["mitigations"]}

    # A page's outcome is recorded after the write that says Mitigated (it is sent after it).
    wanted = {(action, "Applied") for action in expect}
    wait_for(lambda: states() == wanted, 30, f"every action Applied (log: {proc.log_path})")
    assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 0
    route = kube.get(Ref("VirtualService", ns, "chat"))["spec"]["http"][0]["route"]
    assert {d["destination"]["host"]: d.get("weight") for d in route} == {
        "chat": 0,
        "chat-fallback": 100,
    }
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
    incident = phase(ns, "harm", "Resolved")
    assert {m["state"] for m in incident["status"]["mitigations"]} == {"Reverted"}
    assert snapshot(ns) == before
    assert not ledger.holders(kube.get(Ref("Deployment", ns, "chat-llm")))


def degraded_then_resolved(ns: str) -> None:
    """Severity 2: a guardrail sidecar in front of the model and a conservative configuration."""
    before = snapshot(ns)
    spec = {"category": "AccuracyDegradation", "severity": 2, "target": {"name": "chat-llm"}}
    create_incident(ns, "quality", spec)
    incident = phase(ns, "quality", "Mitigated")
    states = {(m["action"], m["state"]) for m in incident["status"]["mitigations"]}
    assert states == {("GuardrailSidecar", "Applied"), ("ConservativeConfig", "Applied")}
    pod = kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["llm", "guardrail"]
    assert kube.get(Ref("Service", ns, "chat"))["spec"]["ports"][0]["targetPort"] == 8001
    assert kube.get(Ref("ConfigMap", ns, "chat-config"))["data"] == {"max_tokens": "256"}
    kube.patch(Ref("AIIncident", ns, "quality"), {"spec": {"resolution": {"requested": True}}})
    phase(ns, "quality", "Resolved")
    assert snapshot(ns) == before


def alerts_open_an_incident(ns: str, proc: OperatorProcess) -> None:
    """The intake, with the token from the chart's Secret, opens an incident from an alert."""
    wait_for(proc.webhook_ready, 30, f"webhook ready (log: {proc.log_path})")
    alert = am_alert(namespace=ns, deployment="chat-llm", ai_incident_category="CostAnomaly")
    webhook = Webhook(proc.webhook_url, token_of_release())
    assert webhook.post(am_payload(alert), token="not-the-token").status == 403  # a wrong token
    reply = webhook.post(am_payload(alert))
    assert reply.status == 200, reply.body
    opened = wait_for(
        lambda: [i for i in kube.list_objects("AIIncident", ns) if i["spec"]["category"] == "CostAnomaly"],
        20, "an incident from the alert",
    )  # fmt: skip
    assert opened[0]["spec"]["alerts"][0]["labels"]["deployment"] == "chat-llm"


def assert_no_rbac_trouble(proc: OperatorProcess) -> None:
    log = proc.log_path.read_text(errors="replace")
    # aiohttp's access log records the intake's own 401/403 answers: not about RBAC.
    trouble = [
        line for line in log.splitlines()
        if RBAC_TROUBLE.search(line) and "aiohttp.access" not in line
    ]  # fmt: skip
    assert not trouble, "\n".join(trouble[:20])


def test_install_keeps_token_and_sa_mitigates_with_least_privilege(
    release, local_cluster, solo_namespace, hook, tmp_path
):
    ns = solo_namespace
    assert release["info"]["status"] == "deployed"
    notes = release["info"]["notes"]  # how to point Alertmanager at the intake
    assert f"url: http://{RELEASE}.{RELEASE_NS}.svc:8080/api/v1/alerts" in notes
    assert f"kubectl -n {RELEASE_NS} get secret {RELEASE}-webhook" in notes
    dep = kube.get(Ref("Deployment", RELEASE_NS, RELEASE))
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == SA
    token = token_of_release()
    assert len(token) >= 32
    # An upgrade keeps the generated token. Writes where this test mitigates (the default
    # grants none), and Notify's Secret by name (test_chart_rbac.py checks the limits).
    install(f"rbac.writeNamespaces={{{ns}}}", f"rbac.secretNames={{oncall-{ns}}}")
    assert token_of_release() == token

    # Refused: what the operator has no business doing.
    assert can_i("get", f"secrets/oncall-{ns}", RELEASE_NS)
    assert can_i("update", "deployments", ns) and can_i("update", "virtualservices", ns)
    assert can_i("list", "aiincidents", None) and can_i("patch", "aiincidents/status", ns)
    for verb, resource, where in [
        ("get", "secrets", ns), ("get", "secrets", "kube-system"), ("list", "secrets", RELEASE_NS),
        ("watch", "secrets", RELEASE_NS), ("delete", "deployments", ns), ("create", "deployments", ns),
        ("delete", "services", ns), ("delete", "aiincidents", ns), ("create", "pods", ns),
        ("delete", "pods", ns), ("create", "serviceaccounts/token", RELEASE_NS),
        ("update", "clusterroles", None), ("create", "rolebindings", ns), ("impersonate", "users", None),
        ("delete", "namespaces", None), ("delete", "virtualservices", ns), ("update", "nodes", None),
    ]:  # fmt: skip
        assert not can_i(verb, resource, where), (
            f"the ServiceAccount may {verb} {resource} in {where}"
        )
    kubeconfig = sa_kubeconfig(local_cluster, tmp_path)
    kube.create("Secret", ns, {"metadata": {"name": "elsewhere"}, "stringData": {"k": "v"}})
    denied = kubectl(
        "--kubeconfig", str(kubeconfig), "get", "secret", "elsewhere", "-n", ns, check=False
    )
    assert denied.returncode != 0 and "forbidden" in denied.stderr, denied.stderr

    # Allowed: the whole severity-1 scenario, with a notification through a Secret in the
    # operator's namespace and an extra PrometheusRule when the CRD is there.
    shared = {"aiincident.io/allowed-namespaces": ns}  # a namespaced policy names it
    kube.create("Secret", RELEASE_NS, {"metadata": {"name": f"oncall-{ns}", "annotations": shared}, "stringData": {"url": f"{hook.url}/oncall"}})  # fmt: skip
    extra = [{"type": "Notify", "channels": ["oncall"]}]
    expect = {"TrafficShift", "ScaleToZero", "Notify"}
    if kube.kind_installed("PrometheusRule"):
        extra.append({"type": "IncreaseMonitoring", "rules": [{"alert": "ChatWatch", "expr": "vector(1)"}]})  # fmt: skip
        expect.add("IncreaseMonitoring")
    channels = [
        {"name": "oncall", "webhook": {"urlSecretRef": {"name": f"oncall-{ns}", "key": "url"}}}
    ]
    setup_model(ns, sev1_policy(*extra, notifications={"channels": channels}))
    proc = run_as_sa("chart-sa", kubeconfig, ns)
    try:
        mitigate_and_resolve(ns, proc, expect)
        assert hook.bodies.get("/oncall"), "the Notify channel was not reached"
        degraded_then_resolved(ns)
        alerts_open_an_incident(ns, proc)
        if "IncreaseMonitoring" in expect:
            assert kube.get(Ref("PrometheusRule", ns, "harm-monitoring")) is None
        wait_for(lambda: (kubernetes.client.CoreV1Api().list_namespaced_event(
            ns, field_selector="involvedObject.name=harm").items), 15, "events posted")  # fmt: skip
    finally:
        proc.stop()
        kube.delete(Ref("Secret", RELEASE_NS, f"oncall-{ns}"))
    assert_no_rbac_trouble(proc)


def test_namespaced_rbac_mode(release, local_cluster, solo_namespace, tmp_path):
    ns = solo_namespace
    other = f"solo-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api()
    core.create_namespace({"metadata": {"name": other}})
    try:
        install("rbac.namespaced=true", f"watchNamespaces={{{ns}}}")
        args = kube.get(Ref("Deployment", RELEASE_NS, RELEASE))["spec"]["template"]["spec"][
            "containers"
        ][0]["args"]
        assert [args[i + 1] for i, a in enumerate(args) if a == "--namespace"] == [ns]
        assert can_i("update", "deployments", ns)
        assert can_i("get", f"secrets/{RELEASE}-webhook", RELEASE_NS)
        assert not can_i("update", "deployments", other)
        assert not can_i("get", "services", other)
        assert not can_i("list", "deployments", None)
        assert not can_i("list", "aiincidents", None)
        assert can_i("list", "namespaces", None) and can_i(
            "watch", "clustermitigationpolicies", None
        )
        setup_model(ns, sev1_policy())
        proc = run_as_sa("chart-sa-namespaced", sa_kubeconfig(local_cluster, tmp_path), ns)
        try:
            mitigate_and_resolve(ns, proc, {"TrafficShift", "ScaleToZero"})
        finally:
            proc.stop()
        assert_no_rbac_trouble(proc)
    finally:
        core.delete_namespace(other)
        install()
