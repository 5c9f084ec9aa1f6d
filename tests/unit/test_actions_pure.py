"""The four actions without a cluster: validate(), the Changes planned from dicts, payloads.

The Changes are also played through the ledger as `FieldAction` does (hold in
order, release in reverse), to show that undo gives back exactly the objects.
Notify's delivery is tested against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import copy

import pytest

from ai_incident_operator import ledger
from ai_incident_operator.actions import config, guardrail, monitoring, notify
from ai_incident_operator.actions.base import REGISTRY, ActionContext, ActionError, Change
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

NS = "prod"
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "chat-llm", "namespace": NS, "annotations": {"team": "ml"}},
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "chat"}},
            "spec": {
                "containers": [
                    {
                        "name": "llm",
                        "image": "llm:v42",
                        "env": [{"name": "TEMPERATURE", "value": "0.7"}],
                    },
                    {"name": "exporter", "image": "exporter:v1"},
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "chat-config"}}],
            },
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "chat", "namespace": NS},
    "spec": {
        "selector": {"app": "chat"},
        "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "metrics", "port": 9090, "targetPort": 9090},
        ],
    },
}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "chat-config", "namespace": NS},
    "data": {"temperature": "0.7"},
}
SIDECAR = {"name": "guardrail", "image": "guardrail:v1", "ports": [{"containerPort": 8001}]}
INCIDENT = {
    "apiVersion": "aiincident.io/v1alpha1",
    "kind": "AIIncident",
    "metadata": {"name": "chat-harmful-output", "namespace": NS, "uid": "u-1"},
    "spec": {
        "title": "Chat model answers with unsafe medical advice",
        "category": "HarmfulOutput",
        "severity": 2,
        "description": "reported by support\nmore details",
        "target": {"name": "chat-llm"},
    },
}


def play(changes: list[Change], objects: dict[str, dict], key: str) -> None:
    """Apply CHANGES to OBJECTS (by "Kind/name") through the ledger, as FieldAction does."""
    for change in changes:
        ledger.hold(objects[str(change.ref)], f"{NS}/inc", key, change.values)


def undo(changes: list[Change], objects: dict[str, dict], key: str) -> None:
    for change in reversed(changes):
        ledger.release(objects[str(change.ref)], f"{NS}/inc", key)


# --- GuardrailSidecar ---------------------------------------------------------------------

GUARD = REGISTRY["GuardrailSidecar"]


def test_guardrail_is_registered_with_a_key_per_container():
    assert isinstance(GUARD, guardrail.GuardrailSidecar)
    assert GUARD.key({"container": SIDECAR}) == "GuardrailSidecar:guardrail"
    assert GUARD.key({"container": "oops"}) == "GuardrailSidecar:None"  # never raises


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"container": "guardrail"}, "container must be a core/v1 Container object"),
        ({"container": {"image": "g:v1"}}, "container has no name"),
        ({"container": {"name": "guardrail"}}, "container guardrail has no image"),
        ({"container": {"name": "Guard_Rail", "image": "g:v1"}}, "is not a DNS label"),
        (
            {"container": SIDECAR, "servicePort": 80},
            "servicePort needs service, port and targetPort",
        ),
        (
            {"container": SIDECAR, "servicePort": {"service": "chat", "port": "http"}},
            "servicePort needs service, port and targetPort (missing targetPort)",
        ),
    ],
)
def test_guardrail_validate_names_the_problem(spec, problem):
    problems = GUARD.validate(spec, {})
    assert len(problems) == 1 and problem in problems[0], problems


def test_guardrail_validate_accepts_a_full_spec():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": 8001},
    }
    assert GUARD.validate(spec, {}) == []


def test_guardrail_plan_adds_the_container_then_routes_the_port():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": 8001},
    }
    changes = guardrail.plan(NS, DEPLOYMENT, spec, SERVICE)
    assert [(str(c.ref), c.values) for c in changes] == [
        ("Deployment/chat-llm", {"/spec/template/spec/containers[name=guardrail]": SIDECAR}),
        ("Service/chat", {"/spec/ports[name=http]/targetPort": 8001}),
    ]
    assert changes[1].summary == "port http targetPort 8080 -> 8001"


def test_guardrail_plan_without_service_port_changes_only_the_deployment():
    changes = guardrail.plan(NS, DEPLOYMENT, {"container": SIDECAR})
    assert [str(c.ref) for c in changes] == ["Deployment/chat-llm"]


def test_guardrail_undo_in_reverse_order_restores_both_objects_exactly():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": 80, "targetPort": 8001},
    }
    objects = {
        "Deployment/chat-llm": copy.deepcopy(DEPLOYMENT),
        "Service/chat": copy.deepcopy(SERVICE),
    }
    changes = guardrail.plan(NS, objects["Deployment/chat-llm"], spec, objects["Service/chat"])
    play(changes, objects, GUARD.key(spec))
    containers = objects["Deployment/chat-llm"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["llm", "exporter", "guardrail"]
    assert objects["Service/chat"]["spec"]["ports"][0]["targetPort"] == 8001
    undo(changes, objects, GUARD.key(spec))
    assert objects == {"Deployment/chat-llm": DEPLOYMENT, "Service/chat": SERVICE}


@pytest.mark.parametrize(
    ("port", "path"),
    [
        ("http", "/spec/ports[name=http]/targetPort"),
        (9090, "/spec/ports[name=metrics]/targetPort"),  # a number finds its port's name
        ("9090", "/spec/ports[name=metrics]/targetPort"),
    ],
)
def test_service_port_path_by_name_or_number(port, path):
    assert guardrail.service_port_path(SERVICE, port) == path


def test_single_unnamed_port_is_addressed_by_index():
    service = {"metadata": {"name": "chat"}, "spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    assert guardrail.service_port_path(service, 80) == "/spec/ports[0]/targetPort"


def test_unknown_service_port_fails_with_the_ports_there_are():
    with pytest.raises(
        ActionError, match=r"^Service chat has no port grpc; ports: http \(80\), metrics \(9090\)$"
    ):
        guardrail.service_port_path(SERVICE, "grpc")


def test_numeric_target_port_in_a_string_becomes_a_number():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": "8001"},
    }
    assert guardrail.plan(NS, DEPLOYMENT, spec, SERVICE)[1].values == {
        "/spec/ports[name=http]/targetPort": 8001
    }


def test_guardrail_missing_service_fails():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": 1},
    }
    with pytest.raises(ActionError, match="Service chat not found in prod"):
        guardrail.plan(NS, DEPLOYMENT, spec, None)


def test_guardrail_never_replaces_a_container_of_the_workload():
    spec = {"container": {"name": "llm", "image": "guardrail:v1"}}
    with pytest.raises(ActionError, match="already has a container named llm"):
        guardrail.plan(NS, DEPLOYMENT, spec)


def test_guardrail_plans_again_over_its_own_sidecar():
    deployment = copy.deepcopy(DEPLOYMENT)
    changes = guardrail.plan(NS, deployment, {"container": SIDECAR})
    play(changes, {"Deployment/chat-llm": deployment}, "GuardrailSidecar:guardrail")
    again = guardrail.plan(NS, deployment, {"container": SIDECAR})
    assert again[0].values == changes[0].values


def test_summaries_name_the_value_from_before_the_mitigation():
    spec = {
        "container": SIDECAR,
        "servicePort": {"service": "chat", "port": "http", "targetPort": 8001},
    }
    objects = {
        "Deployment/chat-llm": copy.deepcopy(DEPLOYMENT),
        "Service/chat": copy.deepcopy(SERVICE),
    }
    play(
        guardrail.plan(NS, objects["Deployment/chat-llm"], spec, objects["Service/chat"]),
        objects,
        "g",
    )
    again = guardrail.plan(NS, objects["Deployment/chat-llm"], spec, objects["Service/chat"])
    assert again[1].summary == "port http targetPort 8080 -> 8001"
    spec = {"container": "llm", "image": "llm:v41"}
    play(config.plan(NS, objects["Deployment/chat-llm"], spec), objects, "c")
    assert (
        "llm image llm:v42 -> llm:v41"
        in config.plan(NS, objects["Deployment/chat-llm"], spec)[0].summary
    )


def test_guardrail_passes_the_stored_container_through():
    stored = {**SIDECAR, "imagePullPolicy": "IfNotPresent"}
    change = guardrail.plan(NS, DEPLOYMENT, {"container": SIDECAR}, container=stored)[0]
    assert change.values == {"/spec/template/spec/containers[name=guardrail]": stored}


# --- ConservativeConfig -------------------------------------------------------------------

CONF = REGISTRY["ConservativeConfig"]


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"container": {"name": "llm"}, "image": "x"}, "container must be the name of a container"),
        ({"container": "llm"}, "give at least one of env, image, configMap"),
        ({"container": "llm", "env": {"1BAD NAME": "x"}}, "not a valid environment variable name"),
        ({"container": "llm", "configMap": {"name": "c", "data": {}}}, "configMap c has no data"),
        (
            {"container": "llm", "configMap": {"name": "c", "data": {"a/b": "1"}}},
            "not a valid ConfigMap key",
        ),
    ],
)
def test_config_validate_names_the_problem(spec, problem):
    problems = CONF.validate(spec, {})
    assert len(problems) == 1 and problem in problems[0], problems


def test_config_validate_accepts_env_image_or_configmap():
    assert CONF.validate({"container": "llm", "env": {"TEMPERATURE": "0"}}, {}) == []
    assert CONF.validate({"container": "llm", "image": "llm:v41"}, {}) == []
    assert (
        CONF.validate({"container": "llm", "configMap": {"name": "c", "data": {"k": "v"}}}, {})
        == []
    )
    assert CONF.key({"container": "llm"}) == "ConservativeConfig:llm"


def test_config_plan_sets_env_and_image_on_the_container():
    spec = {
        "container": "llm",
        "env": {"TEMPERATURE": "0", "MAX_TOKENS": "256"},
        "image": "llm:v41",
    }
    [change] = config.plan(NS, DEPLOYMENT, spec)
    base = "/spec/template/spec/containers[name=llm]"
    assert change.ref == Ref("Deployment", NS, "chat-llm")
    assert change.values == {
        f"{base}/env[name=TEMPERATURE]": {"name": "TEMPERATURE", "value": "0"},
        f"{base}/env[name=MAX_TOKENS]": {"name": "MAX_TOKENS", "value": "256"},
        f"{base}/image": "llm:v41",
    }
    assert "llm image llm:v42 -> llm:v41" in change.summary


def test_config_plan_changes_the_configmap_first_and_rolls_pods_that_read_it():
    spec = {
        "container": "llm",
        "configMap": {"name": "chat-config", "data": {"temperature": "0", "safe.mode": "on"}},
    }
    changes = config.plan(NS, DEPLOYMENT, spec, CONFIGMAP)
    assert [str(c.ref) for c in changes] == ["ConfigMap/chat-config", "Deployment/chat-llm"]
    assert changes[0].values == {"/data/temperature": "0", "/data/safe.mode": "on"}
    [(path, digest)] = changes[1].values.items()
    assert path == "/spec/template/metadata/annotations/aiincident.io~1conservative-config"
    assert len(digest) == 16


def test_config_plan_leaves_pods_alone_when_they_do_not_read_the_configmap():
    spec = {"container": "llm", "configMap": {"name": "other", "data": {"k": "v"}}}
    other = {**CONFIGMAP, "metadata": {"name": "other", "namespace": NS}}
    assert [str(c.ref) for c in config.plan(NS, DEPLOYMENT, spec, other)] == ["ConfigMap/other"]


def test_config_escapes_configmap_keys():
    spec = {"container": "llm", "configMap": {"name": "other", "data": {"a~b": "1"}}}
    assert config.plan(NS, DEPLOYMENT, spec, CONFIGMAP)[0].values == {"/data/a~0b": "1"}


def test_config_missing_container_lists_the_containers():
    with pytest.raises(ActionError) as err:
        config.plan(NS, DEPLOYMENT, {"container": "model", "env": {"A": "1"}})
    assert (
        str(err.value) == "container model is not in Deployment chat-llm; containers: llm, exporter"
    )


def test_config_missing_configmap_fails():
    spec = {"container": "llm", "configMap": {"name": "nope", "data": {"k": "v"}}}
    with pytest.raises(ActionError, match="ConfigMap nope not found in prod"):
        config.plan(NS, DEPLOYMENT, spec, None)


def test_config_undo_restores_values_and_absences_exactly():
    spec = {
        "container": "llm",
        "env": {"TEMPERATURE": "0", "MAX_TOKENS": "256"},
        "image": "llm:v41",
        "configMap": {"name": "chat-config", "data": {"temperature": "0", "mode": "safe"}},
    }
    objects = {
        "Deployment/chat-llm": copy.deepcopy(DEPLOYMENT),
        "ConfigMap/chat-config": copy.deepcopy(CONFIGMAP),
    }
    changes = config.plan(
        NS, objects["Deployment/chat-llm"], spec, objects["ConfigMap/chat-config"]
    )
    play(changes, objects, CONF.key(spec))
    assert objects["ConfigMap/chat-config"]["data"] == {"temperature": "0", "mode": "safe"}
    env = objects["Deployment/chat-llm"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "TEMPERATURE", "value": "0"}, {"name": "MAX_TOKENS", "value": "256"}]
    undo(changes, objects, CONF.key(spec))
    # fieldpath leaves the emptied map; the apiserver omits empty annotations (see integration).
    template = objects["Deployment/chat-llm"]["spec"]["template"]
    assert template["metadata"].pop("annotations") == {}
    assert objects == {"Deployment/chat-llm": DEPLOYMENT, "ConfigMap/chat-config": CONFIGMAP}


@pytest.mark.parametrize(
    "pod_spec",
    [
        {"volumes": [{"name": "v", "projected": {"sources": [{"configMap": {"name": "c"}}]}}]},
        {"containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "c"}}]}]},
        {
            "initContainers": [
                {
                    "name": "a",
                    "env": [
                        {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}
                    ],
                }
            ]
        },
    ],
)
def test_uses_configmap_sees_every_way_pods_read_one(pod_spec):
    assert config.uses_configmap(pod_spec, "c")
    assert not config.uses_configmap(pod_spec, "d")


# --- IncreaseMonitoring -------------------------------------------------------------------

MON = REGISTRY["IncreaseMonitoring"]
RULES = {
    "rules": [
        {
            "alert": "ChatQualityWatch",
            "expr": "chat_quality_score < 0.9",
            "for": "1m",
            "labels": {"severity": "warning", "namespace": "x"},
        }
    ]
}


def test_prometheus_rule_is_owned_by_the_incident_and_labels_every_rule():
    body = monitoring.prometheus_rule(INCIDENT, RULES)
    assert body["apiVersion"] == "monitoring.coreos.com/v1" and body["kind"] == "PrometheusRule"
    assert body["metadata"] == {
        "name": "chat-harmful-output-monitoring",
        "namespace": NS,
        "labels": {
            "app.kubernetes.io/managed-by": "ai-incident-operator",
            "aiincident.io/incident": "chat-harmful-output",
        },
        "ownerReferences": [
            {
                "apiVersion": "aiincident.io/v1alpha1",
                "kind": "AIIncident",
                "name": "chat-harmful-output",
                "uid": "u-1",
                "controller": True,
                "blockOwnerDeletion": False,
            }
        ],
    }
    assert body["spec"]["groups"] == [
        {
            "name": "aiincident-chat-harmful-output",
            "rules": [
                {
                    "alert": "ChatQualityWatch",
                    "expr": "chat_quality_score < 0.9",
                    "for": "1m",
                    "labels": {
                        "severity": "warning",
                        "aiincident_incident": "chat-harmful-output",
                        "namespace": NS,
                    },
                }
            ],
        }
    ]
    assert RULES["rules"][0]["labels"]["namespace"] == "x"  # the policy is not changed


def test_long_incident_names_still_make_a_valid_label():
    name = "x" * 80
    label = monitoring.label_value(name)
    assert len(label) == 63 and label.startswith("x" * 52 + "-")
    assert label == monitoring.label_value(name) != monitoring.label_value("y" + name[1:])
    assert monitoring.label_value("short") == "short"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({}, "rules must list at least one alerting rule"),
        ({"rules": [{"alert": "A"}]}, "rules[0] (A) has no expr"),
        (
            {"rules": [{"alert": "A", "expr": "up", "for": "one minute"}]},
            "for 'one minute' is not a duration",
        ),
    ],
)
def test_monitoring_validate_names_the_problem(spec, problem):
    problems = MON.validate(spec, {})
    assert len(problems) == 1 and problem in problems[0], problems


def test_monitoring_validate_accepts_rules():
    assert MON.validate(RULES, {}) == []
    assert MON.validate({"rules": [{"alert": "A", "expr": "up == 0", "for": "1h30m"}]}, {}) == []


def _refusing(installed: set[str]) -> FakeCluster:
    """A cluster serving INSTALLED where nothing may be written."""
    fake = FakeCluster(installed)
    for verb in ("create", "update", "delete", "patch"):
        fake.deny(verb, monitoring.KIND)
    return fake


def test_monitoring_is_skipped_without_the_crd():
    fake = _refusing({"Deployment"})
    outcome = MON.apply(ActionContext(INCIDENT, DEPLOYMENT, RULES, {}, api=fake))
    assert outcome.state == "Skipped"
    assert outcome.message.startswith(
        "PrometheusRule CRD (monitoring.coreos.com/v1) is not installed;"
    )
    assert outcome.objects == [] and not outcome.changed
    assert fake.writes == []


def test_monitoring_dry_run_writes_nothing():
    fake = _refusing({"Deployment", monitoring.KIND})
    outcome = MON.apply(ActionContext(INCIDENT, DEPLOYMENT, RULES, {}, api=fake, dry_run=True))
    assert outcome.state == "DryRun"
    assert (
        outcome.message
        == "would create PrometheusRule chat-harmful-output-monitoring with alerts ChatQualityWatch"
    )
    assert fake.writes == []


# --- Notify -------------------------------------------------------------------------------

NOTIFY = REGISTRY["Notify"]
POLICY = {
    "notifications": {
        "channels": [
            {
                "name": "oncall",
                "format": "Slack",
                "webhook": {"urlSecretRef": {"name": "hook", "key": "url"}},
            },
            {
                "name": "leadership",
                "format": "Generic",
                "webhook": {"url": "https://hooks.example/lead"},
            },
            {"name": "nowhere", "format": "Generic", "webhook": {}},
            {"name": "files", "webhook": {"url": "file:///etc/passwd"}},
        ]
    }
}


def test_notify_validate_checks_channels_against_the_policy():
    assert NOTIFY.validate({"channels": ["oncall", "leadership"]}, POLICY) == []
    assert NOTIFY.validate({"channels": ["pager", "nowhere", "files"]}, POLICY) == [
        "Notify: channel pager is not in notifications.channels (oncall, leadership, nowhere, files)",
        "Notify: channel nowhere needs webhook.url or webhook.urlSecretRef",
        "Notify: channel files: webhook.url is not an http(s) URL",
    ]
    assert NOTIFY.validate({"channels": []}, POLICY) == [
        "Notify: channels must name at least one of notifications.channels"
    ]


def test_slack_payload_is_one_line_from_status_first():
    incident = {
        **INCIDENT,
        "status": {
            "severity": 1,
            "phase": "Mitigating",
            "targets": [{"kind": "Deployment", "namespace": NS, "name": "chat-llm"}],
        },
    }
    assert notify.payload("Slack", incident) == {
        "text": "[SEV1] prod/chat-harmful-output HarmfulOutput: Chat model answers with unsafe "
        "medical advice (Mitigating; Deployment/chat-llm)"
    }


def test_slack_payload_without_status_uses_the_spec_and_escapes_markup():
    incident = copy.deepcopy(INCIDENT)
    incident["spec"]["title"] = "<!channel> answers & more"
    assert notify.payload("Slack", incident) == {
        "text": "[SEV2] prod/chat-harmful-output HarmfulOutput: &lt;!channel&gt; answers &amp; more "
        "(Deployment/chat-llm)"
    }
    assert notify.payload("Slack", incident, resolved=True)["text"].startswith(
        "[RESOLVED] prod/chat-harmful-output HarmfulOutput:"
    )


def test_generic_payload_carries_the_facts():
    incident = {**INCIDENT, "status": {"phase": "Triaged"}}
    assert notify.payload("Generic", incident) == {
        "event": "incident",
        "incident": "chat-harmful-output",
        "namespace": NS,
        "severity": 2,
        "category": "HarmfulOutput",
        "phase": "Triaged",
        "title": "Chat model answers with unsafe medical advice",
        "description": "reported by support\nmore details",
        "targets": ["Deployment/chat-llm"],
    }
    assert notify.payload("Generic", incident, resolved=True)["event"] == "resolved"


def test_untitled_incident_is_summarised_by_its_description():
    incident = copy.deepcopy(INCIDENT)
    del incident["spec"]["title"], incident["spec"]["severity"]
    assert notify.payload("Slack", incident)["text"] == (
        "[SEV?] prod/chat-harmful-output HarmfulOutput: reported by support (Deployment/chat-llm)"
    )


def test_post_retries_server_errors_with_backoff(hook):
    hook.script["/flaky"] = [500, 503, 200]
    pauses: list[float] = []
    assert notify.post(f"{hook.url}/flaky", {"text": "hi"}, sleep=pauses.append) == 3
    assert pauses == [0.5, 1.0]
    assert hook.bodies["/flaky"] == [{"text": "hi"}] * 3


def test_post_gives_up_after_four_tries(hook):
    hook.script["/down"] = [500]
    pauses: list[float] = []
    with pytest.raises(notify.NotifyError, match=r"^HTTP 500 \(after 4 tries\)$"):
        notify.post(f"{hook.url}/down", {}, sleep=pauses.append)
    assert pauses == [0.5, 1.0, 2.0]


def test_post_does_not_retry_a_client_error_but_does_retry_429(hook):
    hook.script["/gone"] = [404]
    with pytest.raises(notify.NotifyError, match=r"^HTTP 404$"):
        notify.post(f"{hook.url}/gone", {}, sleep=lambda s: None)
    assert len(hook.bodies["/gone"]) == 1
    hook.script["/busy"] = [429, 200]
    assert notify.post(f"{hook.url}/busy", {}, sleep=lambda s: None) == 2


def test_post_refuses_other_schemes_and_keeps_the_url_out_of_errors():
    with pytest.raises(notify.NotifyError, match="not an http"):
        notify.post("file:///etc/passwd", {})
    with pytest.raises(notify.NotifyError) as err:
        notify.post("http://127.0.0.1:1/secret-token", {}, sleep=lambda s: None)
    assert "secret-token" not in str(err.value) and "after 4 tries" in str(err.value)


class _Reads(FakeCluster):
    """A FakeCluster that remembers what was read."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Ref] = []

    def get(self, ref: Ref):
        self.seen.append(ref)
        return super().get(ref)


