"""The Alertmanager intake's pure half: payload checks, mapping to incidents, folding alerts."""

from __future__ import annotations

import copy
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator.intake import mapping
from ai_incident_operator.intake.mapping import Key, PayloadError, parse

OPS = "aiincident-system"


def alert(status: str = "firing", starts: str = "2024-05-01T10:00:00Z", **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "QualityDrop", **labels},
        "annotations": {"summary": "quality is low"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T11:00:00Z",
        "generatorURL": "http://prometheus/graph?g0.expr=q",
    }


def payload(*alerts: dict, **extra: object) -> dict:
    return {
        "version": "4",
        "groupKey": '{}:{namespace="prod"}',
        "status": "firing",
        "receiver": "ai-incident-operator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "truncatedAlerts": 0,
        "alerts": list(alerts),
        **extra,
    }


def problems(data: object) -> dict[str, str]:
    with pytest.raises(PayloadError) as err:
        parse(data)
    return {p.field: p.problem for p in err.value.problems}


# --- parse ----------------------------------------------------------------------------------


def test_parse_reads_a_version_4_payload():
    body = payload(alert(namespace="prod", deployment="chat-llm") | {"fingerprint": "f1"})
    parsed = parse(body)
    assert parsed.receiver == "ai-incident-operator" and parsed.version == "4"
    (a,) = parsed.alerts
    assert a.item() == {
        "fingerprint": "f1",
        "alertname": "QualityDrop",
        "status": "firing",
        "startsAt": "2024-05-01T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "labels": {"alertname": "QualityDrop", "namespace": "prod", "deployment": "chat-llm"},
        "annotations": {"summary": "quality is low"},
        "generatorURL": "http://prometheus/graph?g0.expr=q",
    }


def test_parse_accepts_a_minimal_payload_of_another_version():
    parsed = parse({"alerts": [{"status": "resolved", "labels": {"alertname": "A"}}]})
    assert parsed.alerts[0].status == "resolved"
    assert parsed.alerts[0].item()["fingerprint"]  # computed as Alertmanager does


def test_fingerprint_is_alertmanagers():
    labels = {
        "alertname": "Deployment",
        "app_kubernetes_io_instance": "eric-oss-common-base",
        "app_kubernetes_io_managed_by": "Helm",
        "app_kubernetes_io_name": "eric-pm-kube-state-metrics",
        "app_kubernetes_io_version": "2.1.0_10",
        "chart": "eric-pm-kube-state-metrics-2.1.0_10",
        "deployment": "eric-log-transformer",
        "instance": "192.168.69.53:8080",
        "job": "eric-pm-kube-state-metrics",
        "kubernetes_name": "eric-pm-kube-state-metrics",
        "kubernetes_namespace": "eric-eo-cm-ci406",
        "namespace": "eric-eo-cm-ci406",
        "severity": "Warning",
    }
    # The fingerprint a real Alertmanager sent with these labels.
    assert mapping.fingerprint(labels) == "fbab788ec4c1018b"
    assert mapping.fingerprint({}) == "cbf29ce484222325"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ([], "body", "must be a JSON object"),
        ("alerts", "body", "got a string"),
        ({}, "alerts", "is required"),
        ({"alerts": {"a": 1}}, "alerts", "must be a list"),
        ({"alerts": [7]}, "alerts[0]", "must be an object"),
        ({"alerts": [{"labels": {}}]}, "alerts[0].status", "is required"),
        (
            {"alerts": [{"status": "fire", "labels": {}}]},
            "alerts[0].status",
            '"firing" or "resolved"',
        ),
        ({"alerts": [{"status": "firing"}]}, "alerts[0].labels", "is required"),
        ({"alerts": [{"status": "firing", "labels": []}]}, "alerts[0].labels", "got a list"),
        (
            {"alerts": [{"status": "firing", "labels": {"n": 1}}]},
            "alerts[0].labels.n",
            "got a number",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {}, "annotations": "x"}]},
            "alerts[0].annotations",
            "object of string values",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {}, "startsAt": "yesterday"}]},
            "alerts[0].startsAt",
            "RFC 3339",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {}, "endsAt": "2024-13-01T00:00:00Z"}]},
            "alerts[0].endsAt",
            "RFC 3339",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {}, "fingerprint": ""}]},
            "alerts[0].fingerprint",
            "must not be empty",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {}, "generatorURL": 3}]},
            "alerts[0].generatorURL",
            "must be a string",
        ),
        (
            {"alerts": [{"status": "firing", "labels": {"a": "\ud800"}}]},
            "alerts[0].labels.a",
            "not valid Unicode",
        ),
        ({"version": 4, "alerts": []}, "version", "must be a string"),
        ({"truncatedAlerts": -1, "alerts": []}, "truncatedAlerts", "whole number"),
        ({"receiver": ["r"], "alerts": []}, "body.receiver", "must be a string"),
    ],
)
def test_parse_names_the_bad_field_and_the_problem(body, field, words):
    found = problems(body)
    assert field in found, found
    assert words in found[field]


