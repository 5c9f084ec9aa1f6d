"""Evidence and hypotheses from real objects on a real apiserver.

Each test builds one root cause the way it happens in a cluster (a pipeline Job the
Job controller fails, a rollout the Deployment controller performs, an edited
prompt ConfigMap, replicas that never become available because this control plane
has no kubelet), collects the evidence as the engine will, and checks that the
cause ranks first. Every test's model is a freshly created Deployment, so a weak
"first rollout" DeploymentChange is always the background the cause must beat.
No operator runs in these namespaces: the tests call the investigation directly.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import kubernetes
import pytest

from ai_incident_operator import kube, ledger, review
from ai_incident_operator.investigation import evidence, hypotheses
from ai_incident_operator.kube import Ref

import kubelet
from kit import create_incident, deployment, free_port, kubectl, wait_for

pytestmark = pytest.mark.integration

FEEDS = {"aiincident.io/feeds": "chat"}
POLICY = {"evidence": {"pipelineSelector": {"matchLabels": FEEDS}, "lookback": "1h"}}
LABELS = {"app.kubernetes.io/part-of": "chat"}


def make_model(ns: str, replicas: int = 0, volumes: list | None = None) -> dict:
    body = deployment("chat-llm", LABELS, replicas=replicas)
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0]["env"] = [{"name": "MODEL_VERSION", "value": "v42"}]
    if volumes:
        pod["volumes"] = volumes
        pod["containers"][0]["volumeMounts"] = [
            {"name": v["name"], "mountPath": f"/etc/{v['name']}"} for v in volumes
        ]
    kube.create("Deployment", ns, body)
    wait_for(lambda: len(replicasets(ns)) == 1, 20, "the first ReplicaSet")
    return kube.get(Ref("Deployment", ns, "chat-llm"))


def replicasets(ns: str) -> list[dict]:
    return kube.list_objects("ReplicaSet", ns, "app=chat-llm")


def open_incident(ns: str, name: str = "quality-drop") -> dict:
    create_incident(ns, name, {"category": "AccuracyDegradation", "target": {"name": "chat-llm"}})
    return kube.get(Ref("AIIncident", ns, name))


def investigate(
    ns: str, incident: dict, policy: dict | None = None
) -> tuple[dict[str, str], list[dict]]:
    target = kube.get(Ref("Deployment", ns, "chat-llm"))
    data, facts = evidence.collect(incident, [target], policy or POLICY, datetime.now(UTC))
    return data, hypotheses.rank(facts, datetime.now(UTC))


def by_cause(ranked: list[dict]) -> dict[str, dict]:
    return {h["cause"]: h for h in ranked}


def test_a_failed_pipeline_run_ranks_first(solo_namespace):
    ns = solo_namespace
    make_model(ns)
    cron_kind = "CronJob" if kube.kind_installed("CronJob") else "CronJob/v1beta1"
    container = {"name": "etl", "image": "registry.local/features:v3"}
    cronjob = kube.create(
        cron_kind,
        ns,
        {
            "apiVersion": kube.KINDS[cron_kind].api_version,
            "kind": "CronJob",
            "metadata": {"name": "features-nightly", "labels": FEEDS},
            "spec": {
                "schedule": "0 2 * * *",
                "suspend": True,  # the test makes the run itself
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {"containers": [container], "restartPolicy": "Never"}}
                    }
                },
            },
        },
    )
    # The run the CronJob started: it does not carry the selector's labels, only the owner.
    kube.create(
        "Job",
        ns,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "features-nightly-1714528800",
                "ownerReferences": [
                    {
                        "apiVersion": cronjob["apiVersion"],
                        "kind": "CronJob",
                        "name": "features-nightly",
                        "uid": cronjob["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": 1,  # no kubelet runs it: the Job controller fails it
                "template": {"spec": {"containers": [container], "restartPolicy": "Never"}},
            },
        },
    )
    wait_for(
        lambda: any(
            c["type"] == "Failed" and c["status"] == "True"
            for c in (
                kube.get(Ref("Job", ns, "features-nightly-1714528800")).get("status") or {}
            ).get("conditions", [])
        ),
        30,
        "the Job controller to fail the run",
    )
    incident = open_incident(ns)
    data, ranked = investigate(ns, incident)

    assert ranked[0]["cause"] == "DataPipelineFailure"
    assert ranked[0]["confidence"] >= 0.8
    assert ranked[0]["evidence"][0].startswith("CronJob/features-nightly: latest run failed at ")
    assert "DeadlineExceeded" in ranked[0]["evidence"][0]
    assert by_cause(ranked)["DeploymentChange"]["confidence"] < ranked[0]["confidence"]
    pipelines = data["pipelines.md"]
    assert "## CronJob/features-nightly" in pipelines
    assert "- schedule: `0 2 * * *` (suspended)" in pipelines
    assert "| features-nightly-1714528800 |" in pipelines and "| Failed |" in pipelines
    assert "**DataPipelineFailure** (confidence" in data["summary.md"]


def test_a_rollout_minutes_before_detection_ranks_first(solo_namespace):
    ns = solo_namespace
    make_model(ns)

    def ship_v43(d: dict) -> bool:
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["image"] = "registry.local/llm:v43"
        c["env"] = [{"name": "MODEL_VERSION", "value": "v43"}]
        return True

    kube.update(Ref("Deployment", ns, "chat-llm"), ship_v43)
    wait_for(lambda: len(replicasets(ns)) == 2, 20, "the rollout's new ReplicaSet")
    incident = open_incident(ns)
    data, ranked = investigate(ns, incident)

    assert [h["cause"] for h in ranked] == ["DeploymentChange"]
    top = ranked[0]
    assert top["confidence"] >= 0.85
    assert top["evidence"][0].startswith("Deployment/chat-llm rolled out revision 2 ")
    assert "before detection" in top["evidence"][0]
    assert (
        "Deployment/chat-llm image changed registry.local/llm:v42 -> registry.local/llm:v43"
        in top["evidence"]
    )
    assert any("model version changed v42 -> v43" in line for line in top["evidence"])
    model = data["model-version.md"]
    assert "- revision: 2" in model
    assert "- images: registry.local/llm:v43" in model
    assert "env llm/MODEL_VERSION=v43" in model
    history = [
        line for line in model.splitlines() if line.startswith("| 2 ") or line.startswith("| 1 ")
    ]
    assert [line.split(" | ")[4] for line in history] == ["v43", "v42"]
    assert ok_root_cause(ranked)


def ok_root_cause(ranked: list[dict]) -> bool:
    identified, reason, _ = hypotheses.root_cause_identified(ranked, {})
    return identified and reason == "HypothesisAboveThreshold"


def test_an_edited_prompt_template_ranks_first(solo_namespace):
    ns = solo_namespace
    kube.create(
        "ConfigMap",
        ns,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "chat-prompts"},
            "data": {"system.txt": "You are a careful assistant. Never give dosage advice."},
        },
    )
    make_model(ns, volumes=[{"name": "prompts", "configMap": {"name": "chat-prompts"}}])
    time.sleep(2.5)  # an edit, seconds after creation (managedFields keep seconds)
    # A person edits the template; kubectl records itself as the field manager.
    kubectl("-n", ns, "patch", "configmap", "chat-prompts", "--type=merge",
            "-p", json.dumps({"data": {"system.txt": "You are a helpful assistant."}}))  # fmt: skip
    incident = open_incident(ns)
    data, ranked = investigate(ns, incident)

    assert ranked[0]["cause"] == "PromptTemplateChange"
    line = ranked[0]["evidence"][0]
    assert line.startswith(
        "ConfigMap chat-prompts (volume prompts at llm:/etc/prompts of Deployment/chat-llm) "
        "changed by kubectl-patch "
    )
    assert "before detection" in line
    configmaps = data["configmaps.md"]
    assert "### chat-prompts" in configmaps
    assert "You are a helpful assistant." in configmaps  # what was serving


def test_unavailable_replicas_rank_first(solo_namespace):
    ns = solo_namespace
    kubelet.hold(ns)  # the pods are created and stay Pending, never available
    make_model(ns, replicas=3)
    wait_for(
        lambda: (
            (kube.get(Ref("Deployment", ns, "chat-llm")).get("status") or {}).get(
                "unavailableReplicas"
            )
            == 3
        ),
        30,
        "3 unavailable replicas",
    )
    wait_for(lambda: len(kube.list_objects("Pod", ns, "app=chat-llm")) == 3, 30, "3 pods")
    incident = open_incident(ns)
    data, ranked = investigate(ns, incident)

    assert ranked[0]["cause"] == "InfrastructureDegradation"
    assert ranked[0]["evidence"][0].startswith("Deployment/chat-llm: 3 of 3 replicas unavailable")
    assert "Pending (not scheduled to any node)" in ranked[0]["evidence"][1]
    assert "ScalingReplicaSet" in data["events.md"]
    assert (
        "3 wanted before mitigation, 3 now, 0 available, 3 unavailable" in data["model-version.md"]
    )


def test_evidence_configmap_shows_the_target_before_mitigation(solo_namespace):
    ns = solo_namespace
    make_model(ns, replicas=2)
    incident = open_incident(ns)
    holder = f"{ns}/{incident['metadata']['name']}"
    # What ScaleToZero does to the target: the value and its ledger in one write.
    kube.update(
        Ref("Deployment", ns, "chat-llm"),
        lambda d: ledger.hold(d, holder, "ScaleToZero", {"/spec/replicas": 0}),
    )
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = {
        **POLICY,
        "evidence": {
            **POLICY["evidence"],
            "prometheusURL": dead,
            "queries": [{"name": "quality", "query": "min(ai_model_quality_score)"}],
        },
    }
    data, _ = investigate(ns, incident, policy)

    assert list(data) == [key for key, _ in evidence.SECTIONS]
    assert "replicas: 2\n" in data["targets.yaml"]
    assert "mitigations changed /spec/replicas" in data["targets.yaml"]
    assert ledger.ANNOTATION not in data["targets.yaml"]
    assert f"EVIDENCE INCOMPLETE: Prometheus at {dead} is unreachable" in data["metrics.md"]
    assert "Nothing matches the selector" in data["pipelines.md"]

    ref = evidence.write_evidence(incident, data)
    assert ref == {"kind": "ConfigMap", "name": "quality-drop-evidence"}
    stored = kube.get(Ref("ConfigMap", ns, ref["name"]))
    assert stored["data"] == data
    owner = stored["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("AIIncident", incident["metadata"]["uid"])
    data["summary.md"] += "refreshed\n"
    assert evidence.write_evidence(incident, data) == ref  # replaced in place
    assert kube.get(Ref("ConfigMap", ns, ref["name"]))["data"]["summary.md"].endswith("refreshed\n")

    text = review.render(incident, datetime.now(UTC))
    review_ref = review.write_review(incident, text)
    assert review_ref == {"kind": "ConfigMap", "name": "quality-drop-review"}
    assert kube.get(Ref("ConfigMap", ns, "quality-drop-review"))["data"]["review.md"] == text

    # Deleting the incident deletes its documents (garbage collection by ownerReference).
    kube.delete(Ref("AIIncident", ns, "quality-drop"))
    wait_for(
        lambda: (
            kube.get(Ref("ConfigMap", ns, "quality-drop-evidence")) is None
            and kube.get(Ref("ConfigMap", ns, "quality-drop-review")) is None
        ),
        60,
        "the garbage collector to delete the owned ConfigMaps",
    )


def test_a_configmap_someone_else_owns_is_left_alone(solo_namespace):
    ns = solo_namespace
    make_model(ns)
    incident = open_incident(ns)
    kube.create(
        "ConfigMap",
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "quality-drop-review"},
         "data": {"mine": "yes"}},
    )  # fmt: skip
    with pytest.raises(Exception, match="is not owned by this incident"):
        review.write_review(incident, "# review\n")
    assert kube.get(Ref("ConfigMap", ns, "quality-drop-review"))["data"] == {"mine": "yes"}
    assert kubernetes.client.CoreV1Api().read_namespaced_config_map("quality-drop-review", ns)
