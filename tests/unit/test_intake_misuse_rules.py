"""The Alertmanager intake under misuse (issue 11, findings 4, 5, 6 and 10), without a cluster.

`intake.store` runs against the in-memory FakeCluster (its `kube` calls go there);
the webhook's answers come from the real aiohttp app on a local port.
"""

from __future__ import annotations

import asyncio
import copy
import re

import pytest
from aiohttp import test_utils
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import metrics
from ai_incident_operator.intake import mapping, server, store
from ai_incident_operator.intake.mapping import Key, PayloadError, parse
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

OPS = "aiincident-system"


def alert(status: str = "firing", starts: str = "2024-05-01T10:00:00Z", **labels: str) -> dict:
    labels = {"alertname": "QualityDrop", **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "quality is low"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2024-05-01T11:00:00Z",
        "fingerprint": mapping.fingerprint(labels),
    }


def payload(*alerts: dict) -> dict:
    return {"version": "4", "receiver": "am", "alerts": list(alerts)}


def groups(*alerts: dict, protected: frozenset[str] | None = None) -> list[mapping.Group]:
    parsed = parse(payload(*alerts))
    return mapping.group(parsed, OPS, protected) if protected else mapping.group(parsed, OPS)


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(store, "kube", cluster)
    return cluster


def deliver(*alerts: dict) -> list[store.Delivery]:
    parsed = parse(payload(*alerts))
    return [store.deliver(g, parsed, OPS) for g in mapping.group(parsed, OPS)]


def incident(
    fake: FakeCluster, ns: str, name: str, spec: dict, annotations: dict | None = None
) -> dict:
    meta = {"name": name, "namespace": ns, "annotations": annotations or {}}
    return fake.add({"apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
                     "metadata": meta, "spec": spec})  # fmt: skip


def stored(fake: FakeCluster, ns: str, name: str) -> dict:
    found = fake.obj("AIIncident", ns, name)
    assert found is not None, name
    return found


# --- 4. an alert can resolve any incident ------------------------------------------------------


