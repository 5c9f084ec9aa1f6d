"""Model-serving targets without a cluster (issue 13): a kind whose CRD is absent, a kind
the operator may not list, and the actions, bounds and investigation on every kind.

The live behaviour is in tests/integration/test_serving_targets.py; here FakeCluster
reports a kind as not installed (or its list as forbidden), which a real control
plane with every CRD installed cannot show cheaply.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ai_incident_operator import bounds, engine, ledger, policy_status, validation, workloads
from ai_incident_operator.actions import ActionContext, get
from ai_incident_operator.investigation import changes, history

from fakecluster import DEFAULT_KINDS, FakeCluster

REPO = Path(__file__).resolve().parents[2]
NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LABELS = {"app.kubernetes.io/part-of": "serving"}
SERVING = frozenset({"StatefulSet", "Rollout", "LeaderWorkerSet", "InferenceService",
                     "LLMInferenceService", "ControllerRevision", "ScaledObject"})  # fmt: skip
Body = dict[str, Any]

LWS: Body = {
    "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
    "metadata": {"name": "vllm", "namespace": NS, "labels": dict(LABELS)},
    "spec": {"replicas": 2, "leaderWorkerTemplate": {
        "size": 2,
        "leaderTemplate": {"metadata": {"labels": {"role": "leader"}},
                           "spec": {"containers": [{"name": "vllm", "image": "vllm:0.11"}],
                                    "volumes": [{"name": "prompts",
                                                 "configMap": {"name": "prompts"}}]}},
        "workerTemplate": {"metadata": {"labels": {"role": "worker"}},
                           "spec": {"containers": [{"name": "vllm", "image": "vllm:0.11",
                                                    "envFrom": [{"configMapRef": {"name": "knobs"}}]}]}},
    }},
}  # fmt: skip
ISVC: Body = {
    "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
    "metadata": {"name": "llama", "namespace": NS, "labels": dict(LABELS)},
    "spec": {"predictor": {"model": {"modelFormat": {"name": "huggingface"},
                                     "storageUri": "hf://meta/llama-3.1"}}},
}  # fmt: skip


def _ready(spec: Body) -> Body:
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "serving", "namespace": NS, "generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
    }  # fmt: skip


def _incident(fake: FakeCluster, target: Body) -> None:
    fake.add({
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": "harm", "namespace": NS},
        "spec": {"category": "HarmfulOutput", "severity": 1, "target": target},
    })  # fmt: skip


def _condition(fake: FakeCluster, type_: str) -> Body:
    status = fake.obj("AIIncident", NS, "harm")["status"]
    return next(c for c in status["conditions"] if c["type"] == type_)


# --- A kind whose CRD is not installed ----------------------------------------------------


@pytest.mark.parametrize("kind", ["LeaderWorkerSet", "InferenceService", "Rollout"])
def test_a_target_kind_without_its_crd_is_a_clear_target_not_found(kind):
    fake = FakeCluster(DEFAULT_KINDS)  # none of the model-serving CRDs
    policy = {"targetSelector": {"matchLabels": LABELS},
              "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}]}  # fmt: skip
    world = engine.World(policies=[_ready(policy)])
    _incident(fake, {"kind": kind, "name": "model"})
    engine.reconcile(NS, "harm", world, api=fake, now=T0)
    triaged = _condition(fake, "Triaged")
    assert (triaged["status"], triaged["reason"]) == ("False", "TargetNotFound")
    assert triaged["message"] == (
        f"{kind} is not served by this cluster (its CRD is not installed): install it or "
        "fix spec.target.kind"
    )
    assert fake.writes == [("status", "AIIncident/harm")]  # nothing else was touched
    # A selector finds nothing either, without asking the apiserver for the absent kind.
    assert (
        engine.resolve_targets(fake, NS, {"kind": kind, "selector": {"matchLabels": LABELS}}) == []
    )


def test_a_policy_covers_only_installed_kinds_and_says_when_it_may_not_list_one():
    fake = FakeCluster(DEFAULT_KINDS | {"LeaderWorkerSet"})
    fake.add(copy.deepcopy(LWS))
    config = {"type": "ConservativeConfig", "container": "vllm", "env": {"TEMPERATURE": "0"}}
    body = _ready({"targetSelector": {"matchLabels": LABELS},
                   "responses": [{"severity": 2, "actions": [config]}]})  # fmt: skip
    # Absent CRDs (InferenceService, ...) are skipped, not errors.
    assert [t["kind"] for t in policy_status.policy_targets(fake, NS, body["spec"])] == [
        "LeaderWorkerSet"
    ]
    assert policy_status.cluster_problems(body, fake) == []
    # Without list on LeaderWorkerSets it is left out when no targetKinds names it ...
    fake.deny("list", "LeaderWorkerSet")
    assert policy_status.policy_targets(fake, NS, body["spec"]) == []
    assert policy_status.cluster_problems(body, fake) == []
    # ... and the policy is not Ready, saying why, when targetKinds names it.
    named = copy.deepcopy(body)
    named["spec"]["targetKinds"] = ["LeaderWorkerSet"]
    (problem,) = policy_status.cluster_problems(named, fake)
    assert problem.startswith(
        "targetKinds: the operator may not list LeaderWorkerSets "
        f"(leaderworkersets.leaderworkerset.x-k8s.io) in {NS}: "
    )
    assert "leave the kind out of targetKinds" in problem
    assert policy_status.tenant_problems(named, fake, bounds.TenantBounds()) == []


# --- Actions on each kind's templates -----------------------------------------------------


def _ctx(fake: FakeCluster, target: Body, spec: Body) -> ActionContext:
    incident = {"metadata": {"name": "q", "namespace": NS}, "spec": {}}
    return ActionContext(incident, target, spec, {}, api=fake)


def test_config_and_sidecar_on_lws_templates_and_a_kserve_predictor_undo_exactly():
    fake = FakeCluster(DEFAULT_KINDS | SERVING)
    for body in (LWS, ISVC):
        fake.add(copy.deepcopy(body))
    guard = {"type": "GuardrailSidecar", "container": {"name": "guard", "image": "guard:1"}}
    for kind, name, container in (("LeaderWorkerSet", "vllm", "vllm"),
                                  ("InferenceService", "llama", "kserve-container")):  # fmt: skip
        before = fake.obj(kind, NS, name)
        config = {"type": "ConservativeConfig", "container": container, "env": {"TEMPERATURE": "0"}}
        done = []
        for spec in (config, guard):
            ctx = _ctx(fake, fake.obj(kind, NS, name), spec)
            outcome = get(spec["type"]).apply(ctx)
            assert outcome.state == "Applied", outcome.message
            done.append((spec, outcome.objects))
        changed = fake.obj(kind, NS, name)
        adapter = workloads.adapter(kind)
        found = {(c.name, c.path) for c in adapter.containers(changed)}
        assert ("guard", f"{adapter.serving_pod(changed).containers}[name=guard]") in found
        for c in adapter.containers(changed):
            if c.name == container:
                assert {"name": "TEMPERATURE", "value": "0"} in changed_at(changed, c.path)["env"]
        for spec, objects in reversed(done):
            get(spec["type"]).revert(_ctx(fake, fake.obj(kind, NS, name), spec), objects)
        after = fake.obj(kind, NS, name)
        for obj in (before, after):
            obj["metadata"].pop("resourceVersion"), obj["metadata"].pop("generation")
        assert after == before


def changed_at(obj: Body, path: str) -> Body:
    from ai_incident_operator.fieldpath import get as field

    return field(obj, path)


def test_kserve_goes_offline_with_its_stop_and_comes_back_without_a_trace():
    fake = FakeCluster(DEFAULT_KINDS | SERVING)
    fake.add(copy.deepcopy(ISVC))
    before = fake.obj("InferenceService", NS, "llama")
    ctx = _ctx(fake, before, {"type": "ScaleToZero"})
    outcome = get("ScaleToZero").apply(ctx)
    assert outcome.message == "InferenceService/llama: stopped (serving.kserve.io/stop: true)"
    stopped = fake.obj("InferenceService", NS, "llama")
    assert stopped["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"
    assert ledger.holders(stopped) == [(f"{NS}/q", "ScaleToZero")]
    get("ScaleToZero").revert(_ctx(fake, stopped, {"type": "ScaleToZero"}), outcome.objects)
    after = fake.obj("InferenceService", NS, "llama")
    assert "annotations" not in after["metadata"] and "labels" in after["metadata"]
    assert after["spec"] == before["spec"]


# --- Tenant bounds through the adapters ---------------------------------------------------


def test_bounds_read_each_kinds_own_pod_templates():
    limits = bounds.TenantBounds(sidecar_images=("guard",))
    lws = copy.deepcopy(LWS)
    # The leader's prompts ConfigMap and the workers' env ConfigMap are both the target's.
    for cm in ("prompts", "knobs"):
        spec = {"type": "ConservativeConfig", "container": "vllm",
                "configMap": {"name": cm, "data": {"TEMPERATURE": "0"}}}  # fmt: skip
        assert bounds.object_problems(spec, NS, lws, lambda ref: None, limits) == []
    spec = {"type": "ConservativeConfig", "container": "vllm",
            "configMap": {"name": "knobs", "data": {"API_TOKEN": "x"}}}  # fmt: skip
    (problem,) = bounds.object_problems(spec, NS, lws, lambda ref: None, limits)
    assert "configMap key API_TOKEN (read as env) API_TOKEN may carry" in problem
    other = {"type": "ConservativeConfig", "container": "vllm",
             "configMap": {"name": "elsewhere", "data": {"TEMPERATURE": "0"}}}  # fmt: skip
    assert bounds.object_problems(other, NS, lws, lambda ref: None, limits) == [
        "configMap elsewhere is not read by LeaderWorkerSet vllm: a namespaced policy changes "
        "only the ConfigMaps its target uses"
    ]
    # A sidecar named as the model's own container, and a Service that selects the leaders.
    same = {"type": "GuardrailSidecar", "container": {"name": "vllm", "image": "guard:1"}}
    (problem,) = bounds.object_problems(same, NS, lws, lambda ref: None, limits)
    assert problem.startswith("sidecar vllm: LeaderWorkerSet vllm has a container of that name")
    leaders = {"metadata": {"name": "vllm"},
               "spec": {"selector": {"leaderworkerset.sigs.k8s.io/name": "vllm", "role": "leader"}}}  # fmt: skip
    workers = {"metadata": {"name": "workers"}, "spec": {"selector": {"role": "worker"}}}
    assert bounds.selects(leaders, lws) and not bounds.selects(workers, lws)
    predictor = {"metadata": {"name": "llama"},
                 "spec": {"selector": {"serving.kserve.io/inferenceservice": "llama"}}}  # fmt: skip
    assert bounds.selects(predictor, ISVC)


# --- Investigation: the model version and its history -------------------------------------


def test_people_changes_to_a_storage_uri_and_to_lws_templates_reach_the_timeline():
    isvc = copy.deepcopy(ISVC)
    isvc["metadata"]["resourceVersion"] = "1"
    seen = changes.target_print(isvc, T0)
    assert seen["models"] == {"/spec/predictor/model/storageUri": "hf://meta/llama-3.1"}
    isvc["spec"]["predictor"]["model"]["storageUri"] = "hf://meta/llama-3.2"
    isvc["metadata"]["resourceVersion"] = "2"
    change = changes.target_change("InferenceService/llama", isvc, seen,
                                   changes.target_print(isvc, T0), T0)  # fmt: skip
    assert change is not None and change.type == "TargetChanged"
    assert "model predictor storageUri hf://meta/llama-3.1 -> hf://meta/llama-3.2" in change.message
    # The operator's own stop is not a change people made.
    stopped = copy.deepcopy(isvc)
    ledger.hold(
        stopped, f"{NS}/q", "ScaleToZero", {"/metadata/annotations/serving.kserve.io~1stop": "true"}
    )
    assert changes.template_fingerprint(stopped) == changes.template_fingerprint(isvc)

    lws = copy.deepcopy(LWS)
    before = changes.target_print(lws, T0)
    assert set(before["images"]) == {"leader template/vllm", "worker template/vllm"}
    lws["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["image"] = (
        "vllm:0.12"
    )
    change = changes.target_change("LeaderWorkerSet/vllm", lws, before,
                                   changes.target_print(lws, T0), T0)  # fmt: skip
    assert "image of worker template/vllm vllm:0.11 -> vllm:0.12" in change.message
    assert changes.configmap_names(lws) == ["knobs", "prompts"]


def test_history_per_kind_from_what_each_controller_records():
    fake = FakeCluster(DEFAULT_KINDS | SERVING)
    lws = fake.add(copy.deepcopy(LWS))
    for number, image in ((1, "vllm:0.10"), (2, "vllm:0.11")):
        fake.add({
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": f"vllm-h{number}-{number}", "namespace": NS,
                         "creationTimestamp": (T0 - timedelta(hours=3 - number)).isoformat(),
                         "labels": {"leaderworkerset.sigs.k8s.io/name": "vllm"},
                         "ownerReferences": [{"uid": lws["metadata"]["uid"], "kind": "LeaderWorkerSet"}]},
            "revision": number,
            "data": {"spec": {"leaderWorkerTemplate": {
                "workerTemplate": {"spec": {"containers": [{"name": "vllm", "image": image}]}}}}},
        })  # fmt: skip
    found = history.revisions(fake, NS, lws)
    assert [(r.number, r.images) for r in found] == [(2, ["vllm:0.11"]), (1, ["vllm:0.10"])]
    isvc = copy.deepcopy(ISVC)
    isvc["status"] = {"components": {"predictor": {
        "latestReadyRevision": "llama-predictor-00003",
        "previousRolledoutRevision": "llama-predictor-00002"}}}  # fmt: skip
    latest, previous = history.revisions(fake, NS, isvc)
    assert (latest.number, latest.model, previous.number) == (3, "hf://meta/llama-3.1", 2)


# --- The examples: one policy per kind --------------------------------------------------


def test_every_serving_example_is_a_valid_policy_and_every_kind_has_one():
    schemas = validation.load_schemas()
    # As the gitops example's tenant bounds list the guardrail's registry.
    limits = bounds.load(REPO / "examples" / "gitops" / "tenant-bounds.yaml")
    kinds: list[str] = []
    for path in sorted((REPO / "examples" / "serving").glob("*.yaml")):
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert doc["kind"] == "MitigationPolicy", path
        assert validation.document_problems(doc, schemas, limits) == [], path
        kinds += doc["spec"]["targetKinds"]
        assert path.stem == doc["spec"]["targetKinds"][0].lower()
        types = {a["type"] for r in doc["spec"]["responses"] for a in r["actions"]}
        assert {"ScaleToZero", "ConservativeConfig"} <= types, path
    assert sorted(kinds) == sorted(set(workloads.KINDS) - {"Deployment"})


def test_a_kserve_models_configmap_counts_as_read_by_the_target():
    isvc = copy.deepcopy(ISVC)
    isvc["spec"]["predictor"]["model"]["envFrom"] = [{"configMapRef": {"name": "knobs"}}]
    spec = {"type": "ConservativeConfig", "container": "kserve-container",
            "configMap": {"name": "knobs", "data": {"TEMPERATURE": "0"}}}  # fmt: skip
    assert bounds.object_problems(spec, NS, isvc, lambda ref: None, bounds.TenantBounds()) == []
    assert changes.configmap_names(isvc) == ["knobs"]


def test_each_adapter_says_how_its_pods_are_labelled_and_where_its_model_is_named():
    lws, isvc = workloads.adapter("LeaderWorkerSet"), workloads.adapter("InferenceService")
    assert lws.pod_selector(LWS) == {"leaderworkerset.sigs.k8s.io/name": "vllm"}
    leader, worker = (lws.pod_labels(LWS, p) for p in lws.pod_specs(LWS))
    assert leader == {"role": "leader", "leaderworkerset.sigs.k8s.io/name": "vllm",
                      "leaderworkerset.sigs.k8s.io/worker-index": "0"}  # fmt: skip
    assert worker == {"role": "worker", "leaderworkerset.sigs.k8s.io/name": "vllm"}
    assert isvc.serving_labels(ISVC) == {
        "serving.kserve.io/inferenceservice": "llama", "component": "predictor",
    }  # fmt: skip
    assert isvc.model_paths(ISVC) == ["/spec/predictor/model/storageUri"]
    llm = workloads.adapter("LLMInferenceService")
    assert llm.model_paths({}) == ["/spec/model/uri"]
    assert llm.pod_selector({"metadata": {"name": "l"}}) == {
        "app.kubernetes.io/name": "l", "app.kubernetes.io/part-of": "llminferenceservice",
    }  # fmt: skip
    sts = {"spec": {"selector": {"matchLabels": {"app": "s"}}, "template": {"metadata": {"labels": {"app": "s", "tier": "gpu"}}}}}  # fmt: skip
    assert workloads.adapter("StatefulSet").pod_selector(sts) == {"app": "s"}
    assert workloads.adapter("StatefulSet").serving_labels(sts) == {"app": "s", "tier": "gpu"}
    assert (
        workloads.as_pod(ISVC["spec"]["predictor"])["containers"][0]["name"] == "kserve-container"
    )
