"""The engine's guarantees, end to end on a real apiserver, with the real operator process.

* an action the operator's RBAC forbids is a `Failed` entry (the others still apply),
  retried with backoff until the right is granted;
* what was changed before a crash (known only from the object's ledger) is undone
  when the incident is resolved or deleted while the operator was down;
* eight incidents holding one Deployment, deleted at once, give it back exactly;
* the ledger annotation removed by hand mid-incident does not turn the mitigated
  values into the "originals": resolution still restores exactly.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
import yaml

from ai_incident_operator import kube, ledger
from ai_incident_operator.kube import Ref

from kit import (
    OPERATOR_ENV,
    REPO,
    OperatorProcess,
    create_incident,
    deployment,
    get_incident,
    kubectl,
    policy_body,
    sa_kubeconfig,
    service,
    spec_snapshot,
    wait_for,
)

pytestmark = pytest.mark.integration
READ = ["get", "list", "watch"]
WRITE = [*READ, "update", "patch"]
LABELS = {"app.kubernetes.io/part-of": "chat"}
CHART = REPO / "charts" / "ai-incident-operator"
# The identity the local control plane has a static token for (localcluster.SERVICE_ACCOUNTS).
SA_NAMESPACE, SA_NAME = "aiincident-system", "ai-incident-operator"
SA_USER = f"system:serviceaccount:{SA_NAMESPACE}:{SA_NAME}"
CATEGORIES = [
    "HarmfulOutput", "AccuracyDegradation", "DataLeak", "BiasViolation",
    "OutOfScopeUse", "ModelFailure", "CostAnomaly", "Other",
]  # fmt: skip

SCALE = {"type": "ScaleToZero"}
SHIFT = {
    "type": "TrafficShift",
    "router": {"kind": "Service", "name": "chat"},
    "fallback": {"service": "chat-fallback"},
}
CONSERVATIVE = {"type": "ConservativeConfig", "container": "llm", "env": {"TEMPERATURE": "0"}}


# --- Helpers ------------------------------------------------------------------------------


def policy(*actions: dict, severity: int = 1) -> dict:
    return {
        "priority": 1000,  # above any cluster policy another test left behind
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": severity, "actions": list(actions)}],
    }


def setup_model(ns: str, spec: dict) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    kube.create("Service", ns, service("chat", "chat-llm"))
    kube.create("Service", ns, service("chat-fallback", "chat-fallback"))
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))


def policy_ready(ns: str) -> bool:
    body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def snapshot(ns: str) -> dict:
    return {
        name: spec_snapshot(kube.get(Ref(kind, ns, name)))
        for kind, name in (("Deployment", "chat-llm"), ("Service", "chat"),
                           ("Service", "chat-fallback"))
    }  # fmt: skip


def ledger_annotations(ns: str) -> dict[str, str]:
    """The objects still carrying an `aiincident.io/ledger` annotation, and its value."""
    found = {}
    for kind, name in (("Deployment", "chat-llm"), ("Service", "chat")):
        annotations = kube.get(Ref(kind, ns, name))["metadata"].get("annotations") or {}
        if ledger.ANNOTATION in annotations:
            found[f"{kind}/{name}"] = annotations[ledger.ANNOTATION]
    return found


def phase_is(ns: str, name: str, *phases: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (i := get_incident(ns, name)).get("status", {}).get("phase") in phases and i,
        timeout, f"{name} phase in {phases}",
    )  # fmt: skip


def states(incident: dict) -> dict[str, str]:
    return {m["key"]: m["state"] for m in (incident.get("status") or {}).get("mitigations") or []}


def conditions(incident: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (incident.get("status") or {}).get("conditions") or []}


def replicas(ns: str) -> int:
    return kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"]


def selector(ns: str) -> dict:
    return kube.get(Ref("Service", ns, "chat"))["spec"]["selector"]


def resolve(ns: str, name: str) -> None:
    kube.patch(Ref("AIIncident", ns, name), {"spec": {"resolution": {"requested": True}}})


# --- 1. RBAC: a forbidden action is a Failed entry, retried until granted ------------------


def chart_rules(ns: str) -> tuple[list[dict], list[dict]]:
    """(cluster rules, namespaced rules) as the chart renders them in rbac.namespaced mode."""
    if shutil.which("helm") is None:
        pytest.fail("helm is not on PATH: run 'make tools'", pytrace=False)
    out = subprocess.run(
        ["helm", "template", "r", str(CHART), "--namespace", SA_NAMESPACE,
         "--set", "rbac.namespaced=true", "--set", f"watchNamespaces={{{ns}}}",
         "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == ns]
    return cluster_role["rules"], role["rules"]


def deployment_verbs(rules: list[dict], verbs: list[str]) -> list[dict]:
    """RULES with the verbs on apps/deployments replaced by VERBS."""
    out = []
    for rule in copy.deepcopy(rules):  # the chart grants reads and writes in separate rules
        if "apps" in rule.get("apiGroups", []) and "deployments" in rule.get("resources", []):
            rule["resources"] = [r for r in rule["resources"] if r != "deployments"]
            if not rule["resources"]:
                continue
        out.append(rule)
    found = [
        r for r in rules if "apps" in r.get("apiGroups", []) and "deployments" in r["resources"]
    ]
    assert found and {"update"} <= {v for r in found for v in r["verbs"]}, found
    return [*out, {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs}]


def can_i(verb: str, resource: str, ns: str) -> bool:
    result = kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", SA_USER, check=False)
    return result.stdout.strip() == "yes"


@dataclass
class ChartIdentity:
    """The operator's ServiceAccount with the chart's cluster rules and, in NS, a Role
    whose Deployment verbs a test sets (`deployments`)."""

    kubeconfig: Path
    namespace: str
    name: str
    ns_rules: list[dict]

    def deployments(self, verbs: list[str]) -> None:
        rules = deployment_verbs(self.ns_rules, verbs)
        kubernetes.client.RbacAuthorizationV1Api().patch_namespaced_role(
            self.name, self.namespace, {"rules": rules}
        )


@contextlib.contextmanager
def chart_identity(
    ns: str, local_cluster, tmp_path: Path, label: str, verbs: list[str]
) -> Iterator[ChartIdentity]:
    """Run as the chart's ServiceAccount, allowed VERBS on Deployments in NS; removed after."""
    if local_cluster is None:  # another cluster: a real ServiceAccount to ask a token for
        for kind, args in (("namespace", []), ("serviceaccount", ["-n", SA_NAMESPACE])):
            made = kubectl("create", kind, *args, SA_NAMESPACE if kind == "namespace" else SA_NAME,
                           "--dry-run=client", "-o", "json")  # fmt: skip
            kubectl("apply", "-f", "-", input=made.stdout)
    kubeconfig = sa_kubeconfig(local_cluster, SA_NAMESPACE, SA_NAME, tmp_path / "sa-kubeconfig")
    cluster_rules, ns_rules = chart_rules(ns)
    name = f"aiincident-{label}-{ns}"
    subjects = [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}]
    rbac = kubernetes.client.RbacAuthorizationV1Api()
    role_ref = {"apiGroup": "rbac.authorization.k8s.io", "name": name}
    rbac.create_cluster_role({"metadata": {"name": name}, "rules": cluster_rules})
    try:
        rbac.create_cluster_role_binding(
            {"metadata": {"name": name}, "roleRef": {**role_ref, "kind": "ClusterRole"},
             "subjects": subjects}
        )  # fmt: skip
        rbac.create_namespaced_role(
            ns, {"metadata": {"name": name}, "rules": deployment_verbs(ns_rules, verbs)}
        )
        rbac.create_namespaced_role_binding(
            ns, {"metadata": {"name": name}, "roleRef": {**role_ref, "kind": "Role"},
                 "subjects": subjects},
        )  # fmt: skip
        wait_for(lambda: can_i("get", "deployments", ns), 10, "the Role to take effect")
        yield ChartIdentity(kubeconfig, ns, name, ns_rules)
    finally:
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(name)
            except kubernetes.client.ApiException as err:
                if err.status != 404:
                    raise


