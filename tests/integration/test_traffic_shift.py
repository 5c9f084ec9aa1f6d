"""TrafficShift against a real apiserver, with the real Istio and Gateway API CRDs.

Each test builds a model Deployment, its Service, a fallback Service and a router
object, applies the action as the engine will, and checks both the routed
traffic and that undo gives back the router object exactly as it was.
"""

from __future__ import annotations

import copy

import pytest

from ai_incident_operator import kube, ledger
from ai_incident_operator.actions import REGISTRY, ActionContext
from ai_incident_operator.actions import traffic as _traffic  # noqa: F401 - registers it
from ai_incident_operator.kube import Ref

pytestmark = pytest.mark.integration

VOLATILE = ("resourceVersion", "managedFields", "generation")


def _deployment(namespace: str) -> dict:
    labels = {"app": "chat"}
    return kube.create(
        "Deployment",
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat-llm", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "llm", "image": "registry.invalid/llm:1"}]},
                },
            },
        },
    )


def _service(namespace: str, name: str, app: str, port: int = 80) -> dict:
    return kube.create(
        "Service",
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port}]},
        },
    )


def _virtualservice(namespace: str) -> dict:
    return kube.create(
        "VirtualService",
        namespace,
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "chat", "annotations": {"team": "ml"}},
            "spec": {
                "hosts": ["chat"],
                "http": [
                    {
                        "name": "api",
                        "match": [{"uri": {"prefix": "/v1"}}],
                        "route": [
                            {
                                "destination": {"host": "chat", "subset": "stable"},
                                "weight": 90,
                                "headers": {"request": {"set": {"x-model": "stable"}}},
                            },
                            {"destination": {"host": "chat", "subset": "canary"}, "weight": 10},
                        ],
                    },
                    {"route": [{"destination": {"host": "chat", "port": {"number": 80}}}]},
                ],
            },
        },
    )


def _httproute(namespace: str) -> dict:
    return kube.create(
        "HTTPRoute",
        namespace,
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "chat"},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "rules": [{"backendRefs": [{"name": "chat", "port": 80}]}],
            },
        },
    )


def _ctx(namespace: str, spec: dict, dry_run: bool = False) -> ActionContext:
    incident = {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "inc", "namespace": namespace, "uid": "u1"},
    }
    target = kube.get(Ref("Deployment", namespace, "chat-llm"))
    assert target is not None
    return ActionContext(incident, target, {"type": "TrafficShift", **spec}, {}, dry_run)


def _stable(obj: dict | None) -> dict:
    """OBJ minus what the apiserver changes on every write."""
    assert obj is not None
    obj = copy.deepcopy(obj)
    for field in VOLATILE:
        obj["metadata"].pop(field, None)
    return obj


@pytest.fixture
def setup(namespace: str) -> str:
    _deployment(namespace)
    _service(namespace, "chat", "chat")
    _service(namespace, "chat-fallback", "chat-fallback", port=8080)
    return namespace


def test_virtualservice_sends_all_traffic_to_the_fallback_and_undo_is_exact(setup):
    ns = setup
    before = _virtualservice(ns)
    ref = Ref("VirtualService", ns, "chat")
    spec = {"router": {"kind": "VirtualService", "name": "chat"}, "fallback": {"service": "chat-fallback"}}  # fmt: skip
    action = REGISTRY["TrafficShift"]

    outcome = action.apply(_ctx(ns, spec))
    assert outcome.state == "Applied", outcome.message
    assert outcome.changed and outcome.objects == ["VirtualService/chat"]
    assert "100% to chat-fallback (was 0%)" in outcome.message
    assert "now 100% to chat-fallback" in outcome.message

    http = kube.get(ref)["spec"]["http"]
    for entry in http:
        routes = entry["route"]
        assert sum(r["weight"] for r in routes) == 100
        assert routes[-1] == {"destination": {"host": "chat-fallback"}, "weight": 100}
    # Fields other than the weight are kept.
    assert http[0]["route"][0]["headers"] == {"request": {"set": {"x-model": "stable"}}}
    assert http[0]["route"][1]["destination"]["subset"] == "canary"
    assert http[1]["route"][0]["destination"]["port"] == {"number": 80}

    # A repeat (the next reconcile) changes nothing and finds nothing contested.
    again = action.apply(_ctx(ns, spec))
    assert again.state == "Applied" and not again.changed and not again.contested

    undone = action.revert(_ctx(ns, spec), outcome.objects)
    assert undone.state == "Reverted" and undone.changed
    assert _stable(kube.get(ref)) == _stable(before)


