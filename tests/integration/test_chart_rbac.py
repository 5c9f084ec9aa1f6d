"""Least privilege in effect: where the chart's RBAC lets the operator write, proved by the apiserver.

Kubernetes RBAC only adds rights, so the chart grants the write verbs (update Deployments,
Services, ConfigMaps, routers; create ConfigMaps; PrometheusRules) only by Roles in the
namespaces where the operator may act: watchNamespaces, or with all namespaces watched
rbac.writeNamespaces (none by default). Never in kube-system, kube-public, kube-node-lease,
protectedNamespaces, nor (unless watched) the release namespace with the operator's own
Deployment; cluster-wide writes only with rbac.clusterWideWrites. Secrets: get, by name.

Offline, every combination of those values is rendered and checked; then the chart is
installed with its default values and the apiserver is asked (SubjectAccessReviews, as
`kubectl auth can-i --as` sends them, and real calls with the ServiceAccount's token)
what the ServiceAccount may do; last, with watchNamespaces, the operator runs as that
ServiceAccount and mitigates in the watched namespace.
"""

from __future__ import annotations

import itertools
import os
import uuid
from pathlib import Path

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

import kit
from chartkit import (
    BUILTIN_PROTECTED,
    CHART,
    find,
    helm,
    notes,
    render,
    rights,
    secret_names,
    workload_writes,
)
from kit import (
    OperatorProcess,
    create_incident,
    deployment,
    get_incident,
    kubectl,
    policy_body,
    wait_for,
)

pytestmark = pytest.mark.integration
# Its own release, in the namespace and with the ServiceAccount the local control plane has
# a static token for (test_chart.py's; that release is gone before this module starts).
RELEASE = "rbac-check"
RELEASE_NS = "aiincident-system"
SA = "ai-incident-operator"
USER = f"system:serviceaccount:{RELEASE_NS}:{SA}"
TOKEN_SECRET = f"{RELEASE}-webhook"
BASE = ["--set", f"fullnameOverride={RELEASE}", "--set", f"serviceAccount.name={SA}"]


def rendered(*args: str) -> list[dict]:
    return render(RELEASE, RELEASE_NS, *BASE, *args)


# --- Offline: what each combination of values grants ----------------------------------------

WATCH = ([], ["team-a"], ["team-a", "kube-system", RELEASE_NS, "payments"])
WRITE = ([], ["team-b", RELEASE_NS, "payments"])
# (protectedNamespaces, rbac.secretNames), varied together to keep the matrix small.
EXTRA = (([], []), (["payments"], ["oncall", "oncall"]))


def combinations():
    for watch, write, (protected, secrets), cluster_wide in itertools.product(
        WATCH, WRITE, EXTRA, (False, True)
    ):
        if (write and watch) or (cluster_wide and write):
            continue  # rejected by the schema (test_chart_lint.py)
        yield watch, write, protected, secrets, cluster_wide


def as_set(name: str, items: list[str]) -> list[str]:
    return ["--set", f"{name}={{{','.join(items)}}}"] if items else []


@pytest.mark.parametrize("watch,write,protected,secrets,cluster_wide", list(combinations()))
def test_writes_only_where_the_operator_may_act(watch, write, protected, secrets, cluster_wide):
    docs = rendered(
        *as_set("watchNamespaces", watch), *as_set("rbac.writeNamespaces", write),
        *as_set("protectedNamespaces", protected), *as_set("rbac.secretNames", secrets),
        "--set", f"rbac.clusterWideWrites={str(cluster_wide).lower()}",
    )  # fmt: skip
    granted = rights(docs)
    never = set(BUILTIN_PROTECTED) | set(protected)
    if RELEASE_NS not in watch:
        never.add(RELEASE_NS)  # the operator's own Deployment, Service, ConfigMaps
    may_write = {ns for ns, rules in granted.items() if workload_writes(rules)}
    if cluster_wide:
        assert may_write == {None}  # the opt-in: everywhere, by the ClusterRole
    else:
        expected = (set(watch) or set(write)) - never
        assert may_write == expected, (watch, write, protected)
        if watch:  # the reads too only where it watches
            assert not any(r == "deployments" for _, r, _ in granted[None])
    # Secrets: only get, only by name, only in the release namespace, never all of them.
    names = secret_names(docs)
    assert set(names) == {RELEASE_NS}
    assert names[RELEASE_NS] == [[TOKEN_SECRET, *dict.fromkeys(secrets)]]
    assert {v for g, r, v in granted[RELEASE_NS] if r == "secrets"} == {"get"}
    # The intake may put unmapped incidents in the release namespace, watched or not.
    assert {("aiincident.io", "aiincidents", v) for v in ("get", "create", "patch")} <= granted[
        RELEASE_NS
    ]