def test_forbidden_action_fails_alone_then_applies_once_granted(
    solo_namespace, local_cluster, tmp_path
):
    ns = solo_namespace
    assert not can_i("update", "deployments", ns), "something else already grants the right"
    with chart_identity(ns, local_cluster, tmp_path, "engine", READ) as identity:
        kubeconfig = identity.kubeconfig
        assert not can_i("update", "deployments", ns) and not can_i("patch", "deployments", ns)
        assert can_i("update", "services", ns)

        setup_model(ns, policy(SHIFT, SCALE))
        proc = OperatorProcess(
            "engine-rbac",
            "--namespace", ns,
            env={
                "KUBECONFIG": str(kubeconfig),
                "AIINCIDENT_NAMESPACE": ns,  # kopf's Events about cluster-scoped objects
                "AIINCIDENT_RESYNC_SECONDS": "2",
            },
        ).start()  # fmt: skip
        try:
            wait_for(lambda: policy_ready(ns), 20, f"policy Ready (log: {proc.log_path})")
            create_incident(
                ns, "denied",
                {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}},
            )  # fmt: skip
            incident = wait_for(
                lambda: (
                    (i := get_incident(ns, "denied"))
                    and states(i).get("ScaleToZero") == "Failed"
                    and i
                ),
                30,
                f"ScaleToZero Failed (log: {proc.log_path})",
            )
            assert proc.proc.poll() is None, "the operator crashed on a 403"
            assert states(incident) == {
                "TrafficShift:Service/chat": "Applied",
                "ScaleToZero": "Failed",
            }, incident["status"]
            failed = next(m for m in incident["status"]["mitigations"] if m["key"] == "ScaleToZero")
            assert "403" in failed["message"], failed
            assert "forbidden" in failed["message"].lower(), failed
            assert selector(ns) == {"app": "chat-fallback"}
            assert replicas(ns) == 3
            mitigated = conditions(incident)["Mitigated"]
            assert (mitigated["status"], mitigated["reason"]) == ("False", "ActionFailed")
            assert incident["status"]["phase"] == "Mitigating"

            identity.deployments(WRITE)
            wait_for(lambda: can_i("update", "deployments", ns), 10, "the grant to take effect")
            started = time.monotonic()
            incident = wait_for(
                lambda: (
                    (i := get_incident(ns, "denied"))
                    and states(i).get("ScaleToZero") == "Applied"
                    and i
                ),
                65,  # backoff is capped at 60 s
                f"ScaleToZero Applied after the grant (log: {proc.log_path})",
            )
            took = time.monotonic() - started
            assert replicas(ns) == 0
            incident = phase_is(ns, "denied", "Mitigated", timeout=10)
            assert states(incident) == {
                "TrafficShift:Service/chat": "Applied",
                "ScaleToZero": "Applied",
            }
            assert conditions(incident)["Mitigated"]["status"] == "True"
            print(f"ScaleToZero applied {took:.1f}s after update was granted")
        finally:
            proc.stop()