def test_httproute_sends_30_percent_and_undo_is_exact(setup):
    ns = setup
    before = _httproute(ns)
    ref = Ref("HTTPRoute", ns, "chat")
    spec = {
        "router": {"kind": "HTTPRoute", "name": "chat"},
        "fallback": {"service": "chat-fallback"},
        "weight": 30,
    }
    action = REGISTRY["TrafficShift"]

    outcome = action.apply(_ctx(ns, spec))
    assert outcome.state == "Applied", outcome.message
    assert "30% to chat-fallback (was 0%)" in outcome.message
    refs = kube.get(ref)["spec"]["rules"][0]["backendRefs"]
    assert [(r["name"], r["port"], r["weight"]) for r in refs] == [
        ("chat", 80, 70),
        ("chat-fallback", 8080, 30),  # the fallback's only port, not the primary's 80
    ]

    # What the apiserver defaults inside the written backendRefs must not read as contested.
    again = action.apply(_ctx(ns, spec))
    assert not again.changed and not again.contested, again

    action.revert(_ctx(ns, spec), outcome.objects)
    assert _stable(kube.get(ref)) == _stable(before)


def test_progressive_undo_steps_back_from_the_original_split(setup):
    ns = setup
    before = _virtualservice(ns)
    ref = Ref("VirtualService", ns, "chat")
    spec = {"router": {"kind": "VirtualService", "name": "chat"}, "fallback": {"service": "chat-fallback"}}  # fmt: skip
    action = REGISTRY["TrafficShift"]
    outcome = action.apply(_ctx(ns, spec))
    # The engine re-applies at lower weights before letting go.
    for weight, expected in ((50, [45, 5, 50]), (0, [90, 10, 0])):
        step = action.apply(_ctx(ns, {**spec, "weight": weight}))
        assert step.state == "Applied" and step.changed, step.message
        assert [r["weight"] for r in kube.get(ref)["spec"]["http"][0]["route"]] == expected
    obj = kube.get(ref)
    assert ledger.holders(obj) == [(f"{ns}/inc", "TrafficShift:VirtualService/chat")]
    action.revert(_ctx(ns, spec), outcome.objects)
    assert _stable(kube.get(ref)) == _stable(before)


def test_service_router_takes_the_fallbacks_selector_and_undo_is_exact(setup):
    ns = setup
    ref = Ref("Service", ns, "chat")
    before = kube.get(ref)
    spec = {"router": {"kind": "Service", "name": "chat"}, "fallback": {"service": "chat-fallback"}}
    action = REGISTRY["TrafficShift"]
    assert action.validate(spec, {}) == []

    outcome = action.apply(_ctx(ns, spec))
    assert outcome.state == "Applied", outcome.message
    assert kube.get(ref)["spec"]["selector"] == {"app": "chat-fallback"}
    action.revert(_ctx(ns, spec), outcome.objects)
    assert _stable(kube.get(ref)) == _stable(before)


def test_missing_fallback_service_fails_readably_and_changes_nothing(namespace):
    ns = namespace
    _deployment(ns)
    _service(ns, "chat", "chat")
    before = _virtualservice(ns)
    spec = {"router": {"kind": "VirtualService", "name": "chat"}, "fallback": {"service": "chat-fallback"}}  # fmt: skip
    outcome = REGISTRY["TrafficShift"].apply(_ctx(ns, spec))
    assert outcome.state == "Failed"
    assert "fallback Service chat-fallback not found" in outcome.message
    assert "create it" in outcome.message
    assert not outcome.changed
    assert kube.get(Ref("VirtualService", ns, "chat")) == before  # not even resourceVersion moved


def test_missing_router_fails_readably(setup):
    spec = {"router": {"kind": "HTTPRoute", "name": "nope"}, "fallback": {"service": "chat-fallback"}}  # fmt: skip
    outcome = REGISTRY["TrafficShift"].apply(_ctx(setup, spec))
    assert outcome.state == "Failed"
    assert f"router HTTPRoute nope not found in namespace {setup}" in outcome.message


def test_dry_run_writes_nothing(setup):
    ns = setup
    before = _httproute(ns)
    spec = {"router": {"kind": "HTTPRoute", "name": "chat"}, "fallback": {"service": "chat-fallback"}}  # fmt: skip
    outcome = REGISTRY["TrafficShift"].apply(_ctx(ns, spec, dry_run=True))
    assert outcome.state == "DryRun"
    assert "would set HTTPRoute/chat: 100% to chat-fallback (was 0%)" in outcome.message
    assert not outcome.changed
    assert kube.get(Ref("HTTPRoute", ns, "chat")) == before
