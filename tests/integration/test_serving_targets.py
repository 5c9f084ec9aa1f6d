"""Model-serving targets end to end (issue 13): StatefulSet, Argo Rollout, LeaderWorkerSet,
KServe InferenceService and LLMInferenceService, on their real upstream CRDs.

For each kind a severity-1 incident takes the model offline the way its project
documents (replicas 0; KServe's `serving.kserve.io/stop: "true"`), a fix ships while
the incident is open (a new image, a new storageUri), and resolution restores every
field the operator touched byte for byte while the fix stays. GuardrailSidecar and
ConservativeConfig change each kind's pod templates (a LeaderWorkerSet's leader and
worker, a KServe predictor's model container) and are undone exactly. No KServe, LWS
or Argo controller runs here: `controllers.Controllers` writes their status as they
would, and the kube-controller-manager runs the StatefulSets.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_incident_operator import kube, ledger
from ai_incident_operator.kube import Ref

import kubelet
from alertkit import Webhook, am_alert, am_payload
from controllers import Controllers
from kit import create_incident, get_incident, policy_body, spec_snapshot, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "serving"}
STOP = "serving.kserve.io/stop"
GUARD = {"name": "guardrail", "image": "registry.local/guardrail:1.4",
         "ports": [{"containerPort": 8081, "name": "guard"}]}  # fmt: skip
SAFER = {"TEMPERATURE": "0", "MAX_TOKENS": "256"}
Body = dict[str, Any]


@pytest.fixture
def served(namespace: str) -> Iterator[Controllers]:
    """The KServe, LWS and Argo controllers' status part, in the test's namespace."""
    with Controllers(namespace) as ctl:
        yield ctl


# --- The workloads, shaped as their projects' samples (../shared/thirdparty-crds/samples) ----


def statefulset(name: str, image: str = "registry.local/llm:v42") -> Body:
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": 2, "serviceName": name, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "llm", "image": image}]}},
        },
    }  # fmt: skip


def rollout(name: str, image: str = "vllm/vllm-openai:v0.11.0") -> Body:
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": 2, "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "server", "image": image,
                                                  "ports": [{"containerPort": 8000}]}]}},
            "strategy": {"canary": {"maxSurge": "25%", "maxUnavailable": 0,
                                    "steps": [{"setWeight": 20}, {"pause": {}}]}},
        },
    }  # fmt: skip


def leaderworkerset(name: str, image: str = "vllm/vllm-openai:v0.11.0") -> Body:
    def pod(role: str, args: list[str]) -> Body:
        return {"metadata": {"labels": {"role": role}},
                "spec": {"containers": [{"name": "vllm", "image": image, "args": args,
                                         "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}  # fmt: skip

    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "replicas": 2, "startupPolicy": "LeaderReady",
            "leaderWorkerTemplate": {
                "size": 2, "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod("leader", ["--tensor-parallel-size=8"]),
                "workerTemplate": pod("worker", ["--worker"]),
            },
        },
    }  # fmt: skip


def inferenceservice(name: str, uri: str = "hf://meta-llama/Llama-3.1-8B-Instruct") -> Body:
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "labels": LABELS,
                     "annotations": {"serving.kserve.io/deploymentMode": "Serverless",
                                     STOP: "false"}},
        "spec": {"predictor": {
            "minReplicas": 1, "maxReplicas": 4, "scaleMetric": "concurrency", "scaleTarget": 8,
            "model": {"modelFormat": {"name": "huggingface"}, "runtime": "kserve-huggingfaceserver",
                      "storageUri": uri, "args": ["--max-model-len=8192"]},
        }},
    }  # fmt: skip


def llminferenceservice(name: str, image: str = "vllm/vllm-openai:v0.11.0") -> Body:
    # No stop annotation at all: undo must remove it, not leave "false" behind.
    return {
        "apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
        "metadata": {"name": name, "labels": LABELS},
        "spec": {
            "model": {"uri": "hf://meta-llama/Llama-3.1-8B-Instruct",
                      "name": "meta-llama/Llama-3.1-8B-Instruct"},
            "replicas": 2,
            "template": {"containers": [{"name": "main", "image": image,
                                         "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        },
    }  # fmt: skip


def _image(path: list[str | int]) -> Callable[[Body, str], None]:
    def ship(obj: Body, value: str) -> None:
        node: Any = obj
        for key in path:
            node = node[key]
        node["image"] = value

    return ship


def _set_uri(obj: Body, value: str) -> None:
    obj["spec"]["predictor"]["model"]["storageUri"] = value


def _set_lws_images(obj: Body, value: str) -> None:
    for role in ("leaderTemplate", "workerTemplate"):
        obj["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"][0]["image"] = value


# kind -> (the workload, how a fix ships, the fix, whether it is offline)
KINDS: dict[str, tuple[Callable[[str], Body], Callable[[Body, str], None], str,
                       Callable[[Body], bool]]] = {
    "StatefulSet": (statefulset, _image(["spec", "template", "spec", "containers", 0]),
                    "registry.local/llm:v43", lambda o: o["spec"]["replicas"] == 0),
    "Rollout": (rollout, _image(["spec", "template", "spec", "containers", 0]),
                "vllm/vllm-openai:v0.11.1", lambda o: o["spec"]["replicas"] == 0),
    "LeaderWorkerSet": (leaderworkerset, _set_lws_images, "vllm/vllm-openai:v0.11.1",
                        lambda o: o["spec"]["replicas"] == 0),
    "InferenceService": (inferenceservice, _set_uri, "hf://meta-llama/Llama-3.1-8B-Instruct-v2",
                         lambda o: o["metadata"]["annotations"][STOP] == "true"),
    "LLMInferenceService": (llminferenceservice, _image(["spec", "template", "containers", 0]),
                            "vllm/vllm-openai:v0.11.1",
                            lambda o: (o["metadata"].get("annotations") or {}).get(STOP) == "true"),
}  # fmt: skip


# --- Helpers -------------------------------------------------------------------------------


def make_policy(ns: str, responses: list[Body], **spec: Any) -> None:
    body = {"targetSelector": {"matchLabels": LABELS}, "responses": responses, **spec}
    kube.create("MitigationPolicy", ns, policy_body("serving", body))

    def ready() -> dict | None:
        status = (kube.get(Ref("MitigationPolicy", ns, "serving")) or {}).get("status") or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "Ready"]
        assert not found or found[0]["status"] == "True", found
        return found[0] if found else None

    wait_for(ready, 30, "policy Ready")


def snapshot(kind: str, ns: str, name: str) -> Body:
    return spec_snapshot(kube.get(Ref(kind, ns, name)))


def phase_is(ns: str, name: str, phase: str, timeout: float = 30) -> Body:
    try:
        return wait_for(
            lambda: (i := get_incident(ns, name)).get("status", {}).get("phase") == phase and i,
            timeout, f"incident {name} {phase}",
        )  # fmt: skip
    except AssertionError as err:  # say why: the conditions and the entries
        status = get_incident(ns, name).get("status") or {}
        said = {k: status.get(k) for k in ("phase", "conditions", "mitigations")}
        raise AssertionError(f"{err}; status: {said}") from None


def resolve(ns: str, name: str, timeout: float = 60) -> Body:
    kube.patch(Ref("AIIncident", ns, name), {"spec": {"resolution": {"requested": True}}})
    return phase_is(ns, name, "Resolved", timeout)


def ship(kind: str, ns: str, name: str, change: Callable[[Body, str], None], value: str) -> None:
    """A person ships a fix while the incident is open (as `kubectl edit` would)."""
    kube.update(Ref(kind, ns, name), lambda obj: change(obj, value) or True)


def containers(obj: Body, path: list[str]) -> dict[str, Body]:
    node: Any = obj
    for key in path:
        node = node[key]
    return {c["name"]: c for c in node}


# --- ScaleToZero on every kind -------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_severity1_takes_each_kind_offline_and_resolution_restores_it_exactly(
    namespace, operator, served, kind
):
    ns, name = namespace, f"model-{kind.lower()}"
    make, change, fix, offline = KINDS[kind]
    kube.create(kind, ns, make(name))
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    before = snapshot(kind, ns, name)
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "target": {"kind": kind, "name": name}})  # fmt: skip

    incident = phase_is(ns, "harm", "Mitigated")
    status = incident["status"]
    assert status["targets"] == [{"kind": kind, "namespace": ns, "name": name}]
    (entry,) = status["mitigations"]
    assert (entry["action"], entry["state"], entry["target"]) == (
        "ScaleToZero", "Applied", f"{kind}/{name}",
    )  # fmt: skip
    obj = kube.get(Ref(kind, ns, name))
    assert offline(obj), obj["spec"]
    assert ledger.holders(obj) == [(f"{ns}/harm", "ScaleToZero")]

    # The fix ships while the model is offline.
    ship(kind, ns, name, change, fix)
    resolve(ns, "harm")
    expected = copy.deepcopy(before)
    change(expected, fix)
    assert snapshot(kind, ns, name) == expected


def test_statefulset_traffic_waits_until_its_pods_are_ready(namespace, operator):
    """The StatefulSet controller (kube-controller-manager) counts readyReplicas from its
    Pods; held Pending, resolution waits for them, as it does for a Deployment."""
    ns = namespace
    kubelet.hold(ns)
    kube.create("StatefulSet", ns, statefulset("vllm"))
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    before = snapshot("StatefulSet", ns, "vllm")
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "target": {"kind": "StatefulSet", "name": "vllm"}})  # fmt: skip
    phase_is(ns, "harm", "Mitigated")
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})

    def waiting() -> Body | None:
        conditions = get_incident(ns, "harm").get("status", {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "Resolved"), {})
        # Its controller takes the new replica count in, then counts ready Pods: either
        # is a reason to wait, in the words of `workloads`.
        named = "StatefulSet/vllm: " in found.get("message", "")
        return found if found.get("reason") == "WaitingForReady" and named else None

    said = wait_for(waiting, 30, "waiting for the StatefulSet")
    assert said["message"].startswith("capacity restored, traffic stays on the fallback")
    wait_for(lambda: (kube.get(Ref("StatefulSet", ns, "vllm"))["status"].get("replicas") or 0) >= 1,
             30, "the controller made a Pod")  # fmt: skip
    said = waiting()
    assert said is not None and get_incident(ns, "harm")["status"]["phase"] == "Resolving", said

    # OrderedReady: the controller makes pod 1 only once pod 0 is Ready.
    def resolved() -> bool:
        kubelet.mark_ready(ns, "app=vllm")
        return get_incident(ns, "harm")["status"]["phase"] == "Resolved"

    wait_for(resolved, 60, "resolved once both pods are Ready")
    sts = kube.get(Ref("StatefulSet", ns, "vllm"))
    assert sts["status"]["readyReplicas"] == 2
    assert spec_snapshot(sts) == before


@pytest.mark.parametrize(
    "kind", ["InferenceService", "LLMInferenceService", "LeaderWorkerSet", "Rollout"]
)
def test_traffic_waits_until_a_restarted_model_of_any_kind_is_ready(
    namespace, operator, served, kind
):
    ns, name = namespace, "model"
    make = KINDS[kind][0]
    kube.create(kind, ns, make(name))
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "target": {"kind": kind, "name": name}})  # fmt: skip
    phase_is(ns, "harm", "Mitigated")
    served.hold(kind)  # the model loads: its controller has not reported it ready yet
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})

    def waiting() -> Body | None:
        conditions = get_incident(ns, "harm").get("status", {}).get("conditions") or []
        found = next((c for c in conditions if c["type"] == "Resolved"), {})
        return found if found.get("reason") == "WaitingForReady" else None

    said = wait_for(waiting, 30, f"waiting for the {kind}")
    assert f"{kind}/{name}" in said["message"]
    served.release(kind)
    phase_is(ns, "harm", "Resolved")


def test_keda_pauses_a_rollout_by_its_scale_target_kind(namespace, operator, served):
    ns = namespace
    kube.create("Rollout", ns, rollout("chat"))
    scaled = {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "chat"},
        "spec": {"scaleTargetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
                                    "name": "chat"},
                 "minReplicaCount": 1, "triggers": [{"type": "cpu", "metadata": {"value": "80"}}]},
    }  # fmt: skip
    kube.create("ScaledObject", ns, scaled)
    # A ScaledObject for a Deployment of the same name is not this Rollout's.
    other = copy.deepcopy(scaled)
    other["metadata"]["name"] = "chat-deployment"
    other["spec"]["scaleTargetRef"] = {"name": "chat"}
    kube.create("ScaledObject", ns, other)
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    before = {n: snapshot(k, ns, n2) for n, (k, n2) in
              {"so": ("ScaledObject", "chat"), "rollout": ("Rollout", "chat"),
               "other": ("ScaledObject", "chat-deployment")}.items()}  # fmt: skip
    create_incident(ns, "k", {"category": "HarmfulOutput", "severity": 1,
                              "target": {"kind": "Rollout", "name": "chat"}})  # fmt: skip
    entry = phase_is(ns, "k", "Mitigated")["status"]["mitigations"][0]
    assert entry["objects"] == ["ScaledObject/chat", "Rollout/chat"]
    paused = kube.get(Ref("ScaledObject", ns, "chat"))["metadata"]["annotations"]
    assert paused["autoscaling.keda.sh/paused-replicas"] == "0"
    assert "annotations" not in kube.get(Ref("ScaledObject", ns, "chat-deployment"))["metadata"]
    resolve(ns, "k")
    assert {n: snapshot(k, ns, n2) for n, (k, n2) in
            {"so": ("ScaledObject", "chat"), "rollout": ("Rollout", "chat"),
             "other": ("ScaledObject", "chat-deployment")}.items()} == before  # fmt: skip


# --- GuardrailSidecar and ConservativeConfig on pod templates ------------------------------

TEMPLATE_RESPONSE = {"severity": 2, "actions": [
    {"type": "ConservativeConfig", "container": "CONTAINER", "env": SAFER},
    {"type": "GuardrailSidecar", "container": GUARD},
]}  # fmt: skip


def _template_response(container: str) -> list[Body]:
    response = copy.deepcopy(TEMPLATE_RESPONSE)
    response["actions"][0]["container"] = container
    return [response]


def _env(container: Body) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def test_leaderworkerset_config_on_both_templates_and_sidecar_on_the_leader(
    namespace, operator, served
):
    ns = namespace
    kube.create("LeaderWorkerSet", ns, leaderworkerset("vllm"))
    make_policy(ns, _template_response("vllm"))
    before = snapshot("LeaderWorkerSet", ns, "vllm")
    create_incident(ns, "q", {"category": "AccuracyDegradation", "severity": 2,
                              "target": {"kind": "LeaderWorkerSet", "name": "vllm"}})  # fmt: skip
    incident = phase_is(ns, "q", "Mitigated")
    assert {(m["key"], m["state"]) for m in incident["status"]["mitigations"]} == {
        ("ConservativeConfig:vllm", "Applied"), ("GuardrailSidecar:guardrail", "Applied"),
    }  # fmt: skip
    lws = kube.get(Ref("LeaderWorkerSet", ns, "vllm"))
    templates = lws["spec"]["leaderWorkerTemplate"]
    leader = containers(templates, ["leaderTemplate", "spec", "containers"])
    worker = containers(templates, ["workerTemplate", "spec", "containers"])
    assert _env(leader["vllm"]) == SAFER and _env(worker["vllm"]) == SAFER
    # The guardrail filters requests: it goes where they arrive, the leader, only.
    assert set(leader) == {"vllm", "guardrail"} and set(worker) == {"vllm"}
    assert leader["guardrail"]["image"] == GUARD["image"]
    assert leader["guardrail"]["ports"][0]["protocol"] == "TCP"  # as the apiserver stores it

    # A new image ships meanwhile, in both templates: it stays.
    ship("LeaderWorkerSet", ns, "vllm", _set_lws_images, "vllm/vllm-openai:v0.11.1")
    resolve(ns, "q")
    expected = copy.deepcopy(before)
    _set_lws_images(expected, "vllm/vllm-openai:v0.11.1")
    assert snapshot("LeaderWorkerSet", ns, "vllm") == expected


def test_inferenceservice_config_on_the_model_container_and_sidecar_on_the_predictor(
    namespace, operator, served
):
    ns = namespace
    kube.create("InferenceService", ns, inferenceservice("llama"))
    make_policy(ns, _template_response("kserve-container"))
    before = snapshot("InferenceService", ns, "llama")
    create_incident(ns, "q", {"category": "AccuracyDegradation", "severity": 2,
                              "target": {"kind": "InferenceService", "name": "llama"}})  # fmt: skip
    phase_is(ns, "q", "Mitigated")
    predictor = kube.get(Ref("InferenceService", ns, "llama"))["spec"]["predictor"]
    assert _env(predictor["model"]) == SAFER
    assert [c["name"] for c in predictor["containers"]] == ["guardrail"]
    assert predictor["model"]["storageUri"] == "hf://meta-llama/Llama-3.1-8B-Instruct"

    ship("InferenceService", ns, "llama", _set_uri, "hf://meta-llama/Llama-3.1-8B-Instruct-v2")
    resolve(ns, "q")
    expected = copy.deepcopy(before)
    _set_uri(expected, "hf://meta-llama/Llama-3.1-8B-Instruct-v2")
    assert snapshot("InferenceService", ns, "llama") == expected


@pytest.mark.parametrize(
    ("kind", "container", "pod"),
    [("Rollout", "server", ["spec", "template", "spec", "containers"]),
     ("LLMInferenceService", "main", ["spec", "template", "containers"]),
     ("StatefulSet", "llm", ["spec", "template", "spec", "containers"])],
)  # fmt: skip
def test_config_and_sidecar_on_the_other_kinds_pod_templates(
    namespace, operator, served, kind, container, pod
):
    ns, name = namespace, "model"
    make, change, fix, _ = KINDS[kind]
    kube.create(kind, ns, make(name))
    make_policy(ns, _template_response(container))
    before = snapshot(kind, ns, name)
    create_incident(ns, "q", {"category": "AccuracyDegradation", "severity": 2,
                              "target": {"kind": kind, "name": name}})  # fmt: skip
    phase_is(ns, "q", "Mitigated")
    found = containers(kube.get(Ref(kind, ns, name)), pod)
    assert list(found) == [container, "guardrail"]
    assert _env(found[container]) == SAFER
    ship(kind, ns, name, change, fix)
    resolve(ns, "q")
    expected = copy.deepcopy(before)
    change(expected, fix)
    assert snapshot(kind, ns, name) == expected


# --- Repair: a reverted mitigation on a new kind is put back at once -----------------------


def test_a_reverted_stop_on_an_inferenceservice_is_repaired(namespace, operator, served):
    ns = namespace
    kube.create("InferenceService", ns, inferenceservice("llama"))
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "target": {"kind": "InferenceService", "name": "llama"}})  # fmt: skip
    phase_is(ns, "harm", "Mitigated")
    # A GitOps sync (or a person) puts the model back up while the incident is open.
    kube.patch(Ref("InferenceService", ns, "llama"), {"metadata": {"annotations": {STOP: "false"}}})
    wait_for(
        lambda: kube.get(Ref("InferenceService", ns, "llama"))["metadata"]["annotations"][STOP]
        == "true",
        20, "the stop put back",
    )  # fmt: skip


# --- Intake: an alert names an InferenceService ---------------------------------------------


def test_an_alert_labelled_inferenceservice_opens_an_incident_on_it(intake, intake_namespace):
    ns = intake_namespace
    with Controllers(ns):
        kube.create("InferenceService", ns, inferenceservice("llama-chat"))
        make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
                    triage={"defaultSeverity": 3, "rules": [
                        {"when": {"alertLabels": {"severity": "critical"}}, "severity": 1}]})  # fmt: skip
        alert = am_alert(namespace=ns, inferenceservice="llama-chat", severity="critical",
                         ai_incident_category="HarmfulOutput")  # fmt: skip
        reply = Webhook.of(intake).post(am_payload(alert))
        assert reply.status == 200, reply.body
        (delivered,) = reply.body["incidents"]
        assert delivered["result"] == "created" and delivered["namespace"] == ns
        incident = phase_is(ns, delivered["name"], "Mitigated")
        assert incident["spec"]["target"] == {"kind": "InferenceService", "name": "llama-chat"}
        assert incident["status"]["mitigations"][0]["target"] == "InferenceService/llama-chat"
        isvc = kube.get(Ref("InferenceService", ns, "llama-chat"))
        assert isvc["metadata"]["annotations"][STOP] == "true"


# --- Investigation: what was serving, and the change before the incident -------------------

# kind -> what the model-version section and the DeploymentChange hypothesis must name once
# the fix of KINDS shipped before the incident (the workload's second version).
HISTORY = {
    "StatefulSet": ("ControllerRevision/", "image changed registry.local/llm:v42 -> registry.local/llm:v43"),
    "Rollout": ("ReplicaSet/", "image changed vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1"),
    "LeaderWorkerSet": ("ControllerRevision/", "rolled out revision 2"),
    "InferenceService": ("predictor-00002", "rolled out revision 2"),
    "LLMInferenceService": ("the current spec", "rolled out revision 2"),
}  # fmt: skip


def recorded(kind: str, ns: str, name: str) -> int:
    """The version number KIND's controller has recorded for NAME so far."""
    obj = kube.get(Ref(kind, ns, name))
    if kind in ("InferenceService", "LLMInferenceService"):
        predictor = ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}
        if kind == "InferenceService":
            return int((predictor.get("latestReadyRevision") or "-0").rpartition("-")[2])
        seen = (obj.get("status") or {}).get("observedGeneration")
        return obj["metadata"]["generation"] if seen == obj["metadata"]["generation"] else 0
    if kind == "Rollout":
        found = kube.list_objects("ReplicaSet", ns, "app=model")
        return max((int(rs["metadata"]["annotations"]["rollout.argoproj.io/revision"])
                    for rs in found), default=0)  # fmt: skip
    selector = (
        "leaderworkerset.sigs.k8s.io/name=model" if kind == "LeaderWorkerSet" else "app=model"
    )
    return max((r["revision"] for r in kube.list_objects("ControllerRevision", ns, selector)),
               default=0)  # fmt: skip