# --- 2. Killed after the first change; resolved or deleted while down ----------------------


@pytest.mark.parametrize("first", ["ScaleToZero", "TrafficShift"])
@pytest.mark.parametrize("while_down", ["resolve", "delete"])
def test_change_before_a_crash_is_undone_when_resolved_or_deleted_while_down(
    solo_namespace, first, while_down
):
    ns = solo_namespace
    actions = [SCALE, SHIFT] if first == "ScaleToZero" else [SHIFT, SCALE]
    crashing = OperatorProcess(
        f"engine-crash-{while_down}-{first}",
        "--namespace", ns,
        env={**OPERATOR_ENV, "AIINCIDENT_FAILPOINTS": "after-apply"},
    ).start()  # fmt: skip
    restarted = None
    try:
        setup_model(ns, policy(*actions))
        wait_for(lambda: policy_ready(ns), 20, f"policy Ready (log: {crashing.log_path})")
        before = snapshot(ns)
        create_incident(
            ns, "k", {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}}
        )
        wait_for(
            lambda: crashing.proc.poll() is not None, 30, "the operator to die at the failpoint"
        )
        assert crashing.proc.returncode == 137, crashing.log_tail()

        # The first change landed with its ledger; the second did not; the status knows nothing.
        assert not (get_incident(ns, "k").get("status") or {}).get("mitigations")
        holders = {
            ref: ledger.holders(kube.get(_ref(ns, ref)))
            for ref in ("Deployment/chat-llm", "Service/chat")
        }
        if first == "ScaleToZero":
            assert replicas(ns) == 0 and selector(ns) == {"app": "chat-llm"}
            assert holders == {"Deployment/chat-llm": [(f"{ns}/k", "ScaleToZero")],
                               "Service/chat": []}  # fmt: skip
        else:
            assert selector(ns) == {"app": "chat-fallback"} and replicas(ns) == 3
            assert holders == {"Deployment/chat-llm": [],
                               "Service/chat": [(f"{ns}/k", "TrafficShift:Service/chat")]}  # fmt: skip

        if while_down == "resolve":
            resolve(ns, "k")
        else:
            kubectl("delete", "aiincident", "k", "-n", ns, "--wait=false")
            body = get_incident(ns, "k")  # the finalizer holds it
            assert body["metadata"].get("deletionTimestamp"), body["metadata"]

        restarted = OperatorProcess(
            f"engine-restart-{while_down}-{first}", "--namespace", ns, env=OPERATOR_ENV
        ).start()
        if while_down == "resolve":
            incident = phase_is(ns, "k", "Resolved")
            assert set(states(incident).values()) == {"Reverted"}, incident["status"]
        else:
            wait_for(
                lambda: kube.get(Ref("AIIncident", ns, "k")) is None,
                30,
                f"the incident to be gone (log: {restarted.log_path})",
            )
        assert ledger_annotations(ns) == {}
        assert snapshot(ns) == before
    finally:
        crashing.kill()
        if restarted is not None:
            restarted.stop()