def test_channel_url_reads_the_secret_in_the_operator_namespace(monkeypatch):
    fake = _Reads()
    url = base64.b64encode(b"https://hooks.example/x\n").decode()
    fake.add({"kind": "Secret", "metadata": {"name": "hook", "namespace": "aiincident-system"},
              "data": {"url": url}})  # fmt: skip
    # The same name elsewhere is never read: only the operator's namespace is.
    fake.add({"kind": "Secret", "metadata": {"name": "hook", "namespace": NS}, "data": {}})
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", "aiincident-system")
    channel = POLICY["notifications"]["channels"][0]
    assert notify.channel_url(fake, channel, None) == "https://hooks.example/x"
    assert fake.seen == [Ref("Secret", "aiincident-system", "hook")]
    fake.add({"kind": "Secret", "metadata": {"name": "hook", "namespace": "aiincident-system"},
              "data": {}})  # fmt: skip
    with pytest.raises(notify.NotifyError, match=r"^Secret aiincident-system/hook has no key url$"):
        notify.channel_url(fake, channel, None)


@pytest.fixture
def hooks(hook, monkeypatch) -> dict:
    """A policy with a working channel and a dead one; no pauses between tries."""
    monkeypatch.setattr(notify, "BACKOFF", (0, 0, 0))
    monkeypatch.setattr(notify, "_sent", {})  # what earlier tests delivered
    hook.script["/down"] = [500]
    return {
        "notifications": {
            "channels": [
                {"name": "oncall", "format": "Slack", "webhook": {"url": f"{hook.url}/ok"}},
                {"name": "pager", "format": "Generic", "webhook": {"url": f"{hook.url}/down"}},
            ]
        }
    }


