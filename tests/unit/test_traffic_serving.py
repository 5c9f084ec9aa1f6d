"""The model-serving TrafficShift routers (KServe InferenceService, HTTPRoute over
InferencePools, Envoy AI Gateway AIGatewayRoute, Argo Rollout), pure and through the
action on the in-memory cluster; their policy check and tenant bounds. Bodies are
shaped like ../shared/thirdparty-crds/samples."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import bounds, ledger, policy_status
from ai_incident_operator.actions import REGISTRY, ActionContext
from ai_incident_operator.actions.traffic import TrafficShift, unmitigated
from ai_incident_operator.bounds import FALLBACK_LABEL, TenantBounds
from ai_incident_operator.fieldpath import ABSENT, get
from ai_incident_operator.resources import Ref
from ai_incident_operator.traffic import RouterError, get_router
from ai_incident_operator.traffic.gateway import POOL_GROUP

from fakecluster import DEFAULT_KINDS, FakeCluster

Body = dict[str, Any]
NS = "prod"
HOLDER = f"{NS}/inc"
SERVING = {"InferenceService", "Rollout", "AIGatewayRoute", "AIServiceBackend", "HTTPRoute",
           "InferencePool", "Backend"}  # fmt: skip


def isvc(canary: int | None = 20, canaries: list[int] | None = None) -> Body:
    predictor: Body = {"model": {"modelFormat": {"name": "huggingface"},
                                 "storageUri": "hf://meta-llama/Llama-3.1-8B-Instruct"}}  # fmt: skip
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    spec: Body = {"predictor": predictor}
    if canaries is not None:
        spec["canary"] = [
            {"trafficPercent": p, "predictor": {"model": {"name": "kserve-container",
                                                          "storageUri": f"hf://m{i}"}}}
            for i, p in enumerate(canaries)
        ]  # fmt: skip
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "llama", "namespace": NS}, "spec": spec}  # fmt: skip


def pool_ref(name: str, weight: int | None = None) -> Body:
    ref: Body = {"group": POOL_GROUP, "kind": "InferencePool", "name": name}
    if weight is not None:
        ref["weight"] = weight
    return ref


def httproute(*refs: Body) -> Body:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "chat", "namespace": NS},
            "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": list(refs)}]}}  # fmt: skip


def aigw_route() -> Body:
    """The upstream sample: a rule over two AIServiceBackends (the second a priority-1
    failover with its own model name) and a rule over an InferencePool."""
    return {
        "apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIGatewayRoute",
        "metadata": {"name": "llm-route", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "ai-gateway", "kind": "Gateway", "group": "gateway.networking.k8s.io"}],
            "rules": [
                {"name": "llama",
                 "matches": [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "llama-3.1-8b"}]}],
                 "backendRefs": [
                     {"name": "llama-primary", "weight": 90, "priority": 0},
                     {"name": "llama-fallback", "weight": 10, "priority": 1, "modelNameOverride": "qwen2.5-7b"},
                 ],
                 "timeouts": {"request": "120s"}},
                {"name": "pool",
                 "matches": [{"headers": [{"type": "Exact", "name": "x-ai-eg-model", "value": "llama-pool"}]}],
                 "backendRefs": [{"name": "llama-pool", "group": POOL_GROUP, "kind": "InferencePool",
                                  "weight": 1, "priority": 0}]},
            ],
        },
    }  # fmt: skip


def rollout(abort: bool | None = None) -> Body:
    obj: Body = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "model-server", "namespace": NS, "labels": {"app": "model-server"}},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "model-server"}},
                 "template": {"metadata": {"labels": {"app": "model-server"}},
                              "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}},
        "status": {"phase": "Paused", "stableRS": "6f9c8d", "currentStepIndex": 1},
    }  # fmt: skip
    if abort is not None:
        obj["status"]["abort"] = abort
    return obj


def held_cycle(kind: str, obj: Body, fallback: Body, weights: list[int], fb_obj: Body) -> Body:
    """OBJ after holding WEIGHTS in turn, each from the original (as the engine steps), then
    released."""
    router = get_router(kind)
    key = f"TrafficShift:{kind}/{obj['metadata']['name']}"
    for weight in weights:
        values = router.shift(unmitigated(obj), fallback, weight, fb_obj)
        ledger.hold(obj, HOLDER, key, values)
    ledger.release(obj, HOLDER)
    return obj


# --- InferenceService ----------------------------------------------------------------------


def test_isvc_sends_the_canary_back_and_steps_scale_its_original_share():
    router = get_router("InferenceService")
    obj = isvc(20)
    assert router.fallback_keys == () and router.splits
    assert router.weights(obj, {}, {}) == (20, 80)
    path = "/spec/predictor/canaryTrafficPercent"
    assert router.shift(obj, {}, 100, {}) == {path: 0}
    assert [router.shift(obj, {}, w, {})[path] for w in (75, 50, 0)] == [5, 10, 20]
    assert router.weights(isvc(0), {}, {}) == (0, 100)
    assert router.destination(obj, {}) == "the previous revision"
    obj["status"] = {
        "components": {"predictor": {"latestRolledoutRevision": "llama-predictor-00001"}}
    }
    assert router.destination(obj, {}) == "the previous revision (llama-predictor-00001)"


def test_isvc_raw_deployment_canaries_keep_their_proportions():
    router = get_router("InferenceService")
    obj = isvc(None, canaries=[10, 20])
    assert router.weights(obj, {}, {}) == (30, 70)
    paths = ["/spec/canary[0]/trafficPercent", "/spec/canary[1]/trafficPercent"]
    assert router.shift(obj, {}, 100, {}) == dict.fromkeys(paths, 0)
    assert router.shift(obj, {}, 50, {}) == dict(zip(paths, [5, 10], strict=True))
    both = isvc(40, canaries=[10])
    assert set(router.shift(both, {}, 100, {})) == {
        "/spec/predictor/canaryTrafficPercent",
        paths[0],
    }
    assert router.weights(both, {}, {}) == (40, 60)


def test_isvc_without_a_canary_in_flight_is_a_readable_error():
    router = get_router("InferenceService")
    with pytest.raises(RouterError, match="llama has no canary in flight"):
        router.shift(isvc(None), {}, 100, {})
    assert router.weights(isvc(None), {}, {}) == (100, 0)


# --- HTTPRoute over InferencePools ---------------------------------------------------------


def test_httproute_adds_the_fallback_pool_as_a_pool_ref_without_a_port():
    router = get_router("HTTPRoute")
    obj = httproute(pool_ref("chat-pool"))
    assert router.fallback_ref({"inferencePool": "safe-pool"}) == ("InferencePool", "safe-pool")
    values = router.shift(obj, {"inferencePool": "safe-pool"}, 100, {})
    assert values == {"/spec/rules[0]/backendRefs": [
        {**pool_ref("chat-pool"), "weight": 0}, {**pool_ref("safe-pool"), "weight": 100},
    ]}  # fmt: skip
    assert router.destination(obj, {"inferencePool": "safe-pool"}) == "InferencePool safe-pool"


def test_httproute_reuses_a_listed_pool_and_tells_pools_from_services():
    router = get_router("HTTPRoute")
    obj = httproute(
        pool_ref("chat-pool", 3),
        {"kind": "Service", "name": "safe-pool", "port": 80, "weight": 1},  # a Service, same name
        pool_ref("safe-pool", 0),
    )
    fallback = {"inferencePool": "safe-pool"}
    assert router.weights(obj, fallback, {}) == (100, 0)
    refs = router.shift(obj, fallback, 20, {})["/spec/rules[0]/backendRefs"]
    assert [r["weight"] for r in refs] == [60, 20, 20] and len(refs) == 3
    other_ns = httproute(pool_ref("chat-pool"), {**pool_ref("safe-pool"), "namespace": "other"})
    refs = router.shift(other_ns, fallback, 100, {})["/spec/rules[0]/backendRefs"]
    assert [r["weight"] for r in refs] == [0, 0, 100] and "namespace" not in refs[2]


# --- AIGatewayRoute ------------------------------------------------------------------------


def test_aigatewayroute_shifts_backend_rules_and_leaves_pool_rules():
    router = get_router("AIGatewayRoute")
    obj = aigw_route()
    fallback = {"backend": "llama-fallback"}
    # The failover at priority 1 is idle while the primary serves: 0% now.
    assert router.weights(obj, fallback, {}) == (100, 0)
    values = router.shift(obj, fallback, 100, {})
    assert list(values) == ["/spec/rules[name=llama]/backendRefs"]
    primary, fb = values["/spec/rules[name=llama]/backendRefs"]
    assert primary == {"name": "llama-primary", "weight": 0, "priority": 0}
    # Raised to the primary's priority so that the weights decide; its model name kept.
    assert fb == {"name": "llama-fallback", "weight": 100, "priority": 0,
                  "modelNameOverride": "qwen2.5-7b"}  # fmt: skip
    assert router.destination(obj, fallback) == "AIServiceBackend llama-fallback"


def test_aigatewayroute_adds_a_missing_fallback_with_weight_and_priority():
    router = get_router("AIGatewayRoute")
    obj = aigw_route()
    refs = router.shift(obj, {"backend": "safe"}, 30, {})["/spec/rules[name=llama]/backendRefs"]
    assert refs[-1] == {"name": "safe", "priority": 0, "weight": 30}
    assert [r["weight"] for r in refs] == [63, 7, 30]
    pools_only = aigw_route()
    pools_only["spec"]["rules"] = pools_only["spec"]["rules"][1:]
    with pytest.raises(RouterError, match="no rule with AIServiceBackend backendRefs"):
        router.shift(pools_only, {"backend": "safe"}, 100, {})


# --- Rollout -------------------------------------------------------------------------------


def test_rollout_abort_is_all_or_nothing_and_undone_to_absent():
    router = get_router("Rollout")
    assert not router.splits and router.writes_status and router.fallback_keys == ()
    assert router.shift(rollout(), {}, 100, {}) == {"/status/abort": True}
    assert router.shift(rollout(), {}, 0, {}) == {"/status/abort": ABSENT}
    assert router.shift(rollout(False), {}, 0, {}) == {"/status/abort": False}
    with pytest.raises(RouterError, match="cannot split"):
        router.shift(rollout(), {}, 50, {})
    assert router.weights(rollout(), {}, {}) == (100, 0)
    assert router.weights(rollout(True), {}, {}) == (0, 100)
    # With traffic routing, the split Argo reports: the stable revision had 80%.
    routed = rollout()
    routed["status"]["canary"] = {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}
    assert router.weights(routed, {}, {}) == (20, 80)
    assert router.destination(rollout(), {}) == "the stable revision (ReplicaSet hash 6f9c8d)"


# --- Properties: weights sum to 100, the undo path restores exactly ------------------------

WEIGHTS = st.lists(st.integers(0, 100), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(canary=st.integers(0, 100), weight=st.integers(0, 100))
def test_isvc_predictor_and_canary_always_sum_to_100(canary, weight):
    router = get_router("InferenceService")
    new = router.shift(isvc(canary), {}, weight, {})["/spec/predictor/canaryTrafficPercent"]
    assert 0 <= new <= canary
    assert sum(router.weights(isvc(new), {}, {})) == 100


@settings(max_examples=200, deadline=None)
@given(
    shares=st.lists(st.integers(0, 50), min_size=1, max_size=3).filter(lambda s: sum(s) <= 100),
    weight=st.integers(0, 100),
)
def test_isvc_canary_list_never_exceeds_100_and_keeps_order(shares, weight):
    values = get_router("InferenceService").shift(isvc(None, shares), {}, weight, {})
    new = [values[f"/spec/canary[{i}]/trafficPercent"] for i in range(len(shares))]
    assert sum(new) <= sum(shares) and all(n <= s for n, s in zip(new, shares, strict=True))
    # Read back as written: the canaries' shares, and the main predictor keeps the rest.
    after = get_router("InferenceService").weights(isvc(None, new), {}, {})
    assert after == (sum(new), 100 - sum(new))


@settings(max_examples=200, deadline=None)
@given(
    primaries=st.lists(st.integers(0, 20), min_size=1, max_size=3),
    weight=st.integers(1, 100),
    kind=st.sampled_from(["HTTPRoute", "AIGatewayRoute"]),
)
def test_route_weights_always_sum_to_100(primaries, weight, kind):
    if kind == "HTTPRoute":
        obj = httproute(*[pool_ref(f"p{i}", w) for i, w in enumerate(primaries)])
        fallback, path = {"inferencePool": "safe"}, "/spec/rules[0]/backendRefs"
    else:
        obj = aigw_route()
        obj["spec"]["rules"][0]["backendRefs"] = [
            {"name": f"b{i}", "weight": w, "priority": 0} for i, w in enumerate(primaries)
        ]
        fallback, path = {"backend": "safe"}, "/spec/rules[name=llama]/backendRefs"
    refs = get_router(kind).shift(obj, fallback, weight, {})[path]
    assert sum(r["weight"] for r in refs) == 100
    assert refs[-1]["weight"] == weight
    shifted = copy.deepcopy(obj)
    shifted["spec"]["rules"][0]["backendRefs"] = refs
    assert get_router(kind).weights(shifted, fallback, {})[1] == weight


@settings(max_examples=150, deadline=None)
@given(
    case=st.sampled_from(["isvc", "isvc-list", "pools", "aigw", "rollout"]),
    steps=WEIGHTS,
)
def test_the_undo_path_restores_the_router_exactly(case, steps):
    """Mitigate at 100, step through any weights (from the original each time), release:
    the object is what it was, byte for byte."""
    kind, obj, fallback = {
        "isvc": ("InferenceService", isvc(20), {}),
        "isvc-list": ("InferenceService", isvc(None, [10, 15]), {}),
        "pools": ("HTTPRoute", httproute(pool_ref("chat-pool")), {"inferencePool": "safe"}),
        "aigw": ("AIGatewayRoute", aigw_route(), {"backend": "llama-fallback"}),
        "rollout": ("Rollout", rollout(), {}),
    }[case]
    if case == "rollout":
        steps = [w for w in steps if w in (0, 100)]
    original = copy.deepcopy(obj)
    assert held_cycle(kind, obj, fallback, [100, *steps], {}) == original


# --- Validation ----------------------------------------------------------------------------


def ts(kind: str, fallback: Body | None = None, **over: Any) -> Body:
    spec: Body = {"type": "TrafficShift", "router": {"kind": kind, "name": "r"}, **over}
    if fallback is not None:
        spec["fallback"] = fallback
    return spec


@pytest.mark.parametrize(
    ("action", "complaint"),
    [
        (ts("InferenceService", {"service": "x"}), "takes no fallback (its previous revision"),
        (ts("Rollout", {"backend": "x"}), "takes no fallback (its stable revision"),
        (ts("Rollout", weight=30), "cannot send 30%: an abort sends all"),
        (ts("AIGatewayRoute"), "needs fallback.backend: the AIServiceBackend"),
        (ts("AIGatewayRoute", {"service": "x"}), "fallback.service does not fit router kind AIGatewayRoute"),
        (ts("HTTPRoute", {}), "needs fallback.service or fallback.inferencePool"),
        (ts("VirtualService", {"inferencePool": "p"}), "fallback.inferencePool does not fit"),
        (ts("HTTPRoute", {"inferencePool": "p", "port": 80}), "fallback.port goes with fallback.service"),
    ],
)  # fmt: skip
def test_validate_explains_serving_router_problems(action, complaint):
    problems = TrafficShift().validate(action, {})
    assert len(problems) == 1 and complaint in problems[0], problems


def test_validate_accepts_the_serving_routers():
    for action in (
        ts("InferenceService", weight=100), ts("InferenceService", weight=25), ts("Rollout"),
        ts("HTTPRoute", {"inferencePool": "p"}, weight=30), ts("AIGatewayRoute", {"backend": "b"}),
    ):  # fmt: skip
        assert TrafficShift().validate(action, {}) == [], action
    both = TrafficShift().validate(ts("HTTPRoute", {"inferencePool": "p", "service": "s"}), {})
    assert both == ["TrafficShift names fallback.service and fallback.inferencePool: give one"]


# --- Through the action, on the in-memory cluster ------------------------------------------


def fake_cluster() -> FakeCluster:
    fake = FakeCluster(DEFAULT_KINDS | SERVING)
    fake.add({"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "chat", "namespace": NS},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chat"}},
                       "template": {"metadata": {"labels": {"app": "chat"}},
                                    "spec": {"containers": [{"name": "llm", "image": "llm:1"}]}}}})  # fmt: skip
    return fake


def ctx(fake: FakeCluster, spec: Body, target: Body | None = None, **kw: Any) -> ActionContext:
    incident = {"apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
                "metadata": {"name": "inc", "namespace": NS, "uid": "u1"}}  # fmt: skip
    target = target or fake.obj("Deployment", NS, "chat")
    return ActionContext(incident, target, {"type": "TrafficShift", **spec}, {}, api=fake, **kw)


def stable(obj: Body | None) -> Body:
    assert obj is not None
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("resourceVersion", None)
    obj["metadata"].pop("generation", None)
    return obj


def test_rollout_abort_goes_through_the_status_subresource_and_back():
    fake = fake_cluster()
    fake.add(rollout())
    ref = Ref("Rollout", NS, "model-server")
    before = fake.obj("Rollout", NS, "model-server")
    spec = {"router": {"kind": "Rollout", "name": "model-server"}}
    action = REGISTRY["TrafficShift"]

    outcome = action.apply(ctx(fake, spec))
    assert outcome.state == "Applied", outcome.message
    assert "100% to the stable revision (ReplicaSet hash 6f9c8d) (was 0%)" in outcome.message
    assert "now 100% to the stable revision" in outcome.message
    # The ledger with the object (a PUT, which cannot set the status), then the status.
    assert fake.writes == [("update", "Rollout/model-server"), ("status", "Rollout/model-server")]
    now = fake.obj("Rollout", NS, "model-server")
    assert now["status"]["abort"] is True
    assert ledger.holds(now, HOLDER, "TrafficShift:Rollout/model-server") == {"/status/abort": True}
    assert outcome.originals == {"Rollout/model-server": {"/status/abort": {"$absent": True}}}

    fake.writes.clear()
    again = action.apply(ctx(fake, spec))
    assert again.state == "Applied" and not again.changed and fake.writes == []

    # `kubectl argo rollouts retry` clears it: contested, and the abort is put back.
    fake.patch_status(ref, {"abort": False})
    repaired = action.apply(ctx(fake, spec))
    assert repaired.contested == ["Rollout/model-server"]
    assert fake.obj("Rollout", NS, "model-server")["status"]["abort"] is True

    fake.writes.clear()
    undone = action.revert(ctx(fake, spec), outcome.objects)
    assert undone.state == "Reverted" and undone.changed
    # The status first, while the ledger still says what to undo; the ledger after.
    assert fake.writes == [("status", "Rollout/model-server"), ("update", "Rollout/model-server")]
    assert stable(fake.obj("Rollout", NS, "model-server")) == stable(before)


def test_rollout_undo_without_its_ledger_uses_the_originals_kept_in_the_status():
    fake = fake_cluster()
    fake.add(rollout())
    spec = {"router": {"kind": "Rollout", "name": "model-server"}}
    action = REGISTRY["TrafficShift"]
    outcome = action.apply(ctx(fake, spec))
    obj = fake.obj("Rollout", NS, "model-server")
    del obj["metadata"]["annotations"][ledger.ANNOTATION]  # someone removed the annotation
    fake.replace(Ref("Rollout", NS, "model-server"), obj)
    action.revert(ctx(fake, spec, known_originals=outcome.originals), outcome.objects)
    assert "abort" not in fake.obj("Rollout", NS, "model-server")["status"]


def test_isvc_canary_back_and_given_back_in_steps_through_the_ledger():
    fake = fake_cluster()
    fake.add(isvc(20))
    before = fake.obj("InferenceService", NS, "llama")
    spec = {"router": {"kind": "InferenceService", "name": "llama"}}
    action = REGISTRY["TrafficShift"]
    outcome = action.apply(ctx(fake, spec))
    assert "100% to the previous revision (was 80%)" in outcome.message
    path = "/spec/predictor/canaryTrafficPercent"
    assert get(fake.obj("InferenceService", NS, "llama"), path) == 0
    for weight, canary in ((75, 5), (50, 10)):
        action.apply(ctx(fake, {**spec, "weight": weight}))
        assert get(fake.obj("InferenceService", NS, "llama"), path) == canary
    # A new model shipped meanwhile is kept by the undo.
    obj = fake.obj("InferenceService", NS, "llama")
    obj["spec"]["predictor"]["model"]["storageUri"] = "hf://meta-llama/Llama-3.1-8B-Instruct-fixed"
    fake.replace(Ref("InferenceService", NS, "llama"), obj)
    action.revert(ctx(fake, spec), outcome.objects)
    after = fake.obj("InferenceService", NS, "llama")
    assert get(after, path) == 20
    before["spec"]["predictor"]["model"]["storageUri"] += "-fixed"
    assert stable(after) == stable(before)


def test_missing_or_uninstalled_fallbacks_fail_readably_and_change_nothing():
    fake = fake_cluster()
    fake.add(aigw_route())
    fake.add(httproute(pool_ref("chat-pool")))
    action = REGISTRY["TrafficShift"]
    spec = {
        "router": {"kind": "AIGatewayRoute", "name": "llm-route"},
        "fallback": {"backend": "nope"},
    }
    outcome = action.apply(ctx(fake, spec))
    assert outcome.state == "Failed"
    assert "fallback AIServiceBackend nope not found in namespace prod" in outcome.message
    assert "point fallback.backend at the AIServiceBackend" in outcome.message
    fake.installed.discard("InferencePool")
    spec = {"router": {"kind": "HTTPRoute", "name": "chat"}, "fallback": {"inferencePool": "safe"}}
    outcome = action.apply(ctx(fake, spec))
    assert outcome.state == "Failed"
    assert "does not serve inferencepools.inference.networking.k8s.io/v1" in outcome.message
    assert fake.writes == []


# --- The policy check ----------------------------------------------------------------------


def policy_with(*actions: Body) -> Body:
    return {"apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "p", "namespace": NS},
            "spec": {"responses": [{"severity": 1, "actions": list(actions)}]}}  # fmt: skip


def test_policy_check_names_missing_pools_and_backends():
    fake = fake_cluster()
    fake.add({"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
              "metadata": {"name": "safe", "namespace": NS}, "spec": {}})  # fmt: skip
    body = policy_with(
        ts("HTTPRoute", {"inferencePool": "safe"}),
        ts("HTTPRoute", {"inferencePool": "gone"}),
        ts("AIGatewayRoute", {"backend": "nope"}),
        ts("InferenceService"),
        ts("Rollout"),
    )
    assert policy_status.cluster_problems(body, fake) == [
        f"TrafficShift fallback InferencePool {NS}/gone does not exist",
        f"TrafficShift fallback AIServiceBackend {NS}/nope does not exist",
    ]
    fake.installed.discard("AIServiceBackend")
    problems = policy_status.cluster_problems(
        policy_with(ts("AIGatewayRoute", {"backend": "b"})), fake
    )
    assert problems == [
        f"TrafficShift fallback AIServiceBackend {NS}/b does not exist: this cluster does not "
        "serve aiservicebackends.aigateway.envoyproxy.io/v1beta1 (install its CRDs)"
    ]


# --- Tenant bounds -------------------------------------------------------------------------


def pool(name: str, app: str, fallback: bool = False) -> Body:
    meta: Body = {"name": name, "namespace": NS}
    if fallback:
        meta["labels"] = {FALLBACK_LABEL: "true"}
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": meta,
            "spec": {"selector": {"matchLabels": {"app": app}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": f"{name}-epp", "port": {"number": 9002}}}}  # fmt: skip


def via(kind: str, name: str, **fallback: str) -> Body:
    """A TrafficShift through router KIND/NAME to FALLBACK (none when empty)."""
    spec: Body = {"type": "TrafficShift", "router": {"kind": kind, "name": name}}
    return {**spec, "fallback": fallback} if fallback else spec


def bounded(spec: Body, fake: FakeCluster, target: Body | None = None) -> list[str]:
    target = target or fake.obj("Deployment", NS, "chat")
    assert target is not None
    return bounds.step_problems(spec, NS, target, fake.get, TenantBounds())


def test_bounds_trace_an_httproute_over_pools_to_the_targets_pods():
    fake = fake_cluster()
    fake.add(pool("chat-pool", "chat"))
    fake.add(pool("safe-pool", "chat-safe", fallback=True))
    fake.add(pool("plain-pool", "chat-safe"))
    fake.add(pool("payments-pool", "payments"))
    fake.add({**httproute(pool_ref("chat-pool")), "metadata": {"name": "ours", "namespace": NS}})
    fake.add(
        {**httproute(pool_ref("payments-pool")), "metadata": {"name": "theirs", "namespace": NS}}
    )
    assert bounded(via("HTTPRoute", "ours", inferencePool="safe-pool"), fake) == []
    (problem,) = bounded(via("HTTPRoute", "theirs", inferencePool="safe-pool"), fake)
    assert "sends traffic to InferencePool payments-pool, which selects none" in problem
    (problem,) = bounded(via("HTTPRoute", "ours", inferencePool="plain-pool"), fake)
    assert "fallback InferencePool plain-pool is not marked as a fallback" in problem
    assert f'{FALLBACK_LABEL}="true"' in problem and "fallbackServices" not in problem


def test_bounds_trace_an_aigatewayroute_through_backends_to_services():
    fake = fake_cluster()
    fake.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": NS},
              "spec": {"selector": {"app": "chat"}, "ports": [{"port": 80}]}})  # fmt: skip
    for name, host in (
        ("llama-primary", f"chat.{NS}.svc.cluster.local"),
        ("elsewhere", "api.openai.com"),
    ):
        fake.add({"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "Backend",
                  "metadata": {"name": name, "namespace": NS},
                  "spec": {"endpoints": [{"fqdn": {"hostname": host, "port": 80}}]}})  # fmt: skip
    for name, backend, labels in (("llama-primary", "llama-primary", {}),
                                  ("llama-fallback", "elsewhere", {FALLBACK_LABEL: "true"}),
                                  ("external", "elsewhere", {})):  # fmt: skip
        fake.add({"apiVersion": "aigateway.envoyproxy.io/v1beta1", "kind": "AIServiceBackend",
                  "metadata": {"name": name, "namespace": NS, "labels": labels},
                  "spec": {"schema": {"name": "OpenAI"},
                           "backendRef": {"name": backend, "kind": "Backend", "group": "gateway.envoyproxy.io"}}})  # fmt: skip
    route = aigw_route()
    route["spec"]["rules"] = route["spec"]["rules"][:1]  # the pool rule serves another model
    fake.add(route)
    spec = via("AIGatewayRoute", "llm-route", backend="llama-fallback")
    assert bounded(spec, fake) == []
    route["spec"]["rules"][0]["backendRefs"].append({"name": "external", "weight": 1})
    fake.objects[("AIGatewayRoute", NS, "llm-route")] = copy.deepcopy(route)
    (problem,) = bounded(spec, fake)
    assert "AIServiceBackend external (Backend elsewhere: not traced to a Service" in problem


def test_bounds_an_isvc_or_rollout_router_is_the_target_itself():
    fake = fake_cluster()
    fake.add(isvc(20))
    fake.add(rollout())
    target = fake.obj("InferenceService", NS, "llama")
    spec = via("InferenceService", "llama")
    assert bounded(spec, fake, target) == []
    (problem,) = bounded(spec, fake)  # the Deployment chat is the target: not this router's
    assert "router InferenceService llama is not the incident's target (Deployment chat" in problem
    spec = via("Rollout", "model-server")
    assert bounded(spec, fake, fake.obj("Rollout", NS, "model-server")) == []
    # A Rollout that runs the target Deployment's template (workloadRef) routes its traffic.
    obj = fake.obj("Rollout", NS, "model-server")
    obj["spec"]["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    fake.objects[("Rollout", NS, "model-server")] = obj
    assert bounded(spec, fake) == []


def test_bounds_a_pool_selects_a_kserve_target_by_the_labels_kserve_gives_its_pods():
    fake = fake_cluster()
    fake.add(isvc(20))
    fake.add(pool("llama-pool", "unused"))
    obj = fake.obj("InferencePool", NS, "llama-pool")
    obj["spec"]["selector"]["matchLabels"] = {"serving.kserve.io/inferenceservice": "llama"}
    fake.objects[("InferencePool", NS, "llama-pool")] = obj
    fake.add(pool("safe-pool", "chat-safe", fallback=True))
    fake.add(httproute(pool_ref("llama-pool")))
    spec = via("HTTPRoute", "chat", inferencePool="safe-pool")
    assert bounded(spec, fake, fake.obj("InferenceService", NS, "llama")) == []
    (problem,) = bounded(spec, fake)  # the Deployment chat's pods are not in that pool
    assert "InferencePool llama-pool, which selects none of the incident's targets" in problem