def test_parse_reports_every_problem_up_to_a_limit():
    many = {"alerts": [{"status": "x", "labels": {}} for _ in range(100)]}
    found = problems(many)
    assert len(found) == mapping.MAX_PROBLEMS
    assert "alerts[0].status" in found and "alerts[19].status" in found


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2024-05-01T10:00:00Z", True),
        ("2024-05-01T10:00:00.123456789Z", True),
        ("2024-05-01T12:00:00+02:00", True),
        ("0001-01-01T00:00:00Z", True),
        ("2024-02-30T10:00:00Z", False),
        ("2024-05-01 10:00:00", False),
        ("2024-05-01T10:00:00+25:00", False),
    ],
)
def test_instant_reads_rfc3339_with_nanoseconds_and_offsets(text, ok):
    assert (mapping.instant(text) is not None) is ok


def test_instant_orders_across_offsets_and_fractions():
    assert mapping.instant("2024-05-01T12:00:00+02:00") == mapping.instant("2024-05-01T10:00:00Z")
    assert mapping.instant("2024-05-01T10:00:00.5Z") > mapping.instant(
        "2024-05-01T10:00:00.499999999Z"
    )


# --- mapping to incidents ------------------------------------------------------------------


def groups(*alerts: dict) -> list[mapping.Group]:
    return mapping.group(parse(payload(*alerts)), OPS)


def test_deployment_and_workload_labels_name_the_same_target():
    (one,) = groups(
        alert(namespace="prod", deployment="chat-llm", ai_incident_category="HarmfulOutput"),
        alert(
            namespace="prod",
            workload="chat-llm",
            ai_incident_category="HarmfulOutput",
            alertname="Other",
        ),
    )
    assert one.key == Key("prod", "deployment/chat-llm", "HarmfulOutput")
    assert one.target == {"kind": "Deployment", "name": "chat-llm"}
    assert len(one.alerts) == 2 and one.unmapped is None


def test_model_label_targets_the_deployments_labelled_with_it():
    (one,) = groups(alert(namespace="prod", model="chat"))
    assert one.key == Key("prod", "model/chat", "Other")
    assert one.target == {
        "kind": "Deployment",
        "selector": {"matchLabels": {"aiincident.io/model": "chat"}},
    }


@pytest.mark.parametrize(
    "label, kind",
    [("statefulset", "StatefulSet"), ("rollout", "Rollout"), ("leaderworkerset", "LeaderWorkerSet"),
     ("inferenceservice", "InferenceService"), ("llminferenceservice", "LLMInferenceService")],
)  # fmt: skip
def test_kind_labels_name_a_workload_of_that_kind(label, kind):
    (one,) = groups(alert(namespace="prod", **{label: "llama"}))
    assert one.key == Key("prod", f"{label}/llama", "Other")
    assert one.target == {"kind": kind, "name": "llama"}
    assert one.unmapped is None
    # The same name under another kind is another incident.
    assert one.key.name != Key("prod", "deployment/llama", "Other").name