def test_notify_reports_each_channel_and_never_raises(hook, hooks):
    spec = {"type": "Notify", "channels": ["oncall", "pager", "ghost"]}
    fake = FakeCluster()
    outcome = NOTIFY.apply(ActionContext(INCIDENT, DEPLOYMENT, spec, hooks, api=fake))
    assert outcome.state == "Failed" and outcome.changed
    assert outcome.message == (
        "notified oncall; failed: pager (HTTP 500 (after 4 tries)), "
        "ghost (not defined in the policy's notifications.channels)"
    )
    assert fake.events == [
        ("AIIncident/chat-harmful-output", "Warning", "NotifyFailed", outcome.message)
    ]
    assert hook.bodies["/ok"][0]["text"].startswith("[SEV2] prod/chat-harmful-output")


def test_a_retried_notify_does_not_repeat_itself_to_channels_it_reached(hook, hooks):
    spec = {"type": "Notify", "channels": ["oncall", "pager"]}
    NOTIFY.apply(ActionContext(INCIDENT, DEPLOYMENT, spec, hooks, api=FakeCluster()))
    hook.script["/down"] = [200]  # the pager is back
    again = NOTIFY.apply(ActionContext(INCIDENT, DEPLOYMENT, spec, hooks, api=FakeCluster()))
    assert (again.state, again.message) == ("Applied", "notified pager; sent earlier: oncall")
    assert len(hook.bodies["/ok"]) == 1
    other = {**INCIDENT, "metadata": {**INCIDENT["metadata"], "uid": "u-2"}}
    third = NOTIFY.apply(ActionContext(other, DEPLOYMENT, spec, hooks, api=FakeCluster()))
    assert third.message == "notified oncall, pager"


def test_notify_undo_says_resolved_once(hook, hooks):
    fake = FakeCluster()
    ctx = ActionContext(
        INCIDENT, DEPLOYMENT, {"type": "Notify", "channels": ["oncall"]}, hooks, api=fake
    )
    assert NOTIFY.apply(ctx).state == "Applied"
    reverted = NOTIFY.revert(ctx, [])
    assert (reverted.state, reverted.message) == ("Reverted", "resolved sent to oncall")
    assert hook.bodies["/ok"][-1]["text"].startswith("[RESOLVED] prod/chat-harmful-output")
    assert NOTIFY.revert(ctx, []).message == "sent earlier: oncall"
    assert len(hook.bodies["/ok"]) == 2


def test_notify_dry_run_sends_nothing():
    fake = FakeCluster()
    ctx = ActionContext(
        INCIDENT, DEPLOYMENT, {"channels": ["oncall", "leadership"]}, POLICY, api=fake,
        dry_run=True,
    )  # fmt: skip
    outcome = NOTIFY.apply(ctx)
    assert (outcome.state, outcome.message) == ("DryRun", "would notify oncall, leadership")
    assert fake.events == [] and fake.writes == []
