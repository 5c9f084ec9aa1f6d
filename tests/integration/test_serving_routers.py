"""TrafficShift through the model-serving routers, end to end with the session operator.

On the real upstream CRDs (../shared/thirdparty-crds: KServe InferenceService, Gateway API
HTTPRoute and Inference Extension InferencePool, Envoy AI Gateway AIGatewayRoute, Argo
Rollout; AIServiceBackend is a minimal stand-in CRD of ours): an incident shifts the traffic,
resolution gives it back (in steps where the router splits) and every router object is
restored byte for byte. No KServe, Argo or gateway controller runs here: where the
operator reads what a controller writes (a revision's name, the stable ReplicaSet), the
test writes that status as the controller would, and the objects otherwise sit still.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from ai_incident_operator import kube, ledger
from ai_incident_operator.bounds import FALLBACK_LABEL
from ai_incident_operator.fieldpath import get
from ai_incident_operator.kube import Ref
from ai_incident_operator.resources import KINDS

from controllers import Controllers
from kit import create_incident, deployment, get_incident, policy_body, spec_snapshot, wait_for

pytestmark = pytest.mark.integration
Body = dict[str, Any]
LABELS = {"app.kubernetes.io/part-of": "serving"}
POOL_GROUP = "inference.networking.k8s.io"
# AIServiceBackend (aigateway.envoyproxy.io) is not among the shared upstream CRDs. The
# router only reads one's name and labels, so a minimal CRD of our own stands in: the
# fields the tests set (spec.schema, spec.backendRef), the rest kept as given.
AISERVICEBACKEND_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "aiservicebackends.aigateway.envoyproxy.io"},
    "spec": {
        "group": "aigateway.envoyproxy.io",
        "scope": "Namespaced",
        "names": {"kind": "AIServiceBackend", "listKind": "AIServiceBackendList",
                  "plural": "aiservicebackends", "singular": "aiservicebackend"},
        "versions": [{
            "name": "v1beta1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                               "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }},
        }],
    },
}  # fmt: skip
# What the apiserver moves on every write; the rest must come back exactly.
VOLATILE = ("resourceVersion", "managedFields", "generation")


@pytest.fixture
def served(namespace: str) -> Iterator[Controllers]:
    """KServe's status part (observedGeneration, Ready, revisions and canary traffic), as
    tests/controllers.py plays it: resolution waits until the model is Ready again."""
    with Controllers(namespace) as ctl:
        yield ctl


@pytest.fixture(scope="module")
def aiservicebackends(cluster: Path) -> None:
    """A stand-in AIServiceBackend CRD (see AISERVICEBACKEND_CRD): the AIGatewayRoute
    router's fallback kind."""
    api = kubernetes.client.ApiextensionsV1Api()
    doc = AISERVICEBACKEND_CRD
    try:
        api.create_custom_resource_definition(doc)
    except kubernetes.client.ApiException as err:
        if err.status != 409:  # another module or run installed it
            raise

    def established() -> bool:
        conds = api.read_custom_resource_definition(doc["metadata"]["name"]).status.conditions
        return any(c.type == "Established" and c.status == "True" for c in conds or [])

    wait_for(established, 30, "the AIServiceBackend CRD to be established")