def test_default_values_grant_no_workload_writes():
    docs = rendered()
    granted = rights(docs)
    assert set(granted) == {None, RELEASE_NS}
    assert not workload_writes(granted[None]) and not workload_writes(granted[RELEASE_NS])
    # It still reads what triage, evidence and the repair watches need, cluster-wide.
    for resource in ("deployments", "services", "configmaps", "pods", "virtualservices"):
        assert any(r == resource and v == "list" for _, r, v in granted[None]), resource
    said = notes(RELEASE, RELEASE_NS, *BASE)
    assert "may change no workload anywhere" in said and "rbac.writeNamespaces" in said


def test_notes_say_what_was_left_out_and_warn_of_cluster_wide_writes():
    said = notes(RELEASE, RELEASE_NS, *BASE, "--set", f"rbac.writeNamespaces={{team-a,{RELEASE_NS},payments}}",
                 "--set", "protectedNamespaces={payments}")  # fmt: skip
    assert "only in: team-a." in said
    assert "payments (protected)" in said and f"{RELEASE_NS} (the operator's own namespace" in said
    watched = notes(RELEASE, RELEASE_NS, *BASE, "--set", f"watchNamespaces={{team-a,{RELEASE_NS}}}")
    assert f"Its own namespace {RELEASE_NS} is watched" in watched
    wide = ["--set", "rbac.clusterWideWrites=true"]
    assert "WARNING: rbac.clusterWideWrites=true" in notes(RELEASE, RELEASE_NS, *BASE, *wide)
    # helm template leaves the notes out: the ClusterRole itself carries the warning.
    out = helm("template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *BASE, *wide).stdout
    assert "# WARNING: rbac.clusterWideWrites=true" in out


def test_old_namespaced_values_keep_their_meaning():
    """rbac.namespaced: true with watchNamespaces renders as watchNamespaces alone does."""
    alone = rendered("--set", "watchNamespaces={team-a}")
    old = rendered("--set", "watchNamespaces={team-a}", "--set", "rbac.namespaced=true")
    assert rights(alone) == rights(old)
    assert {r["metadata"]["namespace"] for r in find(alone, "Role")} == {"team-a", RELEASE_NS}


# --- Installed: the apiserver decides ---------------------------------------------------------


def install(*values: str) -> None:
    optional = []
    if os.environ.get("USE_EXISTING_CLUSTER") == "1":
        optional += ["--set", "replicaCount=0"]  # no second operator beside the one under test
    helm(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", RELEASE_NS,
        "--create-namespace", "--reset-values", *BASE, *optional,
        *[arg for value in values for arg in ("--set", value)],
    )  # fmt: skip


def namespace_phase(name: str) -> str | None:
    try:
        return kubernetes.client.CoreV1Api().read_namespace(name).status.phase
    except kubernetes.client.ApiException as err:
        if err.status == 404:
            return None
        raise


@pytest.fixture(scope="module")
def release(cluster):
    # Another module's release may have left the namespace Terminating: helm cannot
    # install into it until the namespace controller has finished.
    wait_for(lambda: namespace_phase(RELEASE_NS) != "Terminating", 120, f"{RELEASE_NS} deleted")
    install()
    yield
    helm("uninstall", RELEASE, "--namespace", RELEASE_NS, check=False)
    kubernetes.client.CoreV1Api().delete_namespace(RELEASE_NS)
    wait_for(lambda: namespace_phase(RELEASE_NS) is None, 120, f"{RELEASE_NS} deleted")


def can_i(verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = kubectl("auth", "can-i", verb, resource, *where, "--as", USER, check=False)
    return result.stdout.strip() == "yes"


def as_sa(kubeconfig: Path, *args: str):
    return kubectl("--kubeconfig", str(kubeconfig), *args, check=False)


@pytest.fixture
def other_namespace(cluster):
    name = f"solo-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api()
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def refused_everywhere_but(allowed: set[str], namespaces: list[str]) -> None:
    for ns in namespaces:
        for verb, resource in (("update", "deployments"), ("update", "services"),
                               ("update", "configmaps"), ("create", "configmaps"),
                               ("update", "virtualservices"), ("create", "prometheusrules")):  # fmt: skip
            assert can_i(verb, resource, ns) == (ns in allowed), f"{verb} {resource} in {ns}"


def test_default_install_writes_nowhere(release, local_cluster, solo_namespace, tmp_path):
    ns = solo_namespace
    everywhere = ["kube-system", "kube-public", "kube-node-lease", RELEASE_NS, ns]
    refused_everywhere_but(set(), everywhere)
    assert not can_i("update", f"deployments/{RELEASE}", RELEASE_NS)  # its own Deployment
    assert can_i("list", "deployments", None) and can_i("watch", "configmaps", None)
    assert can_i("create", "aiincidents", RELEASE_NS)
    # Secrets by name only: the token's, nothing unlisted, no listing.
    assert can_i("get", f"secrets/{TOKEN_SECRET}", RELEASE_NS)
    assert not can_i("get", "secrets/unlisted", RELEASE_NS)
    assert not can_i("list", "secrets", RELEASE_NS)
    # And with the ServiceAccount's own token, as the operator's pod would call.
    kubeconfig = kit.sa_kubeconfig(local_cluster, RELEASE_NS, SA, tmp_path / "sa")
    kube.create("Secret", RELEASE_NS, {"metadata": {"name": "unlisted"}, "stringData": {"k": "v"}})
    kube.create("Deployment", ns, deployment("chat-llm", {"app": "chat"}))
    try:
        denied = as_sa(kubeconfig, "get", "secret", "unlisted", "-n", RELEASE_NS)
        assert denied.returncode != 0 and "forbidden" in denied.stderr, denied.stderr
        scaled = as_sa(kubeconfig, "scale", "deployment", "chat-llm", "--replicas=0", "-n", ns)
        assert scaled.returncode != 0 and "forbidden" in scaled.stderr, scaled.stderr
        mine = as_sa(kubeconfig, "scale", "deployment", RELEASE, "--replicas=0", "-n", RELEASE_NS)
        assert mine.returncode != 0 and "forbidden" in mine.stderr, mine.stderr
        assert as_sa(kubeconfig, "get", "deployment", "chat-llm", "-n", ns).returncode == 0
    finally:
        kube.delete(Ref("Secret", RELEASE_NS, "unlisted"))


def test_watched_namespace_mitigates_and_nothing_else(
    release, local_cluster, solo_namespace, other_namespace, tmp_path
):
    ns, other = solo_namespace, other_namespace
    install(f"watchNamespaces={{{ns}}}", "rbac.secretNames={oncall}")
    try:
        refused_everywhere_but({ns}, [ns, other, "kube-system", RELEASE_NS])
        assert not can_i("update", f"deployments/{RELEASE}", RELEASE_NS)
        assert not can_i("list", "deployments", None)
        assert can_i("get", "secrets/oncall", RELEASE_NS)
        assert not can_i("get", "secrets/unlisted", RELEASE_NS)
        # Unmapped incidents go to the release namespace, which it does not watch.
        assert can_i("create", "aiincidents", RELEASE_NS) and can_i(
            "patch", "aiincidents", RELEASE_NS
        )
        assert not can_i("create", "aiincidents", other)

        labels = {"app.kubernetes.io/part-of": "chat"}
        kube.create("Deployment", ns, deployment("chat-llm", labels))
        kube.create("Deployment", other, deployment("chat-llm", labels))
        policy = {
            "targetSelector": {"matchLabels": labels},
            "triage": {"rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}]},
            "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        }
        kube.create("MitigationPolicy", ns, policy_body("chat", policy))
        kubeconfig = kit.sa_kubeconfig(local_cluster, RELEASE_NS, SA, tmp_path / "sa")
        proc = OperatorProcess(
            "chart-rbac", "--namespace", ns,
            env={"KUBECONFIG": str(kubeconfig), "AIINCIDENT_NAMESPACE": RELEASE_NS,
                 "AIINCIDENT_RESYNC_SECONDS": "2"},
        ).start()  # fmt: skip
        try:
            create_incident(
                ns, "harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}}
            )
            incident = wait_for(
                lambda: (i := get_incident(ns, "harm")).get("status", {}).get("phase")
                == "Mitigated" and i,
                40, f"harm mitigated (log: {proc.log_path})",
            )  # fmt: skip
            assert [(m["action"], m["state"]) for m in incident["status"]["mitigations"]] == [
                ("ScaleToZero", "Applied")
            ]
            assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 0
            kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
            wait_for(lambda: get_incident(ns, "harm").get("status", {}).get("phase") == "Resolved",
                     40, "harm resolved")  # fmt: skip
            assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 3
        finally:
            proc.stop()
        assert kube.get(Ref("Deployment", other, "chat-llm"))["spec"]["replicas"] == 3
        # The Roles were enough: nothing it needed was refused.
        log = proc.log_path.read_text(errors="replace")
        refused = [
            line for line in log.splitlines() if "orbidden" in line and "aiohttp" not in line
        ]
        assert not refused, "\n".join(refused[:20])
    finally:
        install()