@pytest.mark.parametrize("kind", list(KINDS))
def test_evidence_shows_each_kind_before_mitigation_and_its_last_change(
    namespace, operator, served, kind
):
    ns, name = namespace, "model"
    make, change, fix, _ = KINDS[kind]
    kube.create(kind, ns, make(name))
    make_policy(ns, [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}])
    # The change that caused it ships first (a new image, a new storageUri); its controller
    # records the new version (a ReplicaSet, a ControllerRevision, a predictor revision).
    if kind == "StatefulSet":
        wait_for(lambda: len(kube.list_objects("ControllerRevision", ns, "app=model")) == 1, 30,
                 "the first ControllerRevision")  # fmt: skip
    ship(kind, ns, name, change, fix)
    wait_for(lambda: recorded(kind, ns, name) == 2, 30, f"{kind}'s controller recorded the change")
    before = kube.get(Ref(kind, ns, name))
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "target": {"kind": kind, "name": name}})  # fmt: skip
    phase_is(ns, "harm", "Mitigated")
    status = wait_for(
        lambda: (s := get_incident(ns, "harm")["status"]).get("hypotheses") and s, 30, "hypotheses"
    )  # fmt: skip
    data = kube.get(Ref("ConfigMap", ns, status["evidenceRef"]["name"]))["data"]

    # targets.yaml: the workload as it served, not as the mitigation left it.
    (doc,) = list(yaml.safe_load_all(data["targets.yaml"]))
    assert doc["target"] == f"{kind}/{name}"
    assert doc["object"]["spec"] == before["spec"]
    assert (doc["object"]["metadata"].get("annotations") or {}).get(STOP) != "true"
    section = data["model-version.md"]
    version, line = HISTORY[kind]
    assert f"## {kind}/{name}" in section and "Revision history" in section
    assert version in section, section
    assert fix in section, section
    cause = next(h for h in status["hypotheses"] if h["cause"] == "DeploymentChange")
    assert any(line in e and f"{kind}/{name}" in e for e in cause["evidence"]), cause


