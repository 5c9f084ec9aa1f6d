"""The Alertmanager intake end to end: real HTTP to the real operator process, a real apiserver.

Alertmanager-shaped payloads (version 4, Alertmanager's fingerprints) are posted
to `POST /api/v1/alerts` of the `intake` operator, which watches `intake-*`
namespaces and files unmappable alerts in its own namespace.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.intake import mapping
from ai_incident_operator.kube import Ref

from alertkit import Webhook, am_alert, am_payload, wait_ready
from kit import OPERATOR_ENV, OperatorProcess, deployment, free_port, policy_body, wait_for

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}


@pytest.fixture
def hook(intake: OperatorProcess) -> Webhook:
    return Webhook.of(intake)


def incidents(namespace: str) -> list[dict]:
    return sorted(
        kube.list_objects("AIIncident", namespace), key=lambda i: i["metadata"]["creationTimestamp"]
    )


def only_incident(namespace: str) -> dict:
    found = incidents(namespace)
    assert len(found) == 1, [i["metadata"]["name"] for i in found]
    return found[0]


def condition(incident: dict, type_: str) -> dict:
    return next(c for c in incident["status"]["conditions"] if c["type"] == type_)


def quality(ns: str, deploy: str = "chat-llm", **labels: str) -> dict:
    labels.setdefault("ai_incident_category", "AccuracyDegradation")
    return am_alert(namespace=ns, deployment=deploy, **labels)


# --- authentication and bad input ------------------------------------------------------------


def test_alerts_need_the_bearer_token(hook, intake_namespace):
    body = am_payload(quality(intake_namespace))
    missing = hook.post(body, token=None)
    assert missing.status == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.body["field"] == "Authorization" and "missing" in missing.body["problem"]
    basic = hook.post(body, token=None, headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert basic.status == 401 and "Bearer <token>" in basic.body["problem"]
    wrong = hook.post(body, token="not-the-token")
    assert wrong.status == 403 and wrong.body["field"] == "Authorization"
    assert incidents(intake_namespace) == []


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "field", "words"),
    [
        (b'{"alerts": []}', "text/plain", 415, "Content-Type", "must be application/json"),
        (b'{"alerts": []}', None, 415, "Content-Type", "must be application/json"),
        (b'{"alerts": []}', "application/json; charset=latin-1", 415, "Content-Type", "utf-8"),
        (b'{"alerts": [', "application/json", 400, "body", "is not JSON"),
        (b"", "application/json", 400, "body", "is not JSON"),
        (b'{"alerts": ["\xff"]}', "application/json", 400, "body", "is not UTF-8"),
        (b"[" * 100_000, "application/json", 400, "body", "is not JSON"),
        (b'"alerts"', "application/json", 422, "body", "must be a JSON object"),
        (b'{"alerts": {}}', "application/json", 422, "alerts", "must be a list"),
        (
            b'{"alerts": [{"status": "firing", "labels": {"severity": 1}}]}',
            "application/json",
            422,
            "alerts[0].labels.severity",
            "must be a string",
        ),
        (
            b'{"alerts": [{"status": "on", "labels": {}}]}',
            "application/json",
            422,
            "alerts[0].status",
            '"firing" or "resolved"',
        ),
        (
            b'{"alerts": [{"status": "firing", "labels": {}, "startsAt": "now"}]}',
            "application/json",
            422,
            "alerts[0].startsAt",
            "RFC 3339",
        ),
    ],
)
def test_bad_input_gets_a_4xx_naming_the_field(hook, raw, content_type, status, field, words):
    reply = hook.post(raw=raw, content_type=content_type)
    assert reply.status == status, reply.body
    assert reply.body["field"] == field and words in reply.body["problem"], reply.body
    assert reply.body["problems"][0] == {
        "field": reply.body["field"],
        "problem": reply.body["problem"],
    }


def test_bodies_over_one_mib_get_413(hook, intake_namespace):
    big = am_payload(quality(intake_namespace, annotations={"description": "x" * (1 << 20)}))
    raw = json.dumps(big).encode()
    reply = hook.post(raw=raw)
    assert reply.status == 413 and reply.body["field"] == "body"
    # Without a Content-Length (chunked), the limit holds while reading.
    chunks = (raw[i : i + 65536] for i in range(0, len(raw), 65536))
    assert hook.post(raw=chunks).status == 413
    # Exactly at the limit is fine.
    body = am_payload(quality(intake_namespace, annotations={"description": ""}))
    pad = (1 << 20) - len(json.dumps(body).encode())
    body["alerts"][0]["annotations"]["description"] = "y" * pad
    assert len(json.dumps(body).encode()) == 1 << 20
    assert hook.post(body).status == 200
    # Long annotations are cut: the incident must stay small (kopf keeps a copy of its
    # spec in an annotation, and all annotations share 256 KiB).
    spec = only_incident(intake_namespace)["spec"]
    assert len(spec["alerts"][0]["annotations"]["description"]) == mapping.ANNOTATION_LIMIT
    assert len(spec["description"]) == mapping.ANNOTATION_LIMIT


def test_unknown_paths_and_methods_answer_json(hook):
    assert hook.get("/api/v1/nothing").status == 404
    reply = hook.get("/api/v1/alerts")
    assert reply.status == 405 and reply.body["field"] == "method"


# --- mapping, folding, resolving --------------------------------------------------------------


def _ready_policy(ns: str) -> None:
    spec = {
        "priority": 100,
        "targetSelector": {"matchLabels": LABELS},
        "triage": {
            "defaultSeverity": 3,
            "rules": [{"when": {"alertLabels": {"severity": "critical"}}, "severity": 1}],
        },
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
    }
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))

    def ready() -> bool:
        body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in body.get("status", {}).get("conditions", [])
        )

    wait_for(ready, 30, "policy Ready")


def test_a_critical_alert_opens_one_incident_that_gets_mitigated(hook, intake_namespace):
    ns = intake_namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    _ready_policy(ns)
    before = hook.metric("aiincident_detect_to_mitigate_seconds_count")
    group = am_payload(
        quality(ns, severity="critical", pod="chat-llm-1"),
        quality(ns, severity="critical", pod="chat-llm-2"),
    )
    reply = hook.post(group)
    assert reply.status == 200, reply.body
    (delivered,) = reply.body["incidents"]
    assert delivered["namespace"] == ns and delivered["result"] == "created"
    assert delivered["name"].startswith("chat-llm-accuracydegradation-")

    incident = wait_for(
        lambda: (i := only_incident(ns)).get("status", {}).get("phase") == "Mitigated" and i,
        30,
        "the incident Mitigated",
    )
    spec, status = incident["spec"], incident["status"]
    assert incident["metadata"]["name"] == delivered["name"]
    assert spec["source"]["type"] == "Alertmanager" and spec["category"] == "AccuracyDegradation"
    assert spec["target"] == {"kind": "Deployment", "name": "chat-llm"}
    assert "severity" not in spec  # the policy's triage rule decides
    assert status["severity"] == 1 and "alert severity=critical" in status["severityReason"]
    assert sorted(a["labels"]["pod"] for a in spec["alerts"]) == ["chat-llm-1", "chat-llm-2"]
    first = spec["alerts"][0]
    assert set(first) == {
        "fingerprint",
        "alertname",
        "status",
        "startsAt",
        "endsAt",
        "labels",
        "annotations",
        "generatorURL",
    }
    assert first["fingerprint"] == group["alerts"][0]["fingerprint"]
    assert first["status"] == "firing" and first["alertname"] == "ModelQualityLow"
    assert kube.get(Ref("Deployment", ns, "chat-llm"))["spec"]["replicas"] == 0

    # The metrics follow the watch: the incident by phase, and detect -> mitigate timed.
    wait_for(
        lambda: (
            hook.metric("aiincident_incidents", namespace=ns, phase="Mitigated", severity="1") == 1
        ),
        10,
        "incident gauge",
    )
    assert (
        hook.metric("aiincident_mitigations", namespace=ns, action="ScaleToZero", state="Applied")
        == 1
    )
    assert hook.metric("aiincident_detect_to_mitigate_seconds_count") >= before + 1
    assert hook.metric("aiincident_alerts_received_total", result="created") >= 2


def test_further_alerts_fold_and_resolved_alerts_update_status(hook, intake_namespace):
    ns = intake_namespace
    one = quality(ns, pod="p1")
    assert hook.post(am_payload(one)).status == 200
    name = only_incident(ns)["metadata"]["name"]
    two = quality(ns, pod="p2", alertname="ModelDrift")
    reply = hook.post(am_payload(one, two))
    assert reply.body["incidents"] == [
        {"namespace": ns, "name": name, "result": "updated", "alerts": 2}
    ]
    resolved = copy.deepcopy(one) | {"status": "resolved", "endsAt": "2026-01-01T10:30:00Z"}
    assert hook.post(am_payload(resolved, two)).status == 200
    alerts = {a["labels"]["pod"]: a for a in only_incident(ns)["spec"]["alerts"]}
    assert alerts["p1"]["status"] == "resolved" and alerts["p1"]["endsAt"] == "2026-01-01T10:30:00Z"
    assert alerts["p2"]["status"] == "firing"
    # A late resend of the firing notification does not undo the resolution.
    assert hook.post(am_payload(one)).body["incidents"][0]["result"] == "unchanged"
    assert {a["labels"]["pod"]: a["status"] for a in only_incident(ns)["spec"]["alerts"]} == {
        "p1": "resolved",
        "p2": "firing",
    }


def test_one_incident_per_target_and_category(hook, intake_namespace):
    ns = intake_namespace
    group = am_payload(
        quality(ns, "chat-llm"),
        quality(ns, "chat-llm", ai_incident_category="CostAnomaly"),
        quality(ns, "embedder"),
        am_alert(
            namespace=ns, workload="chat-llm", ai_incident_category="AccuracyDegradation", pod="x"
        ),
        am_alert(namespace=ns, model="chat", ai_incident_category="HarmfulOutput"),
    )
    reply = hook.post(group)
    assert reply.status == 200 and len(reply.body["incidents"]) == 4
    found = {
        (i["spec"]["category"], json.dumps(i["spec"]["target"], sort_keys=True)): i
        for i in incidents(ns)
    }
    assert len(found) == 4
    by_name = found[
        (
            "AccuracyDegradation",
            json.dumps({"kind": "Deployment", "name": "chat-llm"}, sort_keys=True),
        )
    ]
    assert len(by_name["spec"]["alerts"]) == 2  # deployment= and workload= name the same target
    model = found[
        (
            "HarmfulOutput",
            json.dumps(
                {
                    "kind": "Deployment",
                    "selector": {"matchLabels": {"aiincident.io/model": "chat"}},
                },
                sort_keys=True,
            ),
        )
    ]
    # No Deployment carries aiincident.io/model=chat: the engine says so, by the label.
    wait_for(
        lambda: (
            kube.get(Ref("AIIncident", ns, model["metadata"]["name"]))
            .get("status", {})
            .get("conditions")
        ),
        20,
        "status",
    )
    triaged = condition(kube.get(Ref("AIIncident", ns, model["metadata"]["name"])), "Triaged")
    assert triaged["reason"] == "TargetNotFound" and "aiincident.io/model" in triaged["message"]


def test_an_unmappable_alert_becomes_an_incident_in_the_operator_namespace(hook, intake):
    home = intake.env["AIINCIDENT_NAMESPACE"]
    lost = am_alert(alertname="TokenCostSpike", ai_incident_category="CostAnomaly", team="ml")
    reply = hook.post(am_payload(lost))
    assert reply.status == 200
    (delivered,) = reply.body["incidents"]
    assert delivered["namespace"] == home
    assert (
        "no label namespace and none of deployment, statefulset, rollout, leaderworkerset, inferenceservice, llminferenceservice, workload, model"
        in delivered["unmapped"]
    )
    name = delivered["name"]
    incident = wait_for(
        lambda: (
            (i := kube.get(Ref("AIIncident", home, name))).get("status", {}).get("conditions") and i
        ),
        20,
        "the incident triaged",
    )
    triaged = condition(incident, "Triaged")
    assert (triaged["status"], triaged["reason"]) == ("False", "TargetNotFound")
    assert incident["spec"]["category"] == "CostAnomaly" and "target" not in incident["spec"]
    assert (
        "no label namespace and none of deployment, statefulset, rollout, leaderworkerset, inferenceservice, llminferenceservice, workload, model"
        in incident["spec"]["description"]
    )
    assert incident["metadata"]["annotations"]["aiincident.io/unmapped"] == delivered["unmapped"]
    assert [a["fingerprint"] for a in incident["spec"]["alerts"]] == [lost["fingerprint"]]


def test_an_alert_for_a_namespace_that_does_not_exist_is_not_lost(hook, intake):
    home = intake.env["AIINCIDENT_NAMESPACE"]
    ghost = am_alert(namespace="intake-ghost-nowhere", deployment="chat-llm")
    reply = hook.post(am_payload(ghost))
    assert reply.status == 200, reply.body
    (delivered,) = reply.body["incidents"]
    assert delivered["namespace"] == home
    assert delivered["unmapped"] == "namespace intake-ghost-nowhere does not exist"
    incident = kube.get(Ref("AIIncident", home, delivered["name"]))
    assert [a["fingerprint"] for a in incident["spec"]["alerts"]] == [ghost["fingerprint"]]


# --- redelivery, concurrency, replicas ---------------------------------------------------------


def _group(ns: str) -> dict:
    return am_payload(
        *(quality(ns, pod=f"p{i}") for i in range(3)),
        *(quality(ns, "embedder", ai_incident_category="DataLeak", pod=f"p{i}") for i in range(2)),
    )


def _check_folded(ns: str, group: dict) -> None:
    found = incidents(ns)
    keys = [(i["spec"]["target"]["name"], i["spec"]["category"]) for i in found]
    assert sorted(keys) == [("chat-llm", "AccuracyDegradation"), ("embedder", "DataLeak")]
    held = {a["fingerprint"] for i in found for a in i["spec"]["alerts"]}
    assert held == {a["fingerprint"] for a in group["alerts"]}


def test_redelivering_a_group_five_times_writes_once(hook, intake_namespace):
    ns = intake_namespace
    group = _group(ns)
    results = [hook.post(group).body["incidents"] for _ in range(5)]
    assert [d["result"] for d in results[0]] == ["created", "created"]
    assert all(d["result"] == "unchanged" for r in results[1:] for d in r)
    _check_folded(ns, group)
    # Nothing but the first delivery wrote the spec.
    assert {i["metadata"]["generation"] for i in incidents(ns)} == {1}


def test_concurrent_deliveries_from_two_clients_fold_into_one_incident_each(
    hook, intake, intake_namespace
):
    ns = intake_namespace
    group = _group(ns)
    # Each client sends its own part of the group first, then the whole group: racing
    # creations and racing merges of different alerts into the same incidents.
    halves = [am_payload(*group["alerts"][0::2]), am_payload(*group["alerts"][1::2])]
    replies: list[int] = []

    def client(i: int) -> None:
        other = Webhook.of(intake)
        for body in (halves[i], group, group, halves[i], group):
            replies.append(other.post(body).status)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [200] * 10
    _check_folded(ns, group)


def test_two_replicas_fold_the_same_alerts_into_one_incident(hook, intake, intake_namespace):
    ns = intake_namespace
    # A second replica with the same token. Its --namespace bounds its intake too, so it
    # watches the test's namespace (beside the session's operator: both handle it).
    replica = OperatorProcess(
        f"intake-replica-{ns}",
        "--namespace",
        ns,
        env={**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": intake.env["AIINCIDENT_NAMESPACE"]},
        webhook_token=intake.webhook_token,
    ).start()
    try:
        other = Webhook.of(replica)
        wait_ready(other)
        group = _group(ns)
        statuses: list[int] = []
        threads = [
            threading.Thread(
                target=lambda h=h: statuses.extend(h.post(group).status for _ in range(3))
            )
            for h in (hook, other, hook, other)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 12
        _check_folded(ns, group)
    finally:
        replica.stop()


# --- resolved incidents, IncreaseMonitoring's alerts ---------------------------------------------


def test_after_resolution_only_a_new_firing_opens_a_new_incident(hook, intake_namespace):
    ns = intake_namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    first = quality(ns)
    name = hook.post(am_payload(first)).body["incidents"][0]["name"]
    wait_for(
        lambda: kube.get(Ref("AIIncident", ns, name)).get("status", {}).get("phase") == "Triaged",
        20,
        "Triaged",
    )
    kube.patch(Ref("AIIncident", ns, name), {"spec": {"resolution": {"requested": True}}})
    wait_for(
        lambda: kube.get(Ref("AIIncident", ns, name))["status"]["phase"] == "Resolved",
        20,
        "Resolved",
    )

    # Alertmanager resends the same alert (same start), then says it resolved: both
    # belong to the resolved incident.
    assert hook.post(am_payload(first)).body["incidents"][0] == {
        "namespace": ns,
        "name": name,
        "result": "unchanged",
        "alerts": 1,
    }
    done = copy.deepcopy(first) | {"status": "resolved", "endsAt": "2026-01-01T12:00:00Z"}
    assert hook.post(am_payload(done)).body["incidents"][0]["result"] == "updated"
    assert kube.get(Ref("AIIncident", ns, name))["spec"]["alerts"][0]["status"] == "resolved"
    assert len(incidents(ns)) == 1

    # It fires again: a new incident, with the next deterministic name.
    again = quality(ns, starts="2026-01-02T08:00:00Z")
    reply = hook.post(am_payload(again)).body["incidents"][0]
    assert reply == {"namespace": ns, "name": f"{name}-2", "result": "created", "alerts": 1}
    assert len(incidents(ns)) == 2


def test_alerts_of_an_increase_monitoring_rule_go_back_to_their_incident(hook, intake_namespace):
    # Into an incident the intake opened; never into one made otherwise (test_intake_misuse).
    ns = intake_namespace
    harm = quality(ns, ai_incident_category="HarmfulOutput")
    name = hook.post(am_payload(harm)).body["incidents"][0]["name"]
    watch = am_alert(alertname="ChatQualityWatch", namespace=ns, aiincident_incident=name)
    reply = hook.post(am_payload(watch)).body["incidents"]
    assert reply == [{"namespace": ns, "name": name, "result": "updated", "alerts": 1}]
    assert [a["alertname"] for a in kube.get(Ref("AIIncident", ns, name))["spec"]["alerts"]] == [
        "ModelQualityLow",
        "ChatQualityWatch",
    ]


# --- the process: probes, no token, no apiserver -----------------------------------------------


def test_probes(hook):
    assert hook.get("/healthz").status == 200
    assert hook.get("/readyz").body == {"ready": True}
    metrics = hook.get("/metrics")
    assert metrics.status == 200 and "aiincident_alerts_received_total" in metrics.body


def test_a_namespace_created_meanwhile_leaves_the_webhook_ready(hook):
    # /readyz takes the webhook out of its Service: a new namespace being picked up must not
    # cut off the alerts meanwhile (it made test_probes fail on a fresh machine).
    wait_for(lambda: hook.get("/readyz").body == {"ready": True}, 30, "the webhook ready")
    core = kubernetes.client.CoreV1Api()
    name = f"intake-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    answers = []
    try:
        end = time.monotonic() + 5  # the coverage looks every 2 s
        while time.monotonic() < end:
            answers.append(hook.get("/readyz").body)
            time.sleep(0.05)
    finally:
        core.delete_namespace(name)
    assert [a for a in answers if a != {"ready": True}] == [] and len(answers) > 20


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "ai_incident_operator.cli", "run", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)


def test_without_a_token_the_operator_refuses_to_start(cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AIINCIDENT_WEBHOOK_TOKEN"}
    done = _run("--webhook-listen", f"127.0.0.1:{free_port()}", env=env)
    assert done.returncode == 2
    assert "--webhook-token-file" in done.stderr and "--insecure-no-auth" in done.stderr
    empty = tmp_path / "token"
    empty.write_text("\n")
    done = _run("--webhook-token-file", str(empty), env=env)
    assert done.returncode == 2 and "is empty" in done.stderr


def test_insecure_no_auth_takes_alerts_without_a_token_and_warns(cluster, solo_namespace):
    proc = OperatorProcess(
        f"intake-insecure-{solo_namespace}",
        "--namespace",
        solo_namespace,
        "--insecure-no-auth",
        env={"AIINCIDENT_NAMESPACE": solo_namespace},
    ).start()
    try:
        open_hook = Webhook(proc.webhook_url, None)
        wait_ready(open_hook)
        reply = open_hook.post(
            am_payload(am_alert(namespace=solo_namespace, deployment="m")), token=None
        )
        assert reply.status == 200, reply.body
        assert "webhook authentication is OFF" in proc.log_tail(100_000)
    finally:
        proc.stop()


def test_a_token_file_is_read_again_when_it_changes(cluster, solo_namespace, tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    proc = OperatorProcess(
        f"intake-tokenfile-{solo_namespace}",
        "--namespace",
        solo_namespace,
        "--webhook-token-file",
        str(token),
        env={"AIINCIDENT_NAMESPACE": solo_namespace},
    ).start()
    try:
        client = Webhook(proc.webhook_url, "first")
        wait_ready(client)
        body = am_payload(am_alert(namespace=solo_namespace, deployment="m"))
        assert client.post(body).status == 200
        token.write_text("second\n")
        os.utime(token, (1, 1))  # a new mtime even within the same second
        assert client.post(body).status == 403
        assert client.post(body, token="second").status == 200
    finally:
        proc.stop()


def test_an_unreachable_apiserver_gets_503_so_alertmanager_retries(cluster, tmp_path):
    # The same kubeconfig, pointing at a port where no apiserver listens.
    config = Path(os.environ["KUBECONFIG"]).read_text()
    import yaml

    doc = yaml.safe_load(config)
    for c in doc["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead = tmp_path / "kubeconfig"
    dead.write_text(yaml.safe_dump(doc))
    proc = OperatorProcess(
        "intake-no-apiserver", "--namespace", "nothing-*", env={"KUBECONFIG": str(dead)}
    )
    proc.start()
    try:
        client = Webhook.of(proc)
        ready = client.get("/readyz")
        assert ready.status == 503 and "apiserver" in ready.body["reason"]
        # (A namespace it watches: alerts for others are refused before any write.)
        alert = am_alert(namespace="nothing-prod", deployment="chat-llm")
        reply = client.post(am_payload(alert))
        assert reply.status == 503, reply.body
        assert reply.body["field"] == "apiserver" and reply.headers["retry-after"] == "5"
        # Bad input is still the sender's problem, not a 5xx.
        assert client.post(raw=b"{").status == 400
    finally:
        proc.stop()
    assert proc.log_path.exists()


def test_the_alerts_write_holds_against_status_writes_not_against_spec_changes(namespace):
    """The intake's write is conditional on the spec's generation: the operator's status
    writes in between (which move the resourceVersion) do not make it conflict, a spec
    change does, and the apiserver's failed JSON Patch `test` is read as a Conflict."""
    from ai_incident_operator.errors import Conflict
    from ai_incident_operator.intake import store

    ref = Ref("AIIncident", namespace, "written-alerts")
    kube.create("AIIncident", namespace, {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": ref.name},
        "spec": {"severity": 3, "category": "Other", "summary": "s", "alerts": []},
    })  # fmt: skip
    read = kube.get(ref)
    kube.patch_status(ref, {"phase": "Detected"})  # the engine, between our read and write
    store._write(ref, read, [{"fingerprint": "a1", "labels": {"alertname": "x"}}])
    assert [a["fingerprint"] for a in kube.get(ref)["spec"]["alerts"]] == ["a1"]
    with pytest.raises(Conflict):  # `read` is a generation behind now
        store._write(ref, read, [{"fingerprint": "b2", "labels": {"alertname": "x"}}])
    assert [a["fingerprint"] for a in kube.get(ref)["spec"]["alerts"]] == ["a1"]
