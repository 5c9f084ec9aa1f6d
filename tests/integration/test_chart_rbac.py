"""Least privilege in effect: where the chart's RBAC lets the operator write, proved by the apiserver.

Kubernetes RBAC only adds rights, so the chart grants the write verbs (update Deployments,
Services, ConfigMaps, routers; create ConfigMaps; PrometheusRules) only by Roles in the
namespaces where the operator may act: watchNamespaces, or with all namespaces watched
rbac.writeNamespaces (none by default). Never in kube-system, kube-public, kube-node-lease,
protectedNamespaces, nor (unless watched) the release namespace with the operator's own
Deployment; cluster-wide writes only with rbac.clusterWideWrites. Secrets: get, by name.

The model-serving kinds (StatefulSets, Argo Rollouts, LeaderWorkerSets, KServe,
InferencePools, Envoy AI Gateway) have one switch per API group (rbac.servingKinds, all on
by default); each adds its reads where Deployments are read and its writes where
Deployments are written, and nothing else.

Offline, every combination of those values is rendered and checked; then the chart is
installed with its default values and the apiserver is asked (SubjectAccessReviews, as
`kubectl auth can-i --as` sends them, and real calls with the ServiceAccount's token)
what the ServiceAccount may do; last, with watchNamespaces, the operator runs as that
ServiceAccount and mitigates in the watched namespace: a Deployment scaled to zero, and a
KServe InferenceService stopped, each restored exactly.
"""

from __future__ import annotations

import functools
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
from controllers import Controllers
from kit import (
    OperatorProcess,
    create_incident,
    deployment,
    get_incident,
    kubectl,
    policy_body,
    spec_snapshot,
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


# The model-serving kinds: rbac.servingKinds switch -> (its rules in the read group, its rules
# in the write group), as (apiGroup, resource, verb). What the operator's code calls: get and
# list (targets, policies' targetSelector), watch (the repair watches on held objects; the
# undo sweep lists them), update (ScaleToZero, ConservativeConfig, GuardrailSidecar and
# TrafficShift write with the resourceVersion read), a status patch (a Rollout's abort).
READS = ("get", "list", "watch")
SERVING: dict[str, tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]] = {
    "statefulSets": (
        {("apps", "statefulsets", v) for v in READS},
        {("apps", "statefulsets", "update")},
    ),
    "argoRollouts": (
        {("argoproj.io", "rollouts", v) for v in READS},
        {("argoproj.io", "rollouts", "update"), ("argoproj.io", "rollouts/status", "patch")},
    ),
    "leaderWorkerSets": (
        {("leaderworkerset.x-k8s.io", "leaderworkersets", v) for v in READS},
        {("leaderworkerset.x-k8s.io", "leaderworkersets", "update")},
    ),
    "kserve": (
        {("serving.kserve.io", r, v) for r in ("inferenceservices", "llminferenceservices")
         for v in READS},
        {("serving.kserve.io", r, "update") for r in ("inferenceservices", "llminferenceservices")},
    ),
    # Read by name only, never written: fallbacks and the tenant bounds' trace.
    "inferencePools": ({("inference.networking.k8s.io", "inferencepools", "get")}, set()),
    "aiGateway": (
        {("aigateway.envoyproxy.io", "aigatewayroutes", v) for v in READS}
        | {("aigateway.envoyproxy.io", "aiservicebackends", "get"),
           ("gateway.envoyproxy.io", "backends", "get")},
        {("aigateway.envoyproxy.io", "aigatewayroutes", "update")},
    ),
}  # fmt: skip
# The history of StatefulSets and LeaderWorkerSets (evidence): there while either is on.
HISTORY = {("apps", "controllerrevisions", "get"), ("apps", "controllerrevisions", "list")}
HISTORY_OF = frozenset({"statefulSets", "leaderWorkerSets"})
ALL_SERVING = set().union(*(r | w for r, w in SERVING.values()), HISTORY)