class Recorder:
    """Every value one field of one object takes, from a watch: a step of the undo that
    lasts one stepInterval is seen however slowly the test polls."""

    def __init__(self, kind: str, namespace: str, name: str, path: str) -> None:
        self.kind, self.namespace, self.name, self.path = KINDS[kind], namespace, name, path
        obj = kube.get(Ref(kind, namespace, name))
        assert obj is not None
        self.values: list[Any] = [get(obj, path)]
        self.errors: list[str] = []
        self._version = obj["metadata"]["resourceVersion"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        custom = kubernetes.client.CustomObjectsApi()
        while not self._stop.is_set():
            stream = kubernetes.watch.Watch().stream(
                custom.list_namespaced_custom_object, self.kind.group, self.kind.version,
                self.namespace, self.kind.plural, field_selector=f"metadata.name={self.name}",
                resource_version=self._version, timeout_seconds=5,
            )  # fmt: skip
            try:
                for event in stream:
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue  # a bookmark, an error: the next watch resumes from _version
                    obj = event["object"]
                    self._version = obj["metadata"]["resourceVersion"]
                    value = get(obj, self.path)
                    if value != self.values[-1]:
                        self.values.append(value)
            except (kubernetes.client.ApiException, OSError) as err:
                self.errors.append(repr(err))  # reconnects; a 410 would show in the values

    def stop(self) -> list[Any]:
        self._stop.set()
        self._thread.join(10)
        return self.values


def _stable(obj: Body | None) -> Body:
    """OBJ minus what the apiserver changes on every write (status kept)."""
    assert obj is not None
    obj = copy.deepcopy(obj)
    for field in VOLATILE:
        obj["metadata"].pop(field, None)
    return obj


def _create(kind: str, namespace: str, body: Body) -> Body:
    created = kube.create(kind, namespace, body)
    return kube.get(Ref(kind, namespace, created["metadata"]["name"])) or created


def _policy(namespace: str, name: str, action: Body, **extra: Any) -> None:
    spec = {"targetSelector": {"matchLabels": LABELS},
            "responses": [{"severity": 1, "actions": [action]}], **extra}  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body(name, spec))
    _ready("MitigationPolicy", namespace, name)


def _ready(kind: str, namespace: str, name: str) -> None:
    def ready() -> dict | None:
        conds = ((kube.get(Ref(kind, namespace, name)) or {}).get("status") or {}).get("conditions")
        cond = next((c for c in conds or [] if c["type"] == "Ready"), {})
        if cond.get("status") == "False":
            raise AssertionError(f"{kind} {name} not Ready: {cond.get('message')}")
        return cond if cond.get("status") == "True" else None

    wait_for(ready, 30, f"{kind} {name} Ready")


def _entry(namespace: str, incident: str) -> dict:
    mitigations = get_incident(namespace, incident).get("status", {}).get("mitigations") or []
    return next((m for m in mitigations if m["action"] == "TrafficShift"), {})


def _applied(namespace: str, incident: str) -> dict:
    def applied() -> dict | None:
        entry = _entry(namespace, incident)
        return entry if entry.get("state") == "Applied" else None

    return wait_for(applied, 30, f"TrafficShift Applied on {incident}")


def _resolve(namespace: str, incident: str) -> None:
    kube.patch(
        Ref("AIIncident", namespace, incident), {"spec": {"resolution": {"requested": True}}}
    )
    wait_for(
        lambda: get_incident(namespace, incident).get("status", {}).get("phase") == "Resolved",
        60,
        f"{incident} Resolved",
    )


def _incident(namespace: str, name: str, target: Body) -> None:
    create_incident(namespace, name, {"category": "HarmfulOutput", "severity": 1, "target": target})


# --- KServe: a canary sent back to the previous revision, given back in steps ---------------


def _isvc(namespace: str) -> Body:
    """An InferenceService with a canary in flight, as KServe reports it: revision 1 rolled
    out, then a new model as revision 2 with canaryTrafficPercent 20 (it takes 20%,
    revision 1 the rest)."""
    body = {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "llama-chat", "labels": LABELS,
                     "annotations": {"serving.kserve.io/deploymentMode": "Serverless"}},
        "spec": {"predictor": {
            "minReplicas": 1,
            "model": {"modelFormat": {"name": "huggingface"}, "runtime": "kserve-huggingfaceserver",
                      "storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct"},
        }},
    }  # fmt: skip
    ref = Ref("InferenceService", namespace, "llama-chat")
    _create("InferenceService", namespace, body)
    _revision(ref, "llama-chat-predictor-00001")

    def canary(obj: Body) -> bool:
        obj["spec"]["predictor"]["canaryTrafficPercent"] = 20
        obj["spec"]["predictor"]["model"]["storageUri"] += "-canary"
        return True

    kube.update(ref, canary)
    return _revision(ref, "llama-chat-predictor-00002")


