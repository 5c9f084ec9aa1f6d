"""The traffic routers and TrafficShift's validation, as pure functions over dicts."""

import copy

import pytest

from ai_incident_operator import ledger
from ai_incident_operator.actions.traffic import TrafficShift, unmitigated
from ai_incident_operator.fieldpath import get
from ai_incident_operator.traffic import KINDS, RouterError, get_router
from ai_incident_operator.traffic.router import reweigh, split

FALLBACK = {"service": "chat-fallback"}
FALLBACK_SVC = {
    "metadata": {"name": "chat-fallback"},
    "spec": {"selector": {"app": "chat-fallback"}, "ports": [{"port": 8080}]},
}


def vs(*http: dict) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {"hosts": ["chat"], "http": list(http)},
    }


def route(*refs: dict) -> dict:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": "prod"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": list(refs)}]},
    }


def weights_of(items: list[dict]) -> list[int]:
    return [i["weight"] for i in items]


# --- arithmetic ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "base", "expected"),
    [
        (100, [1], [100]),
        (70, [50, 50], [35, 35]),
        (70, [1, 1, 1], [24, 23, 23]),
        (70, [0, 100], [0, 70]),  # a dark canary stays dark
        (30, [0, 0], [15, 15]),
        (0, [60, 40], [0, 0]),
    ],
)
def test_split_is_proportional_and_exact(total, base, expected):
    assert split(total, base) == expected


@pytest.mark.parametrize("weight", [0, 1, 30, 33, 50, 99, 100])
def test_reweigh_always_sums_to_100(weight):
    for base, fb in (
        ([90, 10, 0], [False, False, True]),
        ([1, 1, 1, 0], [False, False, False, True]),
        ([0, 0, 5], [False, False, True]),
        ([100], [True]),
    ):
        result = reweigh(base, fb, weight)
        assert sum(result) == 100
        assert any(result)


# --- VirtualService ------------------------------------------------------------------------


def test_virtualservice_sends_everything_to_an_added_fallback():
    obj = vs({"name": "main", "route": [{"destination": {"host": "chat", "subset": "v1"}}]})
    values = get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)
    assert values == {
        "/spec/http[name=main]/route": [
            {"destination": {"host": "chat", "subset": "v1"}, "weight": 0},
            {"destination": {"host": "chat-fallback"}, "weight": 100},
        ]
    }


def test_virtualservice_partial_weight_scales_primaries_and_keeps_their_fields():
    headers = {"request": {"set": {"x-model": "v1"}}}
    obj = vs(
        {
            "match": [{"uri": {"prefix": "/v1"}}],
            "route": [
                {"destination": {"host": "chat", "subset": "v1"}, "weight": 80, "headers": headers},
                {"destination": {"host": "chat", "subset": "v2"}, "weight": 20},
            ],
        }
    )
    before = copy.deepcopy(obj)
    values = get_router("VirtualService").shift(
        obj, {"service": "chat-fallback", "port": 8080}, 30, FALLBACK_SVC
    )
    new = values["/spec/http[0]/route"]  # no name: by index
    assert weights_of(new) == [56, 14, 30]
    assert new[0]["headers"] == headers and new[0]["destination"]["subset"] == "v1"
    assert new[2]["destination"] == {"host": "chat-fallback", "port": {"number": 8080}}
    assert obj == before  # pure: the input is untouched


def test_virtualservice_reuses_an_existing_fallback_destination():
    fb = {"destination": {"host": "chat-fallback.prod.svc.cluster.local", "subset": "safe"}}
    obj = vs({"route": [{"destination": {"host": "chat"}, "weight": 90}, {**fb, "weight": 10}]})
    new = get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)[
        "/spec/http[0]/route"
    ]
    assert len(new) == 2
    assert new[1] == {**fb, "weight": 100}
    assert weights_of(new) == [0, 100]
    # ...and its share counts: 10% before.
    assert get_router("VirtualService").weights(obj, FALLBACK, FALLBACK_SVC) == (90, 10)


def test_a_host_that_merely_starts_with_the_fallback_name_is_not_the_fallback():
    obj = vs({"route": [{"destination": {"host": "chat-fallback-old"}}]})
    new = get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)[
        "/spec/http[0]/route"
    ]
    assert [d["destination"]["host"] for d in new] == ["chat-fallback-old", "chat-fallback"]


def test_virtualservice_shifts_every_routed_http_entry_and_skips_redirects():
    obj = vs(
        {"name": "a", "route": [{"destination": {"host": "chat"}}]},
        {"name": "moved", "redirect": {"uri": "/new"}},
        {"name": "b", "route": [{"destination": {"host": "chat-b"}, "weight": 100}]},
    )
    values = get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)
    assert set(values) == {"/spec/http[name=a]/route", "/spec/http[name=b]/route"}
    for new in values.values():
        assert sum(weights_of(new)) == 100 and new[-1]["weight"] == 100