def test_one_group_per_namespace_target_and_category():
    found = groups(
        alert(namespace="prod", deployment="a", ai_incident_category="HarmfulOutput"),
        alert(namespace="prod", deployment="a", ai_incident_category="CostAnomaly"),
        alert(namespace="prod", deployment="b", ai_incident_category="HarmfulOutput"),
        alert(namespace="dev", deployment="a", ai_incident_category="HarmfulOutput"),
        alert(namespace="prod", deployment="a", ai_incident_category="HarmfulOutput", pod="p2"),
    )
    assert [len(g.alerts) for g in found] == [2, 1, 1, 1]
    assert len({g.name for g in found}) == 4


@pytest.mark.parametrize(
    ("value", "category"),
    [
        ("HarmfulOutput", "HarmfulOutput"),
        ("harmful_output", "HarmfulOutput"),
        ("data-leak", "DataLeak"),
        ("Hallucination", "Other"),
        ("", "Other"),
    ],
)
def test_category_from_the_label_else_other(value, category):
    (one,) = groups(alert(namespace="prod", deployment="a", ai_incident_category=value))
    assert one.key.category == category


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (
            {},
            "no label namespace and none of deployment, statefulset, rollout, leaderworkerset, inferenceservice, llminferenceservice, workload, model",
        ),
        ({"deployment": "chat-llm"}, "deployment='chat-llm' but no label namespace"),
        (
            {"namespace": "prod"},
            "namespace='prod' but none of the labels deployment, statefulset, rollout, leaderworkerset, inferenceservice, llminferenceservice, workload, model",
        ),
        (
            {"namespace": "Prod!", "deployment": "a"},
            "label namespace='Prod!' is not a namespace name",
        ),
        (
            {"namespace": "prod", "deployment": "Chat LLM"},
            "label deployment='Chat LLM' is not a Deployment name",
        ),
        ({"namespace": "prod", "model": "a/b"}, "label model='a/b' is not a label value"),
    ],
)
def test_unmappable_alerts_go_to_the_operator_namespace_saying_which_labels(labels, words):
    (one,) = groups(alert(**labels))
    assert one.key.namespace == OPS and one.target == {}
    assert words in one.unmapped
    body = mapping.new_incident(one, one.name, parse(payload()), one.items())
    assert words in body["spec"]["description"]
    assert body["metadata"]["annotations"][mapping.UNMAPPED_ANNOTATION] == one.unmapped
    assert body["spec"]["title"].startswith("Unmapped alert QualityDrop")


def test_refile_moves_a_group_whose_namespace_is_missing():
    (one,) = groups(alert(namespace="gone", deployment="chat-llm"))
    moved = mapping.refile(one, OPS, "namespace gone does not exist")
    assert moved.key == Key(OPS, "unmapped/gone/deployment=chat-llm", "Other")
    assert moved.unmapped == "namespace gone does not exist" and moved.alerts == one.alerts
    assert moved.name.startswith("unmapped-chat-llm-other-")


def test_alerts_of_an_increase_monitoring_rule_name_their_incident():
    (one,) = groups(alert(namespace="prod", aiincident_incident="chat-harm", deployment="chat-llm"))
    assert one.incident == ("prod", "chat-harm")
    assert one.key == Key("prod", "deployment/chat-llm", "Other")  # where they go once it closed
    (bare,) = groups(alert(namespace="prod", aiincident_incident="chat-harm"))
    assert bare.incident == ("prod", "chat-harm") and bare.key.namespace == OPS


# --- names -----------------------------------------------------------------------------------

NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def test_names_are_readable_deterministic_and_distinct():
    key = Key("prod", "deployment/chat-llm", "HarmfulOutput")
    assert key.name == Key("prod", "deployment/chat-llm", "HarmfulOutput").name
    assert re.fullmatch(r"chat-llm-harmfuloutput-[0-9a-f]{16}", key.name)  # 64 bits
    assert key.name != Key("dev", "deployment/chat-llm", "HarmfulOutput").name
    assert Key(OPS, "unmapped/prod/", "Other").name.startswith("unmapped-prod-other-")
    assert mapping.nth_name(key.name, 1) == key.name
    assert mapping.nth_name(key.name, 3) == f"{key.name}-3"


