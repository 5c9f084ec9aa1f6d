import copy

import pytest

from ai_incident_operator.fieldpath import ABSENT, PathError, get, put

DEPLOY = {
    "metadata": {"name": "chat", "annotations": {"a": "1"}},
    "spec": {
        "replicas": 3,
        "template": {
            "spec": {
                "containers": [
                    {"name": "llm", "image": "llm:v42", "env": [{"name": "A", "value": "1"}]}
                ]
            }
        },
    },
}


def test_get_by_key_index_and_escaped_segment():
    assert get(DEPLOY, "/spec/replicas") == 3
    assert get(DEPLOY, "/spec/template/spec/containers[name=llm]/image") == "llm:v42"
    assert get(DEPLOY, "/spec/template/spec/containers[0]/env[name=A]") == {
        "name": "A",
        "value": "1",
    }
    assert (
        get({"metadata": {"annotations": {"k.io/x": "y"}}}, "/metadata/annotations/k.io~1x") == "y"
    )
    assert get(DEPLOY, "/spec/template/spec/containers[name=guard]") is ABSENT
    assert get(DEPLOY, "/spec/paused") is ABSENT


def test_put_then_remove_restores_the_object_exactly():
    obj = copy.deepcopy(DEPLOY)
    put(
        obj,
        "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]",
        {"name": "TEMPERATURE", "value": "0"},
    )
    put(obj, "/spec/template/spec/containers[name=guard]", {"name": "guard", "image": "g:1"})
    put(obj, "/metadata/labels/x", "y")
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["llm", "guard"]
    put(obj, "/spec/template/spec/containers[name=llm]/env[name=TEMPERATURE]", ABSENT)
    put(obj, "/spec/template/spec/containers[name=guard]", ABSENT)
    put(obj, "/metadata/labels/x", ABSENT)
    obj["metadata"].pop("labels")  # an emptied parent map is the caller's business
    assert obj == DEPLOY


def test_removing_the_last_item_drops_the_list_as_kubernetes_does():
    obj = {"spec": {"containers": [{"name": "llm"}]}}
    put(obj, "/spec/containers[name=llm]/env[name=A]", {"name": "A", "value": "1"})
    put(obj, "/spec/containers[name=llm]/env[name=A]", ABSENT)
    assert obj == {"spec": {"containers": [{"name": "llm"}]}}


def test_removing_what_is_not_there_changes_nothing():
    obj = copy.deepcopy(DEPLOY)
    put(obj, "/spec/strategy/rollingUpdate", ABSENT)
    put(obj, "/spec/template/spec/containers[name=nope]/env[name=A]", ABSENT)
    assert obj == DEPLOY


def test_index_past_the_end_is_an_error():
    with pytest.raises(PathError):
        put({"spec": {"http": []}}, "/spec/http[2]/route", [])