def serving_expected(rules: set[tuple[str, str, str]], on: set[str]) -> set[tuple[str, str, str]]:
    """The model-serving rules a role with RULES should carry with the switches ON: the
    reads where Deployments are read, the writes where Deployments are written."""
    reads = ("apps", "deployments", "watch") in rules
    writes = ("apps", "deployments", "update") in rules
    found = set(HISTORY) if reads and on & HISTORY_OF else set()
    for switch in on:
        found |= (SERVING[switch][0] if reads else set()) | (
            SERVING[switch][1] if writes else set()
        )
    return found


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
            assert not granted[None] & ALL_SERVING
    # The model-serving kinds go exactly where the Deployment rules go.
    for ns, rules in granted.items():
        assert rules & ALL_SERVING == serving_expected(rules, set(SERVING)), ns
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
    for resource in ("deployments", "services", "configmaps", "pods", "virtualservices",
                     "statefulsets", "rollouts", "leaderworkersets", "inferenceservices",
                     "llminferenceservices", "aigatewayroutes"):  # fmt: skip
        assert any(r == resource and v == "list" for _, r, v in granted[None]), resource
    said = notes(RELEASE, RELEASE_NS, *BASE)
    assert "may change no workload anywhere" in said and "rbac.writeNamespaces" in said


def test_pod_logs_are_read_unless_switched_off():
    """rbac.podLogs: the evidence's logs.md needs `get` on pods/log, and nothing else does."""
    assert ("", "pods/log", "get") in rights(rendered())[None]
    off = rights(rendered("--set", "rbac.podLogs=false"))
    assert not any(r == "pods/log" for rules in off.values() for _, r, _ in rules)


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


# The RBAC modes, each with reads and writes somewhere (kube-system: reads only).
MODES = {
    "all namespaces": [],
    "writeNamespaces": ["--set", "rbac.writeNamespaces={team-b}"],
    "watchNamespaces": ["--set", "watchNamespaces={team-a,kube-system}"],
    "clusterWideWrites": ["--set", "rbac.clusterWideWrites=true"],
}


def serving_off(*switches: str) -> list[str]:
    return [arg for s in switches for arg in ("--set", f"rbac.servingKinds.{s}=false")]


@functools.cache
def mode_rights(mode: str, *off: str) -> dict[str | None, set[tuple[str, str, str]]]:
    return rights(rendered(*MODES[mode], *serving_off(*off)))


@pytest.mark.parametrize("mode", list(MODES))
def test_serving_kinds_are_granted_where_deployments_are(mode):
    granted = mode_rights(mode)
    for ns, rules in granted.items():
        assert rules & ALL_SERVING == serving_expected(rules, set(SERVING)), ns
    # Every rule of every switch is granted somewhere: the reads always, the writes wherever
    # Deployments are writable (nowhere by default).
    everywhere = set().union(*granted.values())
    writable = ("apps", "deployments", "update") in everywhere
    deployments = {("apps", "deployments", "watch")} | (
        {("apps", "deployments", "update")} if writable else set()
    )
    assert everywhere & ALL_SERVING == serving_expected(deployments, set(SERVING))
    assert writable == (mode != "all namespaces"), mode
    # Never a delete or a create of a model-serving object; InferencePools, AIServiceBackends
    # and Backends are never written.
    assert not {v for _, _, v in ALL_SERVING} - {"get", "list", "watch", "update", "patch"}
    assert {(g, r) for g, r, v in ALL_SERVING if v == "patch"} == {("argoproj.io", "rollouts/status")}  # fmt: skip


@pytest.mark.parametrize("switch", list(SERVING))
def test_each_serving_switch_off_removes_exactly_its_rules(switch):
    for mode in MODES:
        on, off = mode_rights(mode), mode_rights(mode, switch)
        assert set(off) == set(on), mode  # the same Roles, in the same namespaces
        for ns, rules in on.items():
            reads, writes = SERVING[switch]
            gone = (reads if ("apps", "deployments", "watch") in rules else set()) | (
                writes if ("apps", "deployments", "update") in rules else set()
            )
            assert on[ns] - off[ns] == gone and off[ns] <= on[ns], (mode, ns)
            assert off[ns] & ALL_SERVING == serving_expected(rules, set(SERVING) - {switch})