@given(
    namespace=st.text(max_size=70),
    target=st.text(max_size=300),
    category=st.sampled_from(mapping.CATEGORIES),
    n=st.integers(1, 99),
)
@settings(max_examples=300, deadline=None)
def test_every_name_is_a_valid_object_name_short_enough_for_derived_objects(
    namespace, target, category, n
):
    name = mapping.nth_name(Key(namespace, f"deployment/{target}", category).name, n)
    assert NAME.fullmatch(name)
    assert len(name) + len("-monitoring") <= 63


# --- folding alerts --------------------------------------------------------------------------


def item(fp: str, status: str = "firing", starts: str = "2024-05-01T10:00:00Z", **extra) -> dict:
    entry = {
        "fingerprint": fp,
        "status": status,
        "startsAt": starts,
        "labels": {},
        "annotations": {},
    }
    entry["endsAt"] = "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T11:00:00Z"
    return {**entry, **extra}


def test_merge_adds_new_alerts_and_a_redelivery_changes_nothing():
    current = [item("a")]
    merged = mapping.merge_alerts(current, [item("a"), item("b")])
    assert [a["fingerprint"] for a in merged] == ["a", "b"]
    assert mapping.merge_alerts(merged, [item("a"), item("b")]) == merged


def test_resolved_updates_status_and_ends_at():
    merged = mapping.merge_alerts([item("a")], [item("a", "resolved")])
    assert merged == [item("a", "resolved")]


def test_a_late_firing_resend_does_not_undo_resolved():
    assert mapping.merge_alerts([item("a", "resolved")], [item("a")]) == [item("a", "resolved")]


def test_a_new_start_is_a_new_firing_and_an_older_start_is_stale():
    later = item("a", starts="2024-05-02T10:00:00Z")
    assert mapping.merge_alerts([item("a", "resolved")], [later]) == [later]
    assert mapping.merge_alerts([later], [item("a", "resolved")]) == [later]


def test_a_resend_that_only_moves_ends_at_changes_nothing():
    current = [item("a", endsAt="2024-05-01T10:04:00Z")]
    resend = item("a", endsAt="2024-05-01T10:08:00Z")
    assert mapping.merge_alerts(current, [resend]) == current


def test_changed_annotations_are_kept():
    merged = mapping.merge_alerts([item("a")], [item("a", annotations={"summary": "worse"})])
    assert merged[0]["annotations"] == {"summary": "worse"}


def test_merge_bounds_an_incident_by_dropping_the_longest_resolved():
    current = [
        item(f"r{i}", "resolved", endsAt=f"2024-05-01T{i % 24:02d}:00:00Z")
        for i in range(mapping.MAX_ALERTS)
    ]
    merged = mapping.merge_alerts(current, [item("new")])
    assert len(merged) == mapping.MAX_ALERTS
    assert "new" in {a["fingerprint"] for a in merged}
    assert "r0" not in {a["fingerprint"] for a in merged}  # resolved at 00:00, the earliest


def test_merge_keeps_an_incident_small_without_dropping_firing_alerts():
    huge = {"description": "d" * mapping.ANNOTATION_LIMIT}
    firing = [
        item(
            f"f{i:03d}", starts=f"2024-05-01T{10 + i // 60:02d}:{i % 60:02d}:00Z", annotations=huge
        )
        for i in range(150)
    ]
    merged = mapping.merge_alerts([], firing)
    assert [a["fingerprint"] for a in merged] == [a["fingerprint"] for a in firing]
    assert len(json.dumps(merged)) <= mapping.ALERTS_BUDGET
    assert merged[-1]["annotations"] == huge  # the newest keep theirs
    assert mapping.merge_alerts(merged, firing) == merged  # and a redelivery changes nothing


