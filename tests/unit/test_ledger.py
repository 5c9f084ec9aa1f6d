import copy
import json

from ai_incident_operator import ledger

BASE = {
    "metadata": {"name": "chat-llm", "labels": {"app": "chat"}},
    "spec": {
        "replicas": 3,
        "template": {"spec": {"containers": [{"name": "llm", "image": "llm:v42"}]}},
    },
}
REPLICAS = "/spec/replicas"
TEMP = "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]"


def test_hold_records_original_and_release_restores_exactly():
    obj = copy.deepcopy(BASE)
    assert ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})
    assert obj["spec"]["replicas"] == 0
    assert json.loads(obj["metadata"]["annotations"][ledger.ANNOTATION])["originals"] == {
        REPLICAS: 3
    }
    assert ledger.release(obj, "prod/a")
    assert obj == BASE  # annotations was absent before, and is again


def test_repeating_a_hold_changes_nothing():
    obj = copy.deepcopy(BASE)
    ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})
    assert not ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})


def test_a_change_made_meanwhile_survives_undo():
    obj = copy.deepcopy(BASE)
    ledger.hold(obj, "prod/a", "ConservativeConfig", {TEMP: {"name": "TEMPERATURE", "value": "0"}})
    obj["spec"]["template"]["spec"]["containers"][0]["image"] = "llm:v43"  # the fix ships
    ledger.release(obj, "prod/a")
    expected = copy.deepcopy(BASE)
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = "llm:v43"
    assert obj == expected


def test_stacked_holders_restore_only_when_the_last_lets_go_in_either_order():
    for first_out, last_out in (("prod/a", "prod/b"), ("prod/b", "prod/a")):
        obj = copy.deepcopy(BASE)
        ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})
        ledger.hold(obj, "prod/b", "ScaleToZero", {REPLICAS: 0})
        ledger.release(obj, first_out)
        assert obj["spec"]["replicas"] == 0
        assert ledger.holders(obj) == [(last_out, "ScaleToZero")]
        ledger.release(obj, last_out)
        assert obj == BASE


def test_latest_holder_wins_and_the_earlier_value_returns_when_it_leaves():
    obj = copy.deepcopy(BASE)
    ledger.hold(obj, "prod/a", "Scale", {REPLICAS: 1})
    ledger.hold(obj, "prod/b", "Scale", {REPLICAS: 0})
    assert obj["spec"]["replicas"] == 0
    ledger.release(obj, "prod/b")
    assert obj["spec"]["replicas"] == 1
    ledger.release(obj, "prod/a")
    assert obj["spec"]["replicas"] == 3


def test_holder_that_changes_its_values_gives_back_dropped_fields():
    obj = copy.deepcopy(BASE)
    ledger.hold(obj, "prod/a", "Config", {REPLICAS: 1, TEMP: {"name": "TEMPERATURE", "value": "0"}})
    ledger.hold(obj, "prod/a", "Config", {REPLICAS: 1})
    assert "env" not in obj["spec"]["template"]["spec"]["containers"][0]
    assert ledger.read(obj)["originals"] == {REPLICAS: 3}


def test_absent_original_is_restored_as_absent():
    obj = copy.deepcopy(BASE)
    ledger.hold(
        obj, "prod/a", "Pause", {"/metadata/annotations/autoscaling.keda.sh~1paused-replicas": "0"}
    )
    assert obj["metadata"]["annotations"]["autoscaling.keda.sh/paused-replicas"] == "0"
    assert ledger.holds(obj, "prod/a", "Pause") == {
        "/metadata/annotations/autoscaling.keda.sh~1paused-replicas": "0"
    }
    ledger.release(obj, "prod/a")
    assert obj == BASE


def test_contested_names_fields_someone_reverted():
    obj = copy.deepcopy(BASE)
    ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})
    assert ledger.contested(obj, "prod/a", "ScaleToZero") == []
    obj["spec"]["replicas"] = 3  # a GitOps sync
    assert ledger.contested(obj, "prod/a", "ScaleToZero") == [REPLICAS]
    assert ledger.hold(obj, "prod/a", "ScaleToZero", {REPLICAS: 0})
    ledger.release(obj, "prod/a")
    assert obj["spec"]["replicas"] == 3


def test_release_of_unknown_holder_is_a_no_op():
    obj = copy.deepcopy(BASE)
    assert not ledger.release(obj, "prod/zzz")
    assert obj == BASE
    assert ledger.holds(obj, "prod/zzz", "x") is None