def test_history_goes_with_the_last_switch_that_needs_it():
    for mode in MODES:
        on, off = mode_rights(mode), mode_rights(mode, *sorted(HISTORY_OF))
        both = set().union(*(r | w for s, (r, w) in SERVING.items() if s in HISTORY_OF))
        for ns, rules in on.items():
            assert rules - off[ns] == rules & (both | HISTORY), (mode, ns)
        # All off: exactly the model-serving rules gone, everything else as it was.
        none = mode_rights(mode, *SERVING)
        assert {ns: r - ALL_SERVING for ns, r in on.items()} == none, mode


def test_the_read_group_covers_what_the_operator_watches_and_lists():
    """Every kind the repair watches follow (resources.HELD_KINDS) may be listed and watched,
    and every workload kind (workloads.ADAPTERS) read and listed, wherever the operator
    reads; every workload kind is writable wherever Deployments are. So a kind added to
    the code without its rule fails here, not in a cluster."""
    from ai_incident_operator import workloads
    from ai_incident_operator.resources import HELD_KINDS, KINDS

    granted = mode_rights("watchNamespaces")["team-a"]
    for kind in HELD_KINDS:
        k = KINDS[kind]
        assert {(k.group, k.plural, v) for v in READS} <= granted, kind
    for kind in workloads.ADAPTERS:
        k = KINDS[kind]
        assert {(k.group, k.plural, v) for v in (*READS, "update")} <= granted, kind


def test_serving_switches_default_on_and_old_values_keep_them():
    """Values files from before the switches (or one that leaves a switch out) get them all."""
    assert rights(rendered()) == rights(rendered("--set", "rbac.servingKinds.kserve=true"))
    assert rights(rendered("--set", "rbac.servingKinds=null")) == rights(rendered())


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


def can_i(verb: str, resource: str, namespace: str | None, subresource: str = "") -> bool:
    where = ["-n", namespace] if namespace else ["--all-namespaces"]
    extra = [f"--subresource={subresource}"] if subresource else []
    result = kubectl("auth", "can-i", verb, resource, *where, *extra, "--as", USER, check=False)
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


ISVC = "inferenceservices.serving.kserve.io"


def refused_everywhere_but(allowed: set[str], namespaces: list[str]) -> None:
    for ns in namespaces:
        for verb, resource, sub in (
            ("update", "deployments", ""), ("update", "services", ""),
            ("update", "configmaps", ""), ("create", "configmaps", ""),
            ("update", "virtualservices", ""), ("create", "prometheusrules", ""),
            ("update", "statefulsets", ""), ("update", ISVC, ""),
            ("update", "leaderworkersets.leaderworkerset.x-k8s.io", ""),
            ("patch", "rollouts.argoproj.io", "status"),
            ("update", "aigatewayroutes.aigateway.envoyproxy.io", ""),
        ):  # fmt: skip
            assert can_i(verb, resource, ns, sub) == (ns in allowed), f"{verb} {resource} {sub} in {ns}"  # fmt: skip


def test_default_install_writes_nowhere(release, local_cluster, solo_namespace, tmp_path):
    ns = solo_namespace
    everywhere = ["kube-system", "kube-public", "kube-node-lease", RELEASE_NS, ns]
    refused_everywhere_but(set(), everywhere)
    assert not can_i("update", f"deployments/{RELEASE}", RELEASE_NS)  # its own Deployment
    assert can_i("list", "deployments", None) and can_i("watch", "configmaps", None)
    assert can_i("watch", ISVC, None) and can_i("list", "statefulsets", None)
    assert not can_i("update", "inferencepools.inference.networking.k8s.io", ns)
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
        nothing_refused(proc)
    finally:
        install()


def nothing_refused(proc: OperatorProcess) -> None:
    """The Roles were enough: nothing the operator asked for was refused (its repair watches
    on every held kind, the StatefulSets', Rollouts', LeaderWorkerSets', KServe's and AI
    Gateway's among them, say so in the log when they are)."""
    log = proc.log_path.read_text(errors="replace")
    refused = [line for line in log.splitlines() if "orbidden" in line and "aiohttp" not in line]
    assert not refused, "\n".join(refused[:20])


STOP = "serving.kserve.io/stop"


