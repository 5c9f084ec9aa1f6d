"""Which watch events of held objects bring a pass (`heldwatch.due`), without a cluster.

A revert brings its holders' pass at once; the controllers' status updates while the
object stays reverted (a contest's backoff) do not, nor do the operator's own writes;
a person's change of a held workload's pod template does (its timeline says so).
"""

from __future__ import annotations

import copy

from ai_incident_operator import heldwatch, ledger

HOLDER = "prod/harm"


def held() -> dict:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": "prod", "uid": "u1", "generation": 2},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "llm", "image": "llm:v42"}]}}},
    }  # fmt: skip
    ledger.hold(obj, HOLDER, "ScaleToZero", {"/spec/replicas": 0})
    return obj


def step(obj: dict, change) -> dict:
    obj = copy.deepcopy(obj)
    change(obj)
    return obj


def reverted(obj: dict) -> None:
    obj["spec"]["replicas"] = 3
    obj["metadata"]["generation"] += 1


def test_a_revert_brings_a_pass_and_status_updates_while_reverted_do_not():
    ours = held()
    first = heldwatch.seen(ours)
    assert heldwatch.due(None, first, ours) == []  # in force: nothing to do
    back = step(ours, reverted)
    after = heldwatch.seen(back)
    assert heldwatch.due(first, after, back) == [("prod", "harm")]
    # The Deployment controller writes status again and again: same generation, same revert.
    status = step(back, lambda o: o.update(status={"replicas": 3, "readyReplicas": 2}))
    assert heldwatch.due(after, heldwatch.seen(status), status) == []
    # A restart sees it for the first time: a pass.
    assert heldwatch.due(None, heldwatch.seen(status), status) == [("prod", "harm")]


def test_the_operators_repair_brings_no_pass_and_the_next_revert_does():
    ours = held()
    back = step(ours, reverted)
    repaired = step(back, lambda o: (o["spec"].update(replicas=0), o["metadata"].update(generation=4)))  # fmt: skip
    assert heldwatch.due(heldwatch.seen(back), heldwatch.seen(repaired), repaired) == []
    again = step(repaired, reverted)
    assert heldwatch.due(heldwatch.seen(repaired), heldwatch.seen(again), again) == [
        ("prod", "harm")
    ]


def test_a_persons_new_image_on_a_held_workload_brings_a_pass():
    ours = held()
    rolled = step(ours, lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="llm:v43"))  # fmt: skip
    assert heldwatch.due(heldwatch.seen(ours), heldwatch.seen(rolled), rolled) == [("prod", "harm")]


def test_the_operators_own_template_change_brings_no_pass():
    ours = held()
    sidecar = step(ours, lambda o: ledger.hold(
        o, HOLDER, "GuardrailSidecar:g",
        {"/spec/template/spec/containers[name=g]": {"name": "g", "image": "guard:v1"}}))  # fmt: skip
    assert heldwatch.due(heldwatch.seen(ours), heldwatch.seen(sidecar), sidecar) == []