def _revision(ref: Ref, latest: str) -> Body:
    """REF once KServe reports LATEST as its latest ready revision."""

    def seen() -> Body | None:
        obj = kube.get(ref) or {}
        status = obj.get("status") or {}
        done = status.get("observedGeneration") == obj["metadata"]["generation"]
        revision = get(obj, "/status/components/predictor/latestReadyRevision")
        return obj if done and revision == latest else None

    return wait_for(seen, 30, f"{ref} at revision {latest}")


def test_kserve_canary_goes_back_to_the_previous_revision_and_comes_back_in_steps(
    namespace, operator, served
):
    ns = namespace
    before = _isvc(ns)
    ref = Ref("InferenceService", ns, "llama-chat")
    assert [(t["revisionName"], t["percent"]) for t in before["status"]["components"]["predictor"]["traffic"]] == [
        ("llama-chat-predictor-00002", 20), ("llama-chat-predictor-00001", 80),
    ]  # fmt: skip
    _policy(ns, "kserve", {"type": "TrafficShift", "router": {"kind": "InferenceService", "name": "llama-chat"}},
            resolution={"undo": {"trafficSteps": [25, 50], "stepInterval": "2s"}})  # fmt: skip
    recorder = Recorder(
        "InferenceService", ns, "llama-chat", "/spec/predictor/canaryTrafficPercent"
    )
    _incident(ns, "canary", {"kind": "InferenceService", "name": "llama-chat"})
    entry = _applied(ns, "canary")
    assert entry["target"] == "InferenceService/llama-chat"
    assert entry["objects"] == ["InferenceService/llama-chat"]
    assert (
        "100% to the previous revision (llama-chat-predictor-00001) (was 80%)" in entry["message"]
    )
    assert get(kube.get(ref), "/spec/predictor/canaryTrafficPercent") == 0

    # The fix ships meanwhile (a new model, revision 3): undo gives the canary back and keeps it.
    obj = kube.get(ref)
    obj["spec"]["predictor"]["model"]["storageUri"] = "hf://meta-llama/Llama-3.1-8B-Instruct-v2"
    kube.replace(ref, obj)
    _resolve(ns, "canary")

    # 20% before; 0 while mitigated; then 25% and 50% of its share back (5, 10); then all.
    assert recorder.stop() == [20, 0, 5, 10, 20]
    after = kube.get(ref)
    expected = spec_snapshot(before)
    expected["spec"]["predictor"]["model"]["storageUri"] = (
        "hf://meta-llama/Llama-3.1-8B-Instruct-v2"
    )
    assert spec_snapshot(after) == expected
    # KServe splits as before, the fix (revision 3) as the canary; Ready for this generation.
    predictor = after["status"]["components"]["predictor"]
    assert [(t["revisionName"], t["percent"]) for t in predictor["traffic"]] == [
        ("llama-chat-predictor-00003", 20), ("llama-chat-predictor-00001", 80),
    ]  # fmt: skip
    assert after["status"]["observedGeneration"] == after["metadata"]["generation"]
    steps = [t for t in get_incident(ns, "canary")["status"]["timeline"] if t["type"] == "UndoStep"]
    assert len(steps) == 2