def test_a_resolved_alert_naming_a_manual_incident_does_not_touch_it(fake):
    manual = incident(fake, "prod", "chat-harm",
                      {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat-llm"}})  # fmt: skip
    resolved = alert("resolved", namespace="prod", aiincident_incident="chat-harm")
    (delivery,) = deliver(resolved)
    assert stored(fake, "prod", "chat-harm") == manual  # not one field written
    assert (delivery.namespace, delivery.name) != ("prod", "chat-harm")
    assert delivery.namespace == OPS and delivery.unmapped  # no target label: unmapped
    assert "was not opened by the intake" in delivery.note
    assert "note" in delivery.as_dict()


def test_a_manual_incident_with_a_target_label_is_not_touched_either(fake):
    incident(fake, "prod", "chat-harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})  # fmt: skip
    (delivery,) = deliver(
        alert("resolved", namespace="prod", deployment="chat-llm", aiincident_incident="chat-harm")
    )
    assert "alerts" not in stored(fake, "prod", "chat-harm")["spec"]
    assert delivery.result == "created" and delivery.name.startswith("chat-llm-other-")


def test_alerts_naming_an_incident_the_intake_opened_go_back_to_it(fake):
    (first,) = deliver(alert(namespace="prod", deployment="chat-llm", pod="a"))
    watch = alert(alertname="Watch", namespace="prod", aiincident_incident=first.name)
    (back,) = deliver(watch)
    assert (back.name, back.result, back.note) == (first.name, "updated", None)
    prints = [a["fingerprint"] for a in stored(fake, "prod", first.name)["spec"]["alerts"]]
    assert prints == [first_print(pod="a"), watch["fingerprint"]]


def first_print(**extra: str) -> str:
    return alert(namespace="prod", deployment="chat-llm", **extra)["fingerprint"]


def test_a_resolved_alert_resolves_only_the_alert_it_names(fake):
    a = alert(namespace="prod", deployment="chat-llm", pod="a")
    b = alert(namespace="prod", deployment="chat-llm", pod="b")
    (first,) = deliver(a, b)
    done = copy.deepcopy(a) | {"status": "resolved", "endsAt": "2024-05-01T10:30:00Z"}
    named = copy.deepcopy(done)
    named["labels"]["aiincident_incident"] = first.name  # another label set, its own alert
    named["fingerprint"] = mapping.fingerprint(named["labels"])
    deliver(done, named)
    statuses = {x["fingerprint"]: x["status"] for x in stored(fake, "prod", first.name)["spec"]["alerts"]}  # fmt: skip
    assert statuses == {a["fingerprint"]: "resolved", b["fingerprint"]: "firing",
                        named["fingerprint"]: "resolved"}  # fmt: skip


def test_an_incident_whose_key_annotation_was_copied_onto_another_target_is_refused(fake):
    (first,) = deliver(alert(namespace="prod", deployment="chat-llm"))
    key = stored(fake, "prod", first.name)["metadata"]["annotations"][mapping.KEY_ANNOTATION]
    incident(fake, "prod", "decoy", {"category": "Other", "target": {"name": "decoy"}},
             {mapping.KEY_ANNOTATION: key})  # fmt: skip
    (delivery,) = deliver(alert("resolved", namespace="prod", aiincident_incident="decoy"))
    assert "alerts" not in stored(fake, "prod", "decoy")["spec"]
    assert "another target" in delivery.note


# --- 5. an alert can take the operator offline -------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "words"),
    [
        (OPS, "is the operator's own namespace"),
        ("kube-system", "namespace kube-system is protected"),
        ("kube-node-lease", "namespace kube-node-lease is protected"),
        ("team-secure", "namespace team-secure is protected"),
    ],
)
def test_alerts_for_protected_namespaces_are_filed_unmapped_with_no_target(namespace, words):
    (one,) = groups(
        alert(namespace=namespace, deployment="ai-incident-operator",
              ai_incident_category="HarmfulOutput", aiincident_incident="x"),
        protected=frozenset({"team-secure"}),
    )  # fmt: skip
    assert one.key == Key(OPS, f"unmapped/{namespace}/deployment=ai-incident-operator", "HarmfulOutput")  # fmt: skip
    assert one.target == {} and one.incident is None  # nor by naming an incident there
    assert words in one.unmapped
    body = mapping.new_incident(one, one.name, parse(payload()), one.items())
    assert "target" not in body["spec"] and body["metadata"]["namespace"] == OPS
    assert body["metadata"]["annotations"][mapping.UNMAPPED_ANNOTATION] == one.unmapped
    assert words in body["spec"]["description"]
    assert "no mitigation changes anything" in body["spec"]["description"]


def test_models_in_a_protected_namespace_are_not_targeted_either():
    (one,) = groups(alert(namespace="kube-system", model="chat"))
    assert one.key.namespace == OPS and one.target == {} and "protected" in one.unmapped


def test_other_namespaces_are_mapped_as_before():
    (one,) = groups(alert(namespace="prod", deployment="chat-llm"), protected=frozenset({"x"}))
    assert one.key == Key("prod", "deployment/chat-llm", "Other") and one.unmapped is None


def test_the_protected_set_reads_the_environment(monkeypatch, tmp_path):
    sa = tmp_path / "namespace"
    sa.write_text("where-the-pod-runs\n")
    monkeypatch.setattr(server, "SA_NAMESPACE_FILE", sa)
    found = server.protected_namespaces({"AIINCIDENT_PROTECTED_NAMESPACES": " a, b ,,"})
    assert found == {"kube-system", "kube-public", "kube-node-lease", "a", "b",
                     "where-the-pod-runs"}  # fmt: skip


def test_an_alert_for_the_operator_itself_changes_nothing_in_its_namespace(fake):
    (delivery,) = deliver(alert(namespace=OPS, deployment="ai-incident-operator"))
    created = stored(fake, OPS, delivery.name)
    assert "target" not in created["spec"] and "operator's own namespace" in delivery.unmapped


# --- 6. name squatting and hash collisions ------------------------------------------------------


HARM = {"namespace": "prod", "deployment": "chat-llm", "ai_incident_category": "HarmfulOutput"}


def test_a_squatted_name_does_not_capture_the_alert(fake):
    (group,) = groups(alert(**HARM))
    squat = incident(fake, "prod", group.name,
                     {"category": "HarmfulOutput", "severity": 3, "target": {"name": "decoy"}})  # fmt: skip
    (delivery,) = deliver(alert(**HARM))
    assert stored(fake, "prod", group.name) == squat  # untouched
    assert (delivery.name, delivery.result) == (f"{group.name}-2", "created")
    assert "was not opened by the intake" in delivery.displaced
    created = stored(fake, "prod", delivery.name)
    assert created["spec"]["target"] == {"kind": "Deployment", "name": "chat-llm"}
    assert "severity" not in created["spec"]
    why = created["metadata"]["annotations"][mapping.DISPLACED_ANNOTATION]
    assert group.name in why and "was not opened by the intake" in why
    assert f"Filed as {delivery.name}, not {group.name}" in created["spec"]["description"]
    # Resends go to the same incident: the name is still deterministic.
    (again,) = deliver(alert(**HARM))
    assert (again.name, again.result) == (delivery.name, "unchanged")
    (more,) = deliver(alert(**HARM, pod="p2"))
    assert (more.name, more.result) == (delivery.name, "updated")
    assert stored(fake, "prod", group.name) == squat


def test_a_hash_collision_gets_a_distinct_incident(fake):
    (group,) = groups(alert(**HARM))
    other = "prod/deployment/chat-llm-x/HarmfulOutput"  # a key whose name would be the same
    taken = incident(fake, "prod", group.name,
                     {"category": "HarmfulOutput", "target": {"name": "chat-llm-x"}},
                     {mapping.KEY_ANNOTATION: other})  # fmt: skip
    (delivery,) = deliver(alert(**HARM))
    assert stored(fake, "prod", group.name) == taken
    assert delivery.name == f"{group.name}-2" and "holds another alert group" in delivery.displaced
    annotations = stored(fake, "prod", delivery.name)["metadata"]["annotations"]
    assert annotations[mapping.KEY_ANNOTATION] == "prod/deployment/chat-llm/HarmfulOutput"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"category": "Other", "target": {"name": "chat-llm"}}, "has category 'Other'"),
        ({"category": "HarmfulOutput", "target": {"name": "decoy"}}, "has another target"),
        ({"category": "HarmfulOutput"}, "has another target"),
    ],
)
def test_a_copied_key_annotation_on_another_incident_does_not_capture_the_alert(fake, spec, words):
    (group,) = groups(alert(**HARM))
    squat = incident(fake, "prod", group.name, spec, {mapping.KEY_ANNOTATION: group.key.annotation})
    (delivery,) = deliver(alert("resolved", **HARM))
    assert stored(fake, "prod", group.name) == squat
    assert delivery.name == f"{group.name}-2" and words in delivery.displaced


