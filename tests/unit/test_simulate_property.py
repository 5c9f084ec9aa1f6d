"""`simulate` says what the operator does: the same steps, states and words, for any policy.

For generated dry-run policies (any non-empty subset of four actions, in any order, for
any severities) and incidents (any severity, an existing target or not), the steps
`validation.simulate` reports equal the `status.mitigations` that `engine.reconcile`
writes on an identical FakeCluster with that policy as the only ready one. Both run
`engine.decide` and the actions' dry run; a change to one that the other lacks shows
here. The policy's dryRun also means the operator changes nothing but the status.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import engine, validation

from fakecluster import FakeCluster

NS = "prod"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
LABELS = {"app": "chat"}
Body = dict[str, Any]


def cluster() -> FakeCluster:
    fake = FakeCluster()
    fake.add({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": NS, "labels": dict(LABELS)},
        "spec": {"replicas": 3, "selector": {"matchLabels": dict(LABELS)}, "template": {
            "metadata": {"labels": dict(LABELS)},
            "spec": {"containers": [{"name": "llm", "image": "llm:v42",
                                     "env": [{"name": "TEMPERATURE", "value": "0.7"}]}]}}},
    })  # fmt: skip
    for name in ("chat", "chat-fallback"):
        fake.add({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": name, "namespace": NS},
                  "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})  # fmt: skip
    return fake


def ready(policy: Body) -> Body:
    body = copy.deepcopy(policy)
    body["status"] = {
        "observedGeneration": body["metadata"]["generation"],
        "conditions": [{"type": "Ready", "status": "True", "reason": "Valid", "message": ""}],
    }
    return body


ENV_NAMES = ("TEMPERATURE", "MAX_TOKENS", "TOP_P")
ENV_VALUES = ("0", "0.1", "256")
ACTIONS = {
    "ScaleToZero": st.just({"type": "ScaleToZero"}),
    "TrafficShift": st.just(
        {
            "type": "TrafficShift",
            "router": {"kind": "Service", "name": "chat"},
            "fallback": {"service": "chat-fallback"},
        }
    ),
    "ConservativeConfig": st.fixed_dictionaries(
        {
            "type": st.just("ConservativeConfig"),
            # A container the workload lacks fails the same way in both.
            "container": st.sampled_from(["llm", "llm", "missing"]),
            "env": st.dictionaries(
                st.sampled_from(ENV_NAMES), st.sampled_from(ENV_VALUES), min_size=1
            ),
        }
    ),
    "GuardrailSidecar": st.fixed_dictionaries(
        {
            "type": st.just("GuardrailSidecar"),
            # "llm" is the model's own container: refused, in both.
            "container": st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["guardrail", "guardrail", "llm"]),
                    "image": st.sampled_from(["guardrail:v1", "guardrail:v2"]),
                }
            ),
        }
    ),
}


@st.composite
def response(draw: st.DrawFn, severity: int) -> Body:
    types = draw(st.lists(st.sampled_from(sorted(ACTIONS)), unique=True, min_size=1, max_size=4))
    return {"severity": severity, "actions": [draw(ACTIONS[t]) for t in types]}


@st.composite
def policies(draw: st.DrawFn) -> Body:
    severities = draw(st.lists(st.integers(1, 3), unique=True, min_size=1, max_size=3))
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "MitigationPolicy",
        "metadata": {"name": "chat", "namespace": NS, "generation": 1},
        "spec": {
            "targetSelector": {"matchLabels": LABELS},
            "triage": {"defaultSeverity": draw(st.integers(1, 3))},
            "safety": {"dryRun": True},
            "responses": [draw(response(s)) for s in severities],
        },
    }


@st.composite
def incidents(draw: st.DrawFn) -> Body:
    spec: Body = {
        "category": draw(st.sampled_from(["HarmfulOutput", "ModelFailure", "CostAnomaly"])),
        "target": {"name": draw(st.sampled_from(["chat", "chat", "ghost"]))},
    }
    severity = draw(st.one_of(st.none(), st.integers(1, 3)))
    if severity is not None:
        spec["severity"] = severity
    return {
        "apiVersion": "aiincident.io/v1alpha1",
        "kind": "AIIncident",
        "metadata": {"name": "harm", "namespace": NS},
        "spec": spec,
    }


@settings(max_examples=50, deadline=None)
@given(policy=policies(), incident=incidents())
def test_simulate_reports_the_steps_the_engine_records(policy: Body, incident: Body):
    simulated = validation.simulate(
        copy.deepcopy(policy), copy.deepcopy(incident), api=cluster(), now=NOW
    )
    steps = [(s["action"], s["target"], s["state"], s["message"], s["objects"])
             for s in simulated["steps"]]  # fmt: skip

    fake = cluster()
    fake.add(copy.deepcopy(incident))
    world = engine.World(
        policies=[ready(policy)],
        verify=lambda *args: (True, "no checks"),
        write_review=lambda ctx: None,
    )
    engine.reconcile(NS, "harm", world, api=fake, now=NOW)
    status = fake.obj("AIIncident", NS, "harm")["status"]
    entries = [(e["action"], e["target"], e["state"], e["message"], e.get("objects", []))
               for e in status.get("mitigations") or []]  # fmt: skip

    assert steps == entries
    assert all(state in ("DryRun", "Failed") for _, _, state, _, _ in steps)
    if "severity" in simulated:
        assert simulated["severity"] == status["severity"]
    # safety.dryRun: nothing but the incident's own status was written.
    assert fake.writes == [("status", "AIIncident/harm")]