def test_kserve_raw_deployment_canary_list_goes_to_the_main_predictor_and_back(
    namespace, operator, served
):
    ns = namespace
    _create("InferenceService", ns, {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": "llama-raw", "labels": LABELS,
                     "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
        "spec": {
            "predictor": {"name": "stable", "minReplicas": 2,
                          "model": {"modelFormat": {"name": "huggingface"},
                                    "storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct"}},
            "canary": [{"trafficPercent": 10, "predictor": {"name": "next", "minReplicas": 1, "model": {
                "name": "kserve-container", "modelFormat": {"name": "huggingface"},
                "storageUri": "hf://Qwen/Qwen2.5-7B-Instruct"}}}],
        },
    })  # fmt: skip
    ref = Ref("InferenceService", ns, "llama-raw")
    before = _revision(ref, "llama-raw-predictor-00001")
    _policy(ns, "raw", {"type": "TrafficShift", "router": {"kind": "InferenceService", "name": "llama-raw"}})  # fmt: skip
    _incident(ns, "raw", {"kind": "InferenceService", "name": "llama-raw"})
    entry = _applied(ns, "raw")
    assert "100% to the previous revision" in entry["message"] and "(was 90%)" in entry["message"]
    after = kube.get(ref)
    assert after["spec"]["canary"][0]["trafficPercent"] == 0
    assert after["spec"]["canary"][0]["predictor"] == before["spec"]["canary"][0]["predictor"]
    _resolve(ns, "raw")
    restored = kube.get(ref)
    assert spec_snapshot(restored) == spec_snapshot(before)
    assert restored["status"]["observedGeneration"] == restored["metadata"]["generation"]


# --- Gateway API: an HTTPRoute over InferencePools, shifted to a fallback pool --------------


def _pool(namespace: str, name: str, app: str, fallback: bool = False) -> Body:
    meta: Body = {"name": name, **({"labels": {FALLBACK_LABEL: "true"}} if fallback else {})}
    return _create("InferencePool", namespace, {
        "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": meta,
        "spec": {"appProtocol": "http", "selector": {"matchLabels": {"app": app}},
                 "targetPorts": [{"number": 8000}],
                 "endpointPickerRef": {"name": f"{name}-epp", "kind": "Service", "port": {"number": 9002},
                                       "failureMode": "FailOpen"}},
    })  # fmt: skip


def test_httproute_over_inference_pools_shifts_to_the_fallback_pool_and_back_exactly(
    namespace, operator
):
    ns = namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    _pool(ns, "chat-pool", "chat-llm")
    _pool(ns, "chat-safe-pool", "chat-safe", fallback=True)
    route = _create("HTTPRoute", ns, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "chat", "annotations": {"team": "ml"}},
        "spec": {"parentRefs": [{"name": "inference-gateway"}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                            "backendRefs": [{"group": POOL_GROUP, "kind": "InferencePool", "name": "chat-pool"}],
                            "timeouts": {"request": "300s"}}]},
    })  # fmt: skip
    ref = Ref("HTTPRoute", ns, "chat")
    _policy(ns, "pools", {"type": "TrafficShift", "router": {"kind": "HTTPRoute", "name": "chat"},
                          "fallback": {"inferencePool": "chat-safe-pool"}})  # fmt: skip
    _incident(ns, "pool", {"name": "chat-llm"})
    entry = _applied(ns, "pool")
    assert "100% to InferencePool chat-safe-pool (was 0%)" in entry["message"]
    refs = kube.get(ref)["spec"]["rules"][0]["backendRefs"]
    assert [(r.get("group"), r["kind"], r["name"], r["weight"]) for r in refs] == [
        (POOL_GROUP, "InferencePool", "chat-pool", 0),
        (POOL_GROUP, "InferencePool", "chat-safe-pool", 100),
    ]
    assert all("port" not in r for r in refs)  # a pool's targetPorts say where it listens
    held = kube.get(ref)
    assert ledger.holders(held) == [(f"{ns}/pool", "TrafficShift:HTTPRoute/chat")]
    _resolve(ns, "pool")
    assert _stable(kube.get(ref)) == _stable(route)


# --- Envoy AI Gateway: AIGatewayRoute backend weights --------------------------------------


@pytest.fixture
def cluster_policy(namespace: str) -> Iterator[str]:
    """A ClusterMitigationPolicy name for this test only (its namespaceSelector picks
    NAMESPACE alone); deleted afterwards."""
    mark = f"serving-{uuid.uuid4().hex[:6]}"
    kube.patch(Ref("Namespace", "", namespace), {"metadata": {"labels": {"aiincident-test": mark}}})
    yield mark
    kube.delete(Ref("ClusterMitigationPolicy", "", mark))