def test_a_resolved_squatter_is_passed_over_without_absorbing(fake):
    (group,) = groups(alert(**HARM))
    squat = incident(fake, "prod", group.name, {"category": "HarmfulOutput", "target": {"name": "chat-llm"},
                     "alerts": [{"fingerprint": alert(**HARM)["fingerprint"], "status": "firing",
                                 "startsAt": "2024-05-01T10:00:00Z"}]})  # fmt: skip
    fake.objects[("AIIncident", "prod", group.name)]["status"] = {"phase": "Resolved"}
    squat["status"] = {"phase": "Resolved"}
    (delivery,) = deliver(alert("resolved", **HARM))
    assert stored(fake, "prod", group.name) == squat
    assert (delivery.name, delivery.result) == (f"{group.name}-2", "created")


NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def test_names_carry_a_64_bit_hash():
    key = Key("prod", "deployment/chat-llm", "HarmfulOutput")
    assert re.fullmatch(r"chat-llm-harmfuloutput-[0-9a-f]{16}", key.name)
    assert mapping.HASH_LENGTH >= 16


@given(
    namespace=st.text(max_size=70),
    target=st.text(max_size=300),
    category=st.sampled_from(mapping.CATEGORIES),
    n=st.integers(1, store.MAX_CHAIN),
)
@settings(max_examples=300, deadline=None)
def test_every_nth_name_stays_within_63_characters_with_monitoring(namespace, target, category, n):
    name = mapping.nth_name(Key(namespace, f"deployment/{target}", category).name, n)
    assert NAME.fullmatch(name) and len(name) + len("-monitoring") <= 63


def test_keys_read_back_from_their_annotation():
    for key in (
        Key("prod", "deployment/chat-llm", "HarmfulOutput"),
        Key("prod", "model/chat", "Other"),
        Key(OPS, "unmapped/a/b/deployment=x/y", "CostAnomaly"),
    ):
        assert mapping.parse_key(key.annotation) == key
    assert mapping.parse_key("prod/deployment/x/NotACategory") is None
    assert mapping.parse_key("Prod!/deployment/x/Other") is None


# --- 10. one poison alert drops the batch --------------------------------------------------------


POISON = {"status": "firing", "labels": {"alertname": "Big", "l": "x" * 5000}}


def test_a_bad_alert_is_left_out_and_the_good_ones_taken():
    good = alert(namespace="prod", deployment="chat-llm")
    parsed = parse(payload(good, POISON, 7, {"status": "on", "labels": {}}))
    assert [a.fingerprint for a in parsed.alerts] == [good["fingerprint"]]
    assert [(bad.index, bad.field) for bad in parsed.invalid] == [(1, "labels"), (2, "alert"), (3, "status")]  # fmt: skip
    fields = [p.field for p in parsed.problems()]
    assert fields == ["alerts[1].labels", "alerts[2]", "alerts[3].status"]
    assert "must take at most" in parsed.problems()[0].problem