def _ref(ns: str, kind_name: str) -> Ref:
    kind, _, name = kind_name.partition("/")
    return Ref(kind, ns, name)


# --- 3. Eight incidents on one Deployment, deleted at once --------------------------------


def test_eight_incidents_deleted_at_once_give_the_target_back_exactly(namespace, operator):
    ns = namespace
    setup_model(ns, policy(SCALE))
    wait_for(lambda: policy_ready(ns), 20, "policy Ready")
    before = snapshot(ns)
    names = [f"i{n}" for n in range(len(CATEGORIES))]
    for name, category in zip(names, CATEGORIES, strict=True):
        create_incident(
            ns, name, {"category": category, "severity": 1, "target": {"name": "chat-llm"}}
        )
    for name in names:
        incident = phase_is(ns, name, "Mitigated", timeout=40)
        assert states(incident) == {"ScaleToZero": "Applied"}, incident["status"]
    deploy = kube.get(Ref("Deployment", ns, "chat-llm"))
    assert deploy["spec"]["replicas"] == 0
    assert sorted(ledger.holders(deploy)) == sorted((f"{ns}/{n}", "ScaleToZero") for n in names)

    started = time.monotonic()
    kubectl("delete", "aiincident", "-n", ns, "--wait=false", *names)
    try:
        wait_for(lambda: not kube.list_objects("AIIncident", ns), 45, "every incident to be gone")
    except AssertionError:
        left = [(i["metadata"]["name"], i["metadata"].get("deletionTimestamp"),
                 i["metadata"].get("finalizers"), states(i)) for i in kube.list_objects("AIIncident", ns)]  # fmt: skip
        deploy = kube.get(Ref("Deployment", ns, "chat-llm"))
        raise AssertionError(
            f"incidents left after 45s: {left}; Deployment replicas "
            f"{deploy['spec']['replicas']}, holders {ledger.holders(deploy)} "
            f"(log: {operator.log_path})"
        ) from None
    took = time.monotonic() - started
    deploy = kube.get(Ref("Deployment", ns, "chat-llm"))
    assert ledger.holders(deploy) == []
    assert ledger_annotations(ns) == {}
    assert snapshot(ns) == before
    print(f"eight incidents deleted and undone in {took:.1f}s")


# --- 4. The ledger annotation removed by hand mid-incident ---------------------------------


def test_ledger_annotation_removed_mid_incident_still_restores_exactly(namespace, operator):
    ns = namespace
    setup_model(ns, policy(CONSERVATIVE, SHIFT, SCALE, severity=2))
    wait_for(lambda: policy_ready(ns), 20, "policy Ready")
    before = snapshot(ns)
    create_incident(
        ns, "lost",
        {"category": "AccuracyDegradation", "severity": 2, "target": {"name": "chat-llm"}},
    )  # fmt: skip
    incident = phase_is(ns, "lost", "Mitigated")
    assert states(incident) == {
        "ConservativeConfig:llm": "Applied",
        "TrafficShift:Service/chat": "Applied",
        "ScaleToZero": "Applied",
    }, incident["status"]
    container = kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["env"] == [{"name": "TEMPERATURE", "value": "0"}]
    assert replicas(ns) == 0 and selector(ns) == {"app": "chat-fallback"}

    kubectl("annotate", "-n", ns, "deployment/chat-llm", f"{ledger.ANNOTATION}-")
    kubectl("annotate", "-n", ns, "service/chat", f"{ledger.ANNOTATION}-")
    assert ledger_annotations(ns) == {}
    time.sleep(5)  # two and a half resync periods (AIINCIDENT_RESYNC_SECONDS=2)
    assert get_incident(ns, "lost")["status"]["phase"] == "Mitigated"
    assert replicas(ns) == 0 and selector(ns) == {"app": "chat-fallback"}

    resolve(ns, "lost")
    incident = phase_is(ns, "lost", "Resolved")
    assert set(states(incident).values()) == {"Reverted"}, incident["status"]
    after = snapshot(ns)
    assert after["chat-llm"]["spec"]["replicas"] == 3
    assert "env" not in after["chat-llm"]["spec"]["template"]["spec"]["containers"][0]
    assert after["chat"]["spec"]["selector"] == {"app": "chat-llm"}
    assert ledger_annotations(ns) == {}
    assert after == before