def test_aigatewayroute_shifts_backend_weights_and_restores_them(
    namespace, operator, aiservicebackends, cluster_policy
):
    ns = namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    for name in ("llama-primary", "llama-fallback"):
        _create("AIServiceBackend", ns, {
            "apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIServiceBackend",
            "metadata": {"name": name, "labels": {FALLBACK_LABEL: "true"} if "fallback" in name else {}},
            "spec": {"schema": {"name": "OpenAI"},
                     "backendRef": {"name": name, "kind": "Backend", "group": "gateway.envoyproxy.io"}},
        })  # fmt: skip
    # The upstream sample: a priority-1 failover with its own model name, and a pool rule.
    route = _create("AIGatewayRoute", ns, {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute",
        "metadata": {"name": "llm-route"},
        "spec": {"parentRefs": [{"name": "ai-gateway", "kind": "Gateway", "group": "gateway.networking.k8s.io"}],
                 "rules": [
                     {"name": "llama",
                      "matches": [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "llama-3.1-8b"}]}],
                      "backendRefs": [
                          {"name": "llama-primary", "weight": 90, "priority": 0},
                          {"name": "llama-fallback", "weight": 10, "priority": 1, "modelNameOverride": "qwen2.5-7b"},
                      ],
                      "timeouts": {"request": "120s"}},
                     {"name": "pool",
                      "matches": [{"headers": [{"name": "x-ai-eg-model", "value": "llama-pool"}]}],
                      "backendRefs": [{"name": "llama-pool", "group": POOL_GROUP, "kind": "InferencePool"}]},
                 ]},
    })  # fmt: skip
    ref = Ref("AIGatewayRoute", ns, "llm-route")
    # A cluster policy: the tenant bounds cannot trace an Envoy Gateway Backend here (no
    # such CRD), so a namespaced policy would be refused; an admin's is trusted.
    spec = {"namespaceSelector": {"matchLabels": {"aiincident-test": cluster_policy}},
            "targetSelector": {"matchLabels": LABELS},
            "responses": [{"severity": 1, "actions": [
                {"type": "TrafficShift", "router": {"kind": "AIGatewayRoute", "name": "llm-route"},
                 "fallback": {"backend": "llama-fallback"}, "weight": 100}]}]}  # fmt: skip
    kube.create(
        "ClusterMitigationPolicy", "", policy_body(cluster_policy, spec, "ClusterMitigationPolicy")
    )
    _ready("ClusterMitigationPolicy", "", cluster_policy)
    _incident(ns, "aigw", {"name": "chat-llm"})
    entry = _applied(ns, "aigw")
    assert "100% to AIServiceBackend llama-fallback (was 0%)" in entry["message"]
    rules = kube.get(ref)["spec"]["rules"]
    assert rules[0]["backendRefs"] == [
        {"name": "llama-primary", "weight": 0, "priority": 0},
        {"name": "llama-fallback", "weight": 100, "priority": 0, "modelNameOverride": "qwen2.5-7b"},
    ]
    assert rules[1] == route["spec"]["rules"][1]  # the pool's rule is not this router's to shift
    _resolve(ns, "aigw")
    assert _stable(kube.get(ref)) == _stable(route)


# --- Argo Rollouts: the canary in flight aborted, the abort cleared on resolution -----------