def test_an_incident_gives_way_to_the_newest_alerts_only_far_beyond_its_budget():
    labels = {"l": "v" * (mapping.LABELS_LIMIT // 2)}
    many = [item(f"f{i:04d}", starts=f"2024-05-01T{i // 60 % 24:02d}:{i % 60:02d}:00Z", labels=labels) for i in range(200)]  # fmt: skip
    merged = mapping.merge_alerts([], many)
    assert len(json.dumps(merged)) <= 2 * mapping.ALERTS_BUDGET
    assert merged[-1]["fingerprint"] == "f0199" and merged[0]["fingerprint"] != "f0000"


def test_long_annotations_are_cut_and_oversized_labels_refused():
    body = payload(alert(namespace="prod", deployment="a") | {"annotations": {"d": "x" * 5000}})
    (a,) = parse(body).alerts
    assert len(a.item()["annotations"]["d"]) == mapping.ANNOTATION_LIMIT
    found = problems(payload(alert(big="x" * mapping.LABELS_LIMIT)))
    assert "must take at most" in found["alerts[0].labels"]


def test_absorb_keeps_only_instances_a_resolved_incident_already_holds():
    current = [item("a"), item("b", "resolved")]
    merged, rest = mapping.absorb(
        current,
        [item("a", "resolved"), item("b"), item("c"), item("a", starts="2024-06-01T00:00:00Z")],
    )
    assert merged == [item("a", "resolved"), item("b", "resolved")]
    assert [(r["fingerprint"], r["startsAt"]) for r in rest] == [
        ("c", "2024-05-01T10:00:00Z"),
        ("a", "2024-06-01T00:00:00Z"),
    ]


ITEMS = st.builds(
    item,
    st.sampled_from("abcdef"),
    st.sampled_from(["firing", "resolved"]),
    st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", "2024-05-01T10:00:00.5Z"]),
)


@given(current=st.lists(ITEMS, max_size=6), incoming=st.lists(ITEMS, max_size=6))
@settings(max_examples=500, deadline=None)
def test_merge_is_idempotent_and_keeps_every_fingerprint(current, incoming):
    once = mapping.merge_alerts(mapping.merge_alerts([], current), incoming)
    assert mapping.merge_alerts(once, incoming) == once  # a redelivery writes nothing
    assert {a["fingerprint"] for a in current + incoming} == {a["fingerprint"] for a in once}
    assert len(once) == len({a["fingerprint"] for a in once})


def test_new_incident_body():
    (one,) = groups(
        alert(namespace="prod", deployment="chat-llm", ai_incident_category="HarmfulOutput")
    )
    body = mapping.new_incident(one, one.name, parse(payload()), one.items())
    assert body["metadata"]["namespace"] == "prod"
    assert body["metadata"]["labels"] == {"aiincident.io/source": "alertmanager"}
    spec = body["spec"]
    assert spec["source"] == {
        "type": "Alertmanager",
        "reporter": "receiver ai-incident-operator of http://alertmanager:9093",
    }
    assert spec["category"] == "HarmfulOutput" and "severity" not in spec  # triage decides
    assert spec["title"] == "QualityDrop: quality is low"
    assert spec["target"] == {"kind": "Deployment", "name": "chat-llm"}
    assert [a["fingerprint"] for a in spec["alerts"]] == [one.alerts[0].fingerprint]


def test_items_fold_duplicates_within_one_payload():
    firing = alert(namespace="prod", deployment="a")
    resolved = copy.deepcopy(firing) | {"status": "resolved", "endsAt": "2024-05-01T11:00:00Z"}
    (one,) = groups(firing, resolved, firing)
    assert [i["status"] for i in one.items()] == ["resolved"]


def test_empty_label_and_annotation_values_are_left_out():
    # To Prometheus an empty label is an absent one; the apiserver refuses empty strings.
    body = payload(alert(namespace="prod", deployment="a", odd="") | {"annotations": {"x": ""}})
    (a,) = parse(body).alerts
    assert "odd" not in a.item()["labels"] and a.item()["annotations"] == {}
    assert a.fingerprint == mapping.fingerprint(body["alerts"][0]["labels"])  # as sent