def inferenceservice(name: str, labels: dict[str, str]) -> dict:
    """A KServe InferenceService as KServe's samples have it, with no stop annotation: undo
    must remove the annotation, not leave "false" behind."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"serving.kserve.io/deploymentMode": "Serverless"}},
        "spec": {"predictor": {
            "minReplicas": 1, "maxReplicas": 2,
            "model": {"modelFormat": {"name": "huggingface"}, "runtime": "kserve-huggingfaceserver",
                      "storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        }},
    }  # fmt: skip


def test_watched_namespace_stops_an_inferenceservice_and_restores_it_exactly(
    release, local_cluster, solo_namespace, other_namespace, tmp_path
):
    """As the chart's ServiceAccount: a severity-1 incident on a KServe InferenceService gets
    KServe's own stop (`serving.kserve.io/stop: "true"`), and resolution removes it again,
    the object as it was before, byte for byte."""
    ns, other = solo_namespace, other_namespace
    install(f"watchNamespaces={{{ns}}}")
    try:
        for verb in ("get", "list", "watch", "update"):
            assert can_i(verb, ISVC, ns), verb
        for verb in ("create", "patch", "delete"):
            assert not can_i(verb, ISVC, ns), verb
        for where in (other, "kube-system", RELEASE_NS):
            assert not can_i("update", ISVC, where), where
        assert not can_i("list", ISVC, None)

        labels = {"app.kubernetes.io/part-of": "llama"}
        kube.create("InferenceService", ns, inferenceservice("llama", labels))
        kube.create("InferenceService", other, inferenceservice("llama", labels))
        before = spec_snapshot(kube.get(Ref("InferenceService", ns, "llama")))
        policy = {
            "targetSelector": {"matchLabels": labels},
            "targetKinds": ["InferenceService"],  # listed by name: a 403 would be Ready=False
            "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        }
        kube.create("MitigationPolicy", ns, policy_body("llama", policy))
        kubeconfig = kit.sa_kubeconfig(local_cluster, RELEASE_NS, SA, tmp_path / "sa")
        # KServe's status part (Ready, Stopped), as its controller would write it.
        with Controllers(ns):
            proc = OperatorProcess(
                "chart-rbac-kserve", "--namespace", ns,
                env={"KUBECONFIG": str(kubeconfig), "AIINCIDENT_NAMESPACE": RELEASE_NS,
                     "AIINCIDENT_RESYNC_SECONDS": "2"},
            ).start()  # fmt: skip
            try:

                def ready() -> dict | None:
                    status = (kube.get(Ref("MitigationPolicy", ns, "llama")) or {}).get("status")
                    found = [c for c in (status or {}).get("conditions") or [] if c["type"] == "Ready"]  # fmt: skip
                    assert not found or found[0]["status"] == "True", found
                    return found[0] if found else None

                wait_for(ready, 60, f"policy Ready (log: {proc.log_path})")
                create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                             "target": {"kind": "InferenceService", "name": "llama"}})  # fmt: skip
                incident = wait_for(
                    lambda: (i := get_incident(ns, "harm")).get("status", {}).get("phase")
                    == "Mitigated" and i,
                    60, f"harm mitigated (log: {proc.log_path})",
                )  # fmt: skip
                entries = incident["status"]["mitigations"]
                assert [(m["action"], m["state"], m["target"]) for m in entries] == [
                    ("ScaleToZero", "Applied", "InferenceService/llama")
                ]
                stopped = kube.get(Ref("InferenceService", ns, "llama"))
                assert stopped["metadata"]["annotations"][STOP] == "true"
                assert stopped["spec"] == before["spec"]  # KServe's stop, not a replica count
                kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})  # fmt: skip
                wait_for(lambda: get_incident(ns, "harm").get("status", {}).get("phase") == "Resolved",
                         60, f"harm resolved (log: {proc.log_path})")  # fmt: skip
            finally:
                proc.stop()
        after = kube.get(Ref("InferenceService", ns, "llama"))
        assert STOP not in (after["metadata"].get("annotations") or {})
        assert spec_snapshot(after) == before
        untouched = kube.get(Ref("InferenceService", other, "llama"))
        assert STOP not in (untouched["metadata"].get("annotations") or {})
        nothing_refused(proc)
    finally:
        install()