def test_rollout_canary_is_aborted_through_the_status_and_the_abort_cleared(namespace, operator):
    ns = namespace
    labels = {"app": "model-server"}
    _create("Rollout", ns, {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "model-server", "labels": LABELS},
        "spec": {"replicas": 4, "revisionHistoryLimit": 3, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0",
                                                       "ports": [{"containerPort": 8000, "protocol": "TCP"}]}]}},
                 "strategy": {"canary": {"canaryService": "model-server-canary", "stableService": "model-server-stable",
                                         "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}]}}},
    })  # fmt: skip
    ref = Ref("Rollout", ns, "model-server")
    # As the Argo controller reports a canary paused at 20%: 4 stable replicas, 1 canary.
    kube.patch_status(ref, {"phase": "Paused", "message": "CanaryPauseStep", "currentStepIndex": 1,
                            "stableRS": "6f9c8d4b7", "currentPodHash": "84c7b5d9f", "observedGeneration": "1",
                            "replicas": 5, "updatedReplicas": 1, "readyReplicas": 5, "availableReplicas": 5,
                            "canary": {"weights": {"canary": {"weight": 20, "podTemplateHash": "84c7b5d9f"},
                                                   "stable": {"weight": 80, "podTemplateHash": "6f9c8d4b7"}}}})  # fmt: skip
    before = kube.get(ref)
    _policy(
        ns, "argo", {"type": "TrafficShift", "router": {"kind": "Rollout", "name": "model-server"}}
    )
    _incident(ns, "abort", {"kind": "Rollout", "name": "model-server"})
    entry = _applied(ns, "abort")
    assert "100% to the stable revision (ReplicaSet hash 6f9c8d4b7) (was 80%)" in entry["message"]
    aborted = kube.get(ref)
    assert aborted["status"]["abort"] is True
    assert {k: v for k, v in aborted["status"].items() if k != "abort"} == before["status"]
    assert aborted["spec"] == before["spec"]  # the template stays the new version, as Argo's abort
    assert ledger.holds(aborted, f"{ns}/abort", "TrafficShift:Rollout/model-server") == {
        "/status/abort": True
    }
    # `kubectl argo rollouts retry` clears the abort mid-incident: the held Rollout is
    # watched (its ledger's label), and the abort is put back.
    kube.patch_status(ref, {"abort": False})
    wait_for(lambda: kube.get(ref)["status"].get("abort") is True, 30, "the abort repaired")
    _resolve(ns, "abort")
    assert _stable(kube.get(ref)) == _stable(before)


# --- The policy check: a fallback pool or backend that does not exist ----------------------


def test_a_missing_fallback_pool_or_backend_makes_the_policy_not_ready(
    namespace, operator, aiservicebackends
):
    ns = namespace
    spec = {"targetSelector": {"matchLabels": LABELS}, "responses": [{"severity": 1, "actions": [
        {"type": "TrafficShift", "router": {"kind": "HTTPRoute", "name": "chat"},
         "fallback": {"inferencePool": "safe-pool"}},
        {"type": "TrafficShift", "router": {"kind": "AIGatewayRoute", "name": "llm-route"},
         "fallback": {"backend": "safe-backend"}},
    ]}]}  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("missing", spec))

    def condition() -> dict:
        status = (kube.get(Ref("MitigationPolicy", ns, "missing")) or {}).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})

    cond = wait_for(lambda: (c := condition()).get("status") == "False" and c, 30, "Ready=False")
    assert cond["reason"] == "Invalid"
    assert f"TrafficShift fallback InferencePool {ns}/safe-pool does not exist" in cond["message"]
    assert (
        f"TrafficShift fallback AIServiceBackend {ns}/safe-backend does not exist"
        in cond["message"]
    )

    # Both made (labelled as fallbacks): the periodic re-check finds the policy valid.
    _pool(ns, "safe-pool", "chat-safe", fallback=True)
    _create("AIServiceBackend", ns, {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIServiceBackend",
        "metadata": {"name": "safe-backend", "labels": {FALLBACK_LABEL: "true"}},
        "spec": {"schema": {"name": "OpenAI"},
                 "backendRef": {"name": "safe", "kind": "Backend", "group": "gateway.envoyproxy.io"}},
    })  # fmt: skip
    wait_for(lambda: condition().get("status") == "True", 30, "Ready=True once both exist")