def test_duplicate_or_awkward_names_fall_back_to_indexes():
    obj = vs(
        {"name": "x", "route": [{"destination": {"host": "chat"}}]},
        {"name": "x", "route": [{"destination": {"host": "chat"}}]},
        {"name": "a/b", "route": [{"destination": {"host": "chat"}}]},
    )
    values = get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)
    assert set(values) == {f"/spec/http[{i}]/route" for i in range(3)}


def test_virtualservice_without_http_routes_is_a_readable_error():
    for obj in (vs(), vs({"redirect": {"uri": "/x"}}), vs({"route": []})):
        with pytest.raises(RouterError, match="VirtualService chat has no http route"):
            get_router("VirtualService").shift(obj, FALLBACK, 100, FALLBACK_SVC)


def test_virtualservice_weights_reads_the_smallest_share():
    obj = vs(
        {"route": [{"destination": {"host": "chat"}, "weight": 40}, {"destination": {"host": "chat-fallback"}, "weight": 60}]},
        {"route": [{"destination": {"host": "chat"}}]},
    )  # fmt: skip
    assert get_router("VirtualService").weights(obj, FALLBACK, FALLBACK_SVC) == (100, 0)
    assert get_router("VirtualService").weights(vs(obj["spec"]["http"][0]), FALLBACK, {}) == (
        40,
        60,
    )


# --- HTTPRoute -----------------------------------------------------------------------------


def test_httproute_adds_the_fallback_backend_with_the_primary_port():
    obj = route({"kind": "Service", "name": "chat", "port": 8080, "weight": 1})
    values = get_router("HTTPRoute").shift(obj, FALLBACK, 30, FALLBACK_SVC)
    assert values == {
        "/spec/rules[0]/backendRefs": [
            {"kind": "Service", "name": "chat", "port": 8080, "weight": 70},
            {"kind": "Service", "name": "chat-fallback", "port": 8080, "weight": 30},
        ]
    }


def test_httproute_fallback_port_from_policy_or_the_fallbacks_only_port():
    obj = route({"name": "chat", "port": 80})
    router = get_router("HTTPRoute")
    new = router.shift(obj, {**FALLBACK, "port": 9000}, 100, FALLBACK_SVC)
    assert new["/spec/rules[0]/backendRefs"][1]["port"] == 9000
    # 80 is not a port of the fallback, 8080 is its only one.
    new = router.shift(obj, FALLBACK, 100, FALLBACK_SVC)
    assert new["/spec/rules[0]/backendRefs"][1]["port"] == 8080
    two_ports = {"spec": {"ports": [{"port": 8080}, {"port": 8443}]}}
    with pytest.raises(RouterError, match=r"set fallback\.port"):
        router.shift(obj, FALLBACK, 100, two_ports)