# --- The people's commands on every kind: simulate, report --target KIND/NAME ----------

AIINCIDENT = Path(sys.executable).parent / "aiincident"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIINCIDENT), *args], capture_output=True, text=True, timeout=60)


def simulate(tmp_path: Path, ns: str, target: dict) -> dict:
    policy = {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "serving", "namespace": ns},
        "spec": {"targetSelector": {"matchLabels": LABELS},
                 "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]},
    }  # fmt: skip
    incident = {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": "harm"},
        "spec": {"category": "HarmfulOutput", "severity": 1, "target": target},
    }  # fmt: skip
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    (tmp_path / "incident.yaml").write_text(yaml.safe_dump(incident))
    done = run("simulate", "--policy", str(tmp_path / "policy.yaml"),
               "--incident", str(tmp_path / "incident.yaml"), "-n", ns, "-o", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("kind", ["StatefulSet", "InferenceService", "LeaderWorkerSet"])
def test_simulate_names_each_target_by_its_kind(tmp_path, solo_namespace, kind):
    ns = solo_namespace
    kube.create(kind, ns, KINDS[kind][0]("model"))
    before = spec_snapshot(kube.get(Ref(kind, ns, "model")))

    by_name = simulate(tmp_path, ns, {"kind": kind, "name": "model"})
    assert by_name["targets"] == [f"{kind}/model"], by_name
    assert by_name["outcome"] == "WouldMitigate", by_name
    assert [s["target"] for s in by_name["steps"]] == [f"{kind}/model"]
    by_selector = simulate(tmp_path, ns, {"kind": kind, "selector": {"matchLabels": LABELS}})
    assert by_selector["targets"] == [f"{kind}/model"], by_selector
    assert spec_snapshot(kube.get(Ref(kind, ns, "model"))) == before  # nothing written


@pytest.mark.parametrize(
    ("target", "kind"),
    [("isvc/llama", "InferenceService"), ("InferenceService/llama", "InferenceService"),
     ("llminferenceservices.serving.kserve.io/llama", "LLMInferenceService"),
     ("lws/llama", "LeaderWorkerSet"), ("sts/llama", "StatefulSet"), ("ro/llama", "Rollout"),
     ("deployments/llama", "Deployment"), ("llama", "Deployment")],
)  # fmt: skip
def test_report_target_takes_kind_slash_name(solo_namespace, target, kind):
    ns = solo_namespace
    done = run("report", "-n", ns, "--target", target, "--category", "HarmfulOutput",
               "--reporter", "ticket SUP-1", "--description", "unsafe advice")  # fmt: skip
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    assert name.startswith("llama-harmfuloutput-"), name
    assert get_incident(ns, name)["spec"]["target"] == {"kind": kind, "name": "llama"}
    # Nothing of that name exists: the warning names the kind it looked for.
    assert f"warning: {kind} {ns}/llama not found" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("target", "said"),
    [("pods/llama", "'pods' is not a workload the operator can target"),
     ("isvc/Not A Name", "is not a InferenceService name")],
)  # fmt: skip
def test_report_refuses_a_target_that_is_not_a_workload(solo_namespace, target, said):
    done = run("report", "-n", solo_namespace, "--target", target, "--category", "Other",
               "--reporter", "r", "--description", "d")  # fmt: skip
    assert done.returncode == 1 and said in done.stderr, done.stderr
    assert kube.list_objects("AIIncident", solo_namespace) == []
