"""The four actions against a real apiserver: apply, check the objects, undo, check again.

Undo must give back the objects exactly (spec and annotations), while a change
someone made in between (a new image shipped as the fix) survives. Notify posts
to a real HTTP server in the test, with one URL kept in a Secret.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from ai_incident_operator import kube, ledger
from ai_incident_operator.actions import (  # noqa: F401
    REGISTRY,
    ActionContext,
    config,
    guardrail,
    monitoring,
    notify,
)
from ai_incident_operator.kube import Ref

from kit import create_incident, wait_for

pytestmark = pytest.mark.integration

REVISION = "deployment.kubernetes.io/revision"  # the Deployment controller's, bumped per rollout
SIDECAR = {"name": "guardrail", "image": "guardrail:v1", "ports": [{"containerPort": 8001}]}


def make_objects(ns: str) -> None:
    kube.create(
        "Deployment",
        ns,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "chat-llm", "annotations": {"team": "ml"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "chat"}},
                "template": {
                    "metadata": {"labels": {"app": "chat"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "llm",
                                "image": "llm:v42",
                                "env": [{"name": "TEMPERATURE", "value": "0.7"}],
                                "envFrom": [{"configMapRef": {"name": "chat-config"}}],
                            }
                        ]
                    },
                },
            },
        },
    )
    kube.create(
        "Service",
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "chat"},
            "spec": {
                "selector": {"app": "chat"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        },
    )
    kube.create(
        "ConfigMap",
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chat-config"},
            "data": {"temperature": "0.7"},
        },
    )


def context(
    ns: str, spec: dict, policy: dict | None = None, dry_run: bool = False
) -> ActionContext:
    uid = kube.get(Ref("AIIncident", ns, "inc")) or create_incident(
        ns, "inc", {"category": "Other"}
    )
    incident = {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "inc", "namespace": ns, "uid": uid["metadata"]["uid"]},
    }
    target = kube.get(Ref("Deployment", ns, "chat-llm"))
    return ActionContext(incident, target, spec, policy or {}, dry_run)


def snapshot(ns: str, kind: str, name: str) -> dict[str, Any]:
    """What undo must restore: spec (or data) and annotations."""
    obj = kube.get(Ref(kind, ns, name))
    annotations = dict(obj["metadata"].get("annotations") or {})
    annotations.pop(REVISION, None)
    return {"body": obj.get("spec", obj.get("data")), "annotations": annotations}


def containers(ns: str) -> list[dict]:
    return kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["template"]["spec"]["containers"]


def ship_v43(ns: str) -> None:
    """Someone ships the fix while the mitigation holds."""

    def mutate(obj: dict) -> bool:
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = "llm:v43"
        return True

    kube.update(Ref("Deployment", ns, "chat-llm"), mutate)


# --- GuardrailSidecar ---------------------------------------------------------------------


def test_guardrail_sidecar_routes_through_the_sidecar_and_undoes_exactly(namespace):
    make_objects(namespace)
    spec = {
        "type": "GuardrailSidecar",
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": 8001},
    }
    deployment, service = (
        snapshot(namespace, "Deployment", "chat-llm"),
        snapshot(namespace, "Service", "chat"),
    )
    action = REGISTRY["GuardrailSidecar"]
    ctx = context(namespace, spec)

    outcome = action.apply(ctx)
    assert outcome.state == "Applied", outcome.message
    assert outcome.objects == ["Deployment/chat-llm", "Service/chat"]
    [llm, sidecar] = containers(namespace)
    assert (llm["name"], sidecar["name"], sidecar["image"]) == ("llm", "guardrail", "guardrail:v1")
    svc = kube.get(Ref("Service", namespace, "chat"))
    assert svc["spec"]["ports"][0]["targetPort"] == 8001
    assert ledger.holders(svc) == [(f"{namespace}/inc", "GuardrailSidecar:guardrail")]

    # The sidecar is held as the apiserver stores it, so applying again changes nothing.
    again = action.apply(context(namespace, spec))
    assert (again.state, again.changed, again.contested) == ("Applied", False, [])

    ship_v43(namespace)
    undone = action.revert(context(namespace, spec), outcome.objects)
    assert undone.state == "Reverted" and undone.changed
    assert snapshot(namespace, "Service", "chat") == service
    expected = copy.deepcopy(deployment)
    expected["body"]["template"]["spec"]["containers"][0]["image"] = "llm:v43"
    assert snapshot(namespace, "Deployment", "chat-llm") == expected

    assert action.revert(context(namespace, spec), outcome.objects).changed is False


def test_guardrail_unknown_service_port_fails_and_writes_nothing(namespace):
    make_objects(namespace)
    before = snapshot(namespace, "Deployment", "chat-llm")
    spec = {
        "type": "GuardrailSidecar",
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "grpc", "targetPort": 8001},
    }
    outcome = REGISTRY["GuardrailSidecar"].apply(context(namespace, spec))
    assert (outcome.state, outcome.message) == (
        "Failed",
        "Service chat has no port grpc; ports: http (80)",
    )
    assert snapshot(namespace, "Deployment", "chat-llm") == before  # the status may move


def test_guardrail_invalid_container_fails_with_the_apiservers_words(namespace):
    make_objects(namespace)
    spec = {
        "type": "GuardrailSidecar",
        "container": {"name": "guardrail", "image": "g:v1", "ports": [{"containerPort": 70000}]},
    }
    outcome = REGISTRY["GuardrailSidecar"].apply(context(namespace, spec))
    assert outcome.state == "Failed"
    assert outcome.message.startswith("the apiserver rejects sidecar guardrail:")
    assert "containerPort" in outcome.message
    assert [c["name"] for c in containers(namespace)] == ["llm"]


# --- ConservativeConfig -------------------------------------------------------------------


def test_conservative_config_sets_env_and_configmap_then_undoes_exactly(namespace):
    make_objects(namespace)
    spec = {
        "type": "ConservativeConfig",
        "container": "llm",
        "env": {"TEMPERATURE": "0", "MAX_TOKENS": "256"},
        "configMap": {"name": "chat-config", "data": {"temperature": "0", "safe.mode": "on"}},
    }
    deployment = snapshot(namespace, "Deployment", "chat-llm")
    configmap = snapshot(namespace, "ConfigMap", "chat-config")
    action = REGISTRY["ConservativeConfig"]

    outcome = action.apply(context(namespace, spec))
    assert outcome.state == "Applied", outcome.message
    assert outcome.objects == ["ConfigMap/chat-config", "Deployment/chat-llm"]
    assert kube.get(Ref("ConfigMap", namespace, "chat-config"))["data"] == {
        "temperature": "0",
        "safe.mode": "on",
    }
    dep = kube.get(Ref("Deployment", namespace, "chat-llm"))
    assert dep["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "TEMPERATURE", "value": "0"},
        {"name": "MAX_TOKENS", "value": "256"},
    ]
    # The pods read the ConfigMap through envFrom: the template changes, so they restart.
    assert config.ROLLOUT_ANNOTATION in dep["spec"]["template"]["metadata"]["annotations"]
    assert action.apply(context(namespace, spec)).changed is False

    ship_v43(namespace)
    undone = action.revert(context(namespace, spec), outcome.objects)
    assert undone.state == "Reverted" and undone.changed
    assert snapshot(namespace, "ConfigMap", "chat-config") == configmap
    expected = copy.deepcopy(deployment)
    expected["body"]["template"]["spec"]["containers"][0]["image"] = "llm:v43"
    assert snapshot(namespace, "Deployment", "chat-llm") == expected


def test_conservative_config_pins_the_image_until_undone(namespace):
    make_objects(namespace)
    deployment = snapshot(namespace, "Deployment", "chat-llm")
    spec = {"type": "ConservativeConfig", "container": "llm", "image": "llm:v41-safe"}
    action = REGISTRY["ConservativeConfig"]
    outcome = action.apply(context(namespace, spec))
    assert outcome.state == "Applied" and "llm image llm:v42 -> llm:v41-safe" in outcome.message
    assert containers(namespace)[0]["image"] == "llm:v41-safe"
    action.revert(context(namespace, spec), outcome.objects)
    assert snapshot(namespace, "Deployment", "chat-llm") == deployment


def test_conservative_config_names_what_is_missing(namespace):
    make_objects(namespace)
    action = REGISTRY["ConservativeConfig"]
    outcome = action.apply(
        context(namespace, {"type": "ConservativeConfig", "container": "model", "env": {"A": "1"}})
    )
    assert (outcome.state, outcome.message) == (
        "Failed",
        "container model is not in Deployment chat-llm; containers: llm",
    )
    spec = {
        "type": "ConservativeConfig",
        "container": "llm",
        "configMap": {"name": "nope", "data": {"k": "v"}},
    }
    outcome = action.apply(context(namespace, spec))
    assert (outcome.state, outcome.message) == (
        "Failed",
        f"ConfigMap nope not found in {namespace}",
    )


# --- IncreaseMonitoring -------------------------------------------------------------------

RULES = {
    "type": "IncreaseMonitoring",
    "rules": [{"alert": "ChatQualityWatch", "expr": "chat_quality_score < 0.9", "for": "1m"}],
}


def test_increase_monitoring_creates_an_owned_rule_and_deletes_it_on_undo(namespace):
    make_objects(namespace)
    action = REGISTRY["IncreaseMonitoring"]
    ref = Ref("PrometheusRule", namespace, "inc-monitoring")
    assert action.apply(context(namespace, RULES, dry_run=True)).state == "DryRun"
    assert kube.get(ref) is None

    ctx = context(namespace, RULES)
    outcome = action.apply(ctx)
    assert (outcome.state, outcome.objects, outcome.changed) == (
        "Applied",
        ["PrometheusRule/inc-monitoring"],
        True,
    )
    rule = kube.get(ref)
    assert rule["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "aiincident.io/v1alpha1",
            "kind": "AIIncident",
            "name": "inc",
            "uid": ctx.incident["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    assert rule["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "ai-incident-operator",
        "aiincident.io/incident": "inc",
    }
    assert rule["spec"]["groups"] == [
        {
            "name": "aiincident-inc",
            "rules": [
                {
                    "alert": "ChatQualityWatch",
                    "expr": "chat_quality_score < 0.9",
                    "for": "1m",
                    "labels": {"aiincident_incident": "inc", "namespace": namespace},
                }
            ],
        }
    ]

    assert action.apply(ctx).changed is False  # idempotent: no write
    wider = {**RULES, "rules": [*RULES["rules"], {"alert": "ChatDown", "expr": "up == 0"}]}
    assert action.apply(context(namespace, wider)).changed is True
    assert [r["alert"] for r in kube.get(ref)["spec"]["groups"][0]["rules"]] == [
        "ChatQualityWatch",
        "ChatDown",
    ]

    undone = action.revert(ctx, outcome.objects)
    assert (undone.state, undone.changed) == ("Reverted", True)
    assert kube.get(ref) is None
    assert (
        action.revert(ctx, outcome.objects).message == "PrometheusRule inc-monitoring already gone"
    )


def test_increase_monitoring_rule_goes_with_the_incident(namespace):
    make_objects(namespace)
    assert REGISTRY["IncreaseMonitoring"].apply(context(namespace, RULES)).state == "Applied"
    kube.delete(Ref("AIIncident", namespace, "inc"))
    ref = Ref("PrometheusRule", namespace, "inc-monitoring")
    wait_for(lambda: kube.get(ref) is None, 90, "the garbage collector to delete the rule")


def test_increase_monitoring_leaves_a_foreign_rule_alone(namespace):
    make_objects(namespace)
    foreign = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "inc-monitoring"},
        "spec": {"groups": [{"name": "team", "rules": [{"alert": "Mine", "expr": "up == 0"}]}]},
    }
    kube.create("PrometheusRule", namespace, foreign)
    action = REGISTRY["IncreaseMonitoring"]
    outcome = action.apply(context(namespace, RULES))
    assert outcome.state == "Failed" and "is not managed by ai-incident-operator" in outcome.message
    undone = action.revert(context(namespace, RULES), ["PrometheusRule/inc-monitoring"])
    assert "left alone" in undone.message
    assert kube.get(Ref("PrometheusRule", namespace, "inc-monitoring"))["spec"] == foreign["spec"]


# --- Notify -------------------------------------------------------------------------------


@pytest.fixture
def channels(namespace, hook, monkeypatch) -> dict:
    """The policy's channels; oncall's URL is in a Secret in the operator's namespace."""
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", namespace)
    url = base64.b64encode(f"{hook.url}/oncall\n".encode()).decode()
    kube.create(
        "Secret",
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            # Shared with the policy's namespace (egress): else it is not available to it.
            "metadata": {
                "name": "oncall-hook",
                "annotations": {"aiincident.io/allowed-namespaces": namespace},
            },
            "data": {"url": url},
        },
    )
    make_objects(namespace)
    secret = {"urlSecretRef": {"name": "oncall-hook", "key": "url"}}
    return {
        "notifications": {
            "channels": [
                {"name": "oncall", "format": "Slack", "webhook": secret},
                {"name": "flaky", "format": "Generic", "webhook": {"url": f"{hook.url}/flaky"}},
                {"name": "broken", "format": "Generic", "webhook": {"url": f"{hook.url}/broken"}},
                {"name": "unset", "webhook": {"urlSecretRef": {"name": "nope", "key": "url"}}},
            ]
        }
    }