def test_httproute_reuses_the_fallback_and_keeps_filters_and_relative_weights():
    filters = [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x", "value": "1"}]}}]  # fmt: skip
    obj = route(
        {"name": "chat", "port": 80, "weight": 3, "filters": filters},
        {"name": "chat-canary", "port": 80},  # weight missing: 1
        {"name": "chat-fallback", "port": 8080, "weight": 0},
    )
    router = get_router("HTTPRoute")
    assert router.weights(obj, FALLBACK, FALLBACK_SVC) == (100, 0)
    new = router.shift(obj, FALLBACK, 20, FALLBACK_SVC)["/spec/rules[0]/backendRefs"]
    assert weights_of(new) == [60, 20, 20]
    assert new[0]["filters"] == filters and len(new) == 3


def test_httproute_backend_of_another_kind_or_namespace_is_not_the_fallback():
    obj = route(
        {"name": "chat", "port": 80},
        {"group": "example.io", "kind": "Bucket", "name": "chat-fallback"},
        {"name": "chat-fallback", "namespace": "other", "port": 8080},
    )
    new = get_router("HTTPRoute").shift(obj, FALLBACK, 100, FALLBACK_SVC)
    refs = new["/spec/rules[0]/backendRefs"]
    assert len(refs) == 4 and weights_of(refs) == [0, 0, 0, 100]


def test_httproute_named_rules_and_rules_without_backends():
    obj = route({"name": "chat", "port": 80})
    obj["spec"]["rules"] = [
        {"name": "redirect", "filters": [{"type": "RequestRedirect"}]},
        {"name": "api", "backendRefs": [{"name": "chat", "port": 80}]},
    ]
    assert list(get_router("HTTPRoute").shift(obj, FALLBACK, 100, FALLBACK_SVC)) == [
        "/spec/rules[name=api]/backendRefs"
    ]
    obj["spec"]["rules"] = obj["spec"]["rules"][:1]
    with pytest.raises(RouterError, match="HTTPRoute chat has no rule with backendRefs"):
        get_router("HTTPRoute").shift(obj, FALLBACK, 100, FALLBACK_SVC)


# --- Service -------------------------------------------------------------------------------


def test_service_takes_the_fallbacks_whole_selector():
    obj = {"metadata": {"name": "chat"}, "spec": {"selector": {"app": "chat", "tier": "llm"}}}
    router = get_router("Service")
    assert router.shift(obj, FALLBACK, 100, FALLBACK_SVC) == {
        "/spec/selector": {"app": "chat-fallback"}
    }
    assert router.shift(obj, FALLBACK, 0, FALLBACK_SVC) == {
        "/spec/selector": {"app": "chat", "tier": "llm"}
    }
    assert router.weights(obj, FALLBACK, FALLBACK_SVC) == (100, 0)
    shifted = {"metadata": {"name": "chat"}, "spec": {"selector": {"app": "chat-fallback"}}}
    assert router.weights(shifted, FALLBACK, FALLBACK_SVC) == (0, 100)


def test_service_cannot_split_or_shift_to_a_selectorless_fallback():
    obj = {"metadata": {"name": "chat"}, "spec": {"selector": {"app": "chat"}}}
    router = get_router("Service")
    assert not router.splits
    with pytest.raises(RouterError, match="cannot split"):
        router.shift(obj, FALLBACK, 30, FALLBACK_SVC)
    with pytest.raises(RouterError, match="has no selector"):
        router.shift(obj, FALLBACK, 100, {"spec": {"ports": [{"port": 80}]}})


def test_get_router_names_the_supported_kinds():
    assert KINDS == (
        "Service", "VirtualService", "HTTPRoute", "InferenceService", "AIGatewayRoute", "Rollout",
    )  # fmt: skip
    with pytest.raises(RouterError, match="Service, VirtualService, HTTPRoute, InferenceService"):
        get_router("Ingress")


# --- TrafficShift --------------------------------------------------------------------------


def spec(**over):
    return {
        "type": "TrafficShift",
        "router": {"kind": "VirtualService", "name": "chat"},
        "fallback": {"service": "chat-fallback"},
        **over,
    }


def test_key_names_the_router():
    assert TrafficShift().key(spec()) == "TrafficShift:VirtualService/chat"


@pytest.mark.parametrize(
    ("action", "complaint"),
    [
        (spec(router={"kind": "Service", "name": "chat"}, weight=30), "cannot send 30%"),
        (spec(router={"kind": "Ingress", "name": "chat"}), "'Ingress' is not supported"),
        (spec(router={"kind": "VirtualService"}), "needs router.kind and router.name"),
        (spec(fallback={}), "needs fallback.service"),
        (spec(weight=0), "from 1 to 100"),
        (spec(weight=True), "from 1 to 100"),
        (spec(router={"kind": "Service", "name": "chat-fallback"}), "are the same Service"),
    ],
)
def test_validate_explains_problems(action, complaint):
    problems = TrafficShift().validate(action, {})
    assert len(problems) == 1 and complaint in problems[0]


def test_validate_accepts_the_documented_examples():
    assert TrafficShift().validate(spec(weight=100), {}) == []
    assert TrafficShift().validate(spec(weight=30), {}) == []
    assert TrafficShift().validate(spec(router={"kind": "Service", "name": "chat"}), {}) == []


def test_intermediate_weights_scale_the_original_split_not_the_shifted_one():
    """Progressive undo re-applies at 50 then 0: from the ledger's originals, not the 0/100 now."""
    obj = vs(
        {
            "route": [
                {"destination": {"host": "chat", "subset": "v1"}, "weight": 75},
                {"destination": {"host": "chat", "subset": "v2"}, "weight": 25},
            ]
        }
    )
    original = copy.deepcopy(obj)
    router = get_router("VirtualService")
    path = "/spec/http[0]/route"
    for weight, expected in ((100, [0, 0, 100]), (50, [38, 12, 50]), (0, [75, 25, 0])):
        values = router.shift(unmitigated(obj), FALLBACK, weight, FALLBACK_SVC)
        ledger.hold(obj, "prod/inc", "TrafficShift:VirtualService/chat", values)
        assert weights_of(get(obj, path)) == expected
    ledger.release(obj, "prod/inc")
    assert obj == original
    assert unmitigated(obj) == obj  # nothing held any more