def test_a_payload_of_only_bad_alerts_or_a_bad_payload_is_still_422():
    with pytest.raises(PayloadError) as err:
        parse(payload(POISON))
    assert [p.field for p in err.value.problems] == ["alerts[0].labels"]
    assert [bad.field for bad in err.value.invalid] == ["labels"]
    with pytest.raises(PayloadError) as err:
        parse({"version": 4, "alerts": [alert(namespace="prod", deployment="a"), POISON]})
    assert [p.field for p in err.value.problems] == ["version", "alerts[1].labels"]


def test_the_problems_reported_are_bounded():
    parsed = parse(payload(alert(namespace="p", deployment="a"), *([POISON] * 100)))
    assert len(parsed.invalid) == 100 and len(parsed.problems()) == mapping.MAX_PROBLEMS


def _post(settings: server.WebhookSettings, body: dict) -> tuple[int, dict]:
    async def go() -> tuple[int, dict]:
        app, _ = server.make_app(settings)
        async with test_utils.TestClient(test_utils.TestServer(app)) as client:
            reply = await client.post(
                server.ALERTS_PATH, json=body, headers={"Authorization": "Bearer t"}
            )
            return reply.status, await reply.json()

    return asyncio.run(go())


def _invalid(field: str) -> float:
    found = metrics.REGISTRY.get_sample_value("aiincident_alerts_invalid_total", {"field": field})
    return found or 0.0


def test_the_webhook_takes_the_good_alerts_and_reports_the_bad(fake):
    settings = server.WebhookSettings("127.0.0.1", 0, token="t", operator_namespace=OPS)
    good = alert(namespace="prod", deployment="chat-llm")
    before = _invalid("labels")
    status, body = _post(settings, payload(good, POISON))
    assert status == 200, body
    assert [d["result"] for d in body["incidents"]] == ["created"]
    assert body["rejected"] == 1
    assert body["problems"][0]["field"] == "alerts[1].labels"
    assert "must take at most" in body["problems"][0]["problem"]
    assert _invalid("labels") == before + 1
    (created,) = fake.list("AIIncident", "prod")
    assert [a["fingerprint"] for a in created["spec"]["alerts"]] == [good["fingerprint"]]
    # Nothing to say: the answer is as it always was.
    status, body = _post(settings, payload(good))
    assert (status, set(body)) == (200, {"incidents"})


def test_the_webhook_answers_422_when_no_alert_is_good(fake):
    settings = server.WebhookSettings("127.0.0.1", 0, token="t", operator_namespace=OPS)
    before = _invalid("labels")
    status, body = _post(settings, payload(POISON))
    assert status == 422 and body["field"] == "alerts[0].labels"
    assert _invalid("labels") == before + 1 and not fake.list("AIIncident", None)


def test_a_group_the_apiserver_refuses_does_not_cost_the_others(fake, monkeypatch):
    real = store.deliver

    def deliver(group, payload, ns, *admission):
        if group.key.target == "deployment/refused":
            raise store.Rejected("spec.alerts: too large")
        return real(group, payload, ns, *admission)

    monkeypatch.setattr(store, "deliver", deliver)
    settings = server.WebhookSettings("127.0.0.1", 0, token="t", operator_namespace=OPS)
    refused = alert(namespace="prod", deployment="refused")
    status, body = _post(settings, payload(alert(namespace="prod", deployment="ok"), refused))
    assert status == 200 and [d["name"][:3] for d in body["incidents"]] == ["ok-"]
    assert body["rejected"] == 1 and refused["fingerprint"] in body["problems"][0]["problem"]
    status, body = _post(settings, payload(refused))
    assert status == 422 and "too large" in body["problem"]


def test_the_webhook_files_protected_namespaces_unmapped(fake):
    settings = server.WebhookSettings(
        "127.0.0.1", 0, token="t", operator_namespace=OPS,
        protected_namespaces=frozenset({"team-secure"}),
    )  # fmt: skip
    status, body = _post(settings, payload(alert(namespace="team-secure", deployment="db")))
    assert status == 200
    (delivered,) = body["incidents"]
    assert delivered["namespace"] == OPS and "team-secure is protected" in delivered["unmapped"]
    assert fake.get(Ref("AIIncident", "team-secure", delivered["name"])) is None
