"""The pure parts of evidence collection: snapshots before mitigation, size bounds, schedules."""

import copy
from datetime import UTC, datetime

import pytest

from ai_incident_operator import ledger
from ai_incident_operator.fieldpath import ABSENT
from ai_incident_operator.investigation import cron, evidence
from ai_incident_operator.times import parse_time

DEPLOY = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "chat-llm",
        "labels": {"app": "chat", "app.kubernetes.io/version": "1.4", "model-version": "v42"},
        "resourceVersion": "7",
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {
        "replicas": 3,
        "template": {
            "metadata": {"labels": {"app": "chat", "aiincident.io/model-version": "v42"}},
            "spec": {
                "containers": [
                    {
                        "name": "llm",
                        "image": "llm:v42",
                        "env": [
                            {"name": "MODEL_VERSION", "value": "v42"},
                            {
                                "name": "SYSTEM_PROMPT",
                                "valueFrom": {"configMapKeyRef": {"name": "prompts", "key": "sys"}},
                            },
                        ],
                        "envFrom": [{"configMapRef": {"name": "llm-config", "optional": True}}],
                        "volumeMounts": [{"name": "tpl", "mountPath": "/etc/templates"}],
                    }
                ],
                "volumes": [
                    {"name": "tpl", "configMap": {"name": "prompts"}},
                    {
                        "name": "bundle",
                        "projected": {"sources": [{"configMap": {"name": "rag-settings"}}]},
                    },
                ],
            },
        },
    },
    "status": {"replicas": 3},
}
TEMP = "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]"


def test_before_mitigation_puts_the_originals_back():
    mitigated = copy.deepcopy(DEPLOY)
    ledger.hold(mitigated, "prod/a", "ScaleToZero", {"/spec/replicas": 0})
    ledger.hold(
        mitigated, "prod/a", "ConservativeConfig:llm", {TEMP: {"name": "TEMPERATURE", "value": "0"}}
    )
    assert mitigated["spec"]["replicas"] == 0
    snap, restored = evidence.before_mitigation(mitigated)
    assert restored == sorted(["/spec/replicas", TEMP])
    assert snap["spec"] == DEPLOY["spec"]  # TEMPERATURE was absent, and is again
    assert "annotations" not in snap["metadata"]
    assert "status" not in snap and "managedFields" not in snap["metadata"]


def test_ledger_originals_decodes_absent_fields():
    obj = copy.deepcopy(DEPLOY)
    ledger.hold(obj, "prod/a", "X", {"/spec/paused": True, "/spec/replicas": 1})
    originals = ledger.originals(obj)
    assert originals["/spec/replicas"] == 3
    assert originals["/spec/paused"] is ABSENT


def test_configmaps_a_pod_reads_are_all_found():
    uses = evidence._configmap_uses(DEPLOY["spec"]["template"])
    assert set(uses) == {"prompts", "llm-config", "rag-settings"}
    how, optional = uses["prompts"]
    assert "volume tpl at llm:/etc/templates" in how and "env SYSTEM_PROMPT" in how
    assert not optional
    assert uses["llm-config"] == ("envFrom of container llm", True)


def test_model_version_markers():
    template = DEPLOY["spec"]["template"]
    markers = evidence._model_markers(DEPLOY["metadata"], template)
    assert "label model-version=v42" in markers
    assert "pod label aiincident.io/model-version=v42" in markers
    assert "env llm/MODEL_VERSION=v42" in markers
    assert evidence._model_version(template) == "v42"
    bare = {
        "metadata": {"labels": {"app.kubernetes.io/version": "2.0"}},
        "spec": {"containers": []},
    }
    assert evidence._model_version(bare) == "2.0"


def test_last_change_is_the_newest_managed_fields_time():
    cm = {
        "metadata": {
            "creationTimestamp": "2024-05-01T10:00:00Z",
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "time": "2024-05-01T10:00:00Z"},
                {"manager": "kubectl-edit", "time": "2024-05-01T11:55:00Z"},
            ],
        }
    }
    assert evidence._last_change(cm) == (parse_time("2024-05-01T11:55:00Z"), "kubectl-edit")
    del cm["metadata"]["managedFields"]
    assert evidence._last_change(cm) == (parse_time("2024-05-01T10:00:00Z"), "")


def test_sections_are_truncated_with_a_note_and_the_total_is_bounded():
    big = "\n".join(f"line {i} " + "x" * 90 for i in range(5000))  # about 490 KB
    data = {"a.md": big, "b.md": big, "c.md": big, "small.md": "keep me\n"}
    out = evidence.bound(data, total=600_000, section=256 * 1024)
    sizes = {k: len(v.encode()) for k, v in out.items()}
    assert sum(sizes.values()) <= 600_000
    assert out["small.md"] == "keep me\n"
    for key in ("a.md", "b.md", "c.md"):
        assert "truncated:" in out[key] and f"of {key} not shown" in out[key]
        assert out[key].startswith("line 0 ")
    assert evidence.truncate("k", "short", 100) == "short"


def test_parse_time_reads_what_kubernetes_and_alertmanager_write():
    assert parse_time("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_time("2024-05-01T12:00:00.123456789Z") == datetime(
        2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC
    )
    assert parse_time("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_time("0001-01-01T00:00:00Z") is None  # Go's zero time: unset
    assert parse_time("") is None and parse_time("yesterday") is None


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("*/15 * * * *", ["2024-05-01T11:45:00", "2024-05-01T11:30:00"]),
        ("0 2 * * *", ["2024-05-01T02:00:00", "2024-04-30T02:00:00"]),
        ("@hourly", ["2024-05-01T11:00:00", "2024-05-01T10:00:00"]),
        ("30 4 * * mon", ["2024-04-29T04:30:00", "2024-04-22T04:30:00"]),
        ("0 0 1 * *", ["2024-05-01T00:00:00", "2024-04-01T00:00:00"]),
        ("CRON_TZ=UTC 0 9-17/4 * * 1-5", ["2024-05-01T09:00:00", "2024-04-30T17:00:00"]),
        ("0 0 13 * 5", ["2024-04-26T00:00:00", "2024-04-19T00:00:00"]),  # 13th OR Friday
    ],
)
def test_cron_previous_times(schedule, expected):
    before = datetime(2024, 5, 1, 11, 59, tzinfo=UTC)  # a Wednesday
    got = [t.strftime("%Y-%m-%dT%H:%M:%S") for t in cron.previous(schedule, before)]
    assert got == expected


def test_cron_rejects_what_it_cannot_read():
    for bad in ("every day", "61 * * * *", "* * * *"):
        with pytest.raises(cron.CronError):
            cron.previous(bad, datetime(2024, 5, 1, tzinfo=UTC))