# --- The failure and retry path of undo (issue 12, item 17) --------------------


def _undo_failed(ns: str, name: str) -> dict | None:
    incident = get_incident(ns, name)
    resolved = conditions(incident).get("Resolved") or {}
    return incident if resolved.get("reason") == "UndoFailed" else None


def test_undo_refused_is_undo_failed_then_retried_until_granted(
    solo_namespace, local_cluster, tmp_path
):
    ns = solo_namespace
    with chart_identity(ns, local_cluster, tmp_path, "undo", WRITE) as identity:
        kubeconfig = identity.kubeconfig
        wait_for(lambda: can_i("update", "deployments", ns), 10, "the Role to take effect")

        setup_model(ns, policy(SHIFT, SCALE))
        before = snapshot(ns)
        proc = OperatorProcess(
            "undo-rbac",
            "--namespace", ns,
            env={"KUBECONFIG": str(kubeconfig), "AIINCIDENT_NAMESPACE": ns,
                 "AIINCIDENT_RESYNC_SECONDS": "2"},
        ).start()  # fmt: skip
        try:
            wait_for(lambda: policy_ready(ns), 20, f"policy Ready (log: {proc.log_path})")
            create_incident(
                ns, "stuck",
                {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}},
            )  # fmt: skip
            phase_is(ns, "stuck", "Mitigated")
            assert replicas(ns) == 0 and selector(ns) == {"app": "chat-fallback"}

            # The right to write Deployments goes; then a person resolves.
            identity.deployments(READ)
            wait_for(lambda: not can_i("update", "deployments", ns), 10, "the revoke")
            resolve(ns, "stuck")
            incident = wait_for(lambda: _undo_failed(ns, "stuck"), 30,
                                f"Resolved=False/UndoFailed (log: {proc.log_path})")  # fmt: skip
            assert proc.proc.poll() is None, "the operator crashed on a 403"
            refused = conditions(incident)["Resolved"]
            assert refused["status"] == "False"
            assert "ScaleToZero on Deployment/chat-llm" in refused["message"], refused
            assert "403" in refused["message"] or "forbidden" in refused["message"].lower()
            assert incident["status"]["phase"] == "Resolving"
            # Nothing was given back: capacity could not be restored, so traffic stays.
            assert states(incident) == {
                "TrafficShift:Service/chat": "Applied",
                "ScaleToZero": "Applied",
            }, incident["status"]["mitigations"]
            assert replicas(ns) == 0 and selector(ns) == {"app": "chat-fallback"}
            # Still so a few retries later (no partial undo, no give-up).
            time.sleep(5)
            assert _undo_failed(ns, "stuck") is not None and replicas(ns) == 0
            assert selector(ns) == {"app": "chat-fallback"}

            identity.deployments(WRITE)
            wait_for(lambda: can_i("update", "deployments", ns), 10, "the grant")
            incident = phase_is(ns, "stuck", "Resolved", timeout=90)  # backoff is capped at 60 s
            assert states(incident) == {
                "TrafficShift:Service/chat": "Reverted",
                "ScaleToZero": "Reverted",
            }
            assert conditions(incident)["Resolved"]["status"] == "True"
            assert snapshot(ns) == before  # exact: replicas, selector, no ledger left
            types = [t["type"] for t in incident["status"]["timeline"]]
            assert types.index("Resolving") < types.index("MitigationReverted")
        finally:
            proc.stop()