def test_notify_posts_to_every_channel_and_says_resolved_on_undo(namespace, hook, channels):
    hook.script["/flaky"] = [500, 500, 200]
    action = REGISTRY["Notify"]
    spec = {"type": "Notify", "channels": ["oncall", "flaky"]}
    assert action.validate(spec, channels) == []
    ctx = context(namespace, spec, channels)

    outcome = action.apply(ctx)
    assert (outcome.state, outcome.message) == ("Applied", "notified oncall, flaky")
    [slack] = hook.bodies["/oncall"]
    assert slack == {"text": f"[SEV?] {namespace}/inc: (no title) (Deployment/chat-llm)"}
    assert len(hook.bodies["/flaky"]) == 3  # two 500s, then through
    assert hook.bodies["/flaky"][-1]["incident"] == "inc"
    assert hook.bodies["/flaky"][-1]["targets"] == ["Deployment/chat-llm"]

    undone = action.revert(ctx, outcome.objects)
    assert (undone.state, undone.message) == ("Reverted", "resolved sent to oncall, flaky")
    assert hook.bodies["/oncall"][-1]["text"].startswith(f"[RESOLVED] {namespace}/inc")
    assert hook.bodies["/flaky"][-1]["event"] == "resolved"


def test_notify_names_each_failing_channel_and_why(namespace, hook, channels):
    hook.script["/broken"] = [500]
    spec = {"type": "Notify", "channels": ["oncall", "broken", "unset"]}
    outcome = REGISTRY["Notify"].apply(context(namespace, spec, channels))
    assert outcome.state == "Failed"
    assert outcome.message == (
        "notified oncall; failed: broken (HTTP 500 (after 4 tries)), "
        f"unset (Secret nope (key url) is not available to namespace {namespace}: an admin "
        "must create it in the operator's namespace with annotation "
        f"aiincident.io/allowed-namespaces naming {namespace})"
    )
    assert len(hook.bodies["/broken"]) == 4
    assert len(hook.bodies["/oncall"]) == 1
