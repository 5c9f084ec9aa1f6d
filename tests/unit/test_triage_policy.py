"""Triage and policy matching, as API.md's example policy reads them."""

import copy

import pytest

from ai_incident_operator.policy import covers, select, selector_matches, selector_string, validate
from ai_incident_operator.triage import triage

READY = {"conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 1}
CHAT = {
    "kind": "MitigationPolicy",
    "metadata": {"name": "chat", "namespace": "prod", "generation": 1},
    "spec": {
        "priority": 100,
        "targetSelector": {"matchLabels": {"app.kubernetes.io/part-of": "chat"}},
        "triage": {
            "defaultSeverity": 3,
            "rules": [
                {"when": {"categories": ["HarmfulOutput", "DataLeak"]}, "severity": 1},
                {"when": {"alertLabels": {"severity": "critical"}}, "severity": 1},
                {"when": {"affectedUsersAbove": 1000}, "severity": 2},
            ],
        },
        "responses": [
            {"severity": 1, "actions": [{"type": "ScaleToZero"}]},
            {
                "severity": 3,
                "actions": [
                    {"type": "IncreaseMonitoring", "rules": [{"alert": "A", "expr": "up"}]}
                ],
            },
        ],
    },
    "status": READY,
}
TARGET = {"metadata": {"name": "chat-llm", "labels": {"app.kubernetes.io/part-of": "chat"}}}


def policy(**changes):
    body = copy.deepcopy(CHAT)
    for key, value in changes.items():
        if key in ("kind",):
            body[key] = value
        elif key in ("name", "namespace"):
            body["metadata"][key] = value
        else:
            body["spec"][key] = value
    if body["kind"] == "ClusterMitigationPolicy":
        body["metadata"].pop("namespace", None)
    return body


@pytest.mark.parametrize(
    ("spec", "severity", "reason", "words"),
    [
        (
            {"category": "HarmfulOutput"},
            1,
            "PolicyRule",
            "category HarmfulOutput is severity 1 by rule 1 of MitigationPolicy prod/chat",
        ),
        (
            {
                "category": "Other",
                "alerts": [{"fingerprint": "f", "labels": {"severity": "critical", "x": "y"}}],
            },
            1,
            "PolicyRule",
            "rule 2",
        ),
        (
            {
                "category": "Other",
                "alerts": [
                    {"fingerprint": "f", "status": "resolved", "labels": {"severity": "critical"}}
                ],
            },
            3,
            "PolicyDefault",
            "defaultSeverity 3",
        ),
        (
            {"category": "AccuracyDegradation", "scope": {"affectedUsers": 1200}},
            2,
            "PolicyRule",
            "1200 affected users > 1000",
        ),
        (
            {"category": "AccuracyDegradation", "scope": {"affectedUsers": 1000}},
            3,
            "PolicyDefault",
            "no rule matched",
        ),
        ({"category": "HarmfulOutput", "severity": 3}, 3, "SetInSpec", "spec.severity"),
    ],
)
def test_triage_with_policy(spec, severity, reason, words):
    got = triage(spec, CHAT)
    assert got[:2] == (severity, reason)
    assert words in got[2]


def test_triage_without_policy_follows_the_playbook():
    assert triage({"category": "DataLeak"}, None)[:2] == (1, "BuiltIn")
    assert triage({"category": "AccuracyDegradation"}, None)[0] == 2
    assert triage({"category": "CostAnomaly"}, None)[0] == 3


def test_rule_needs_every_condition():
    rule_policy = policy(
        triage={"rules": [{"when": {"categories": ["Other"], "worsening": True}, "severity": 1}]}
    )
    assert triage({"category": "Other", "scope": {"worsening": False}}, rule_policy)[0] == 3
    assert triage({"category": "Other", "scope": {"worsening": True}}, rule_policy)[0] == 1


def test_selector_semantics_and_query_string():
    sel = {"matchLabels": {"a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["gold", "silver"]},
        {"key": "canary", "operator": "DoesNotExist"}]}  # fmt: skip
    assert selector_matches(sel, {"a": "1", "tier": "gold"})
    assert not selector_matches(sel, {"a": "1", "tier": "bronze"})
    assert not selector_matches(sel, {"a": "1", "tier": "gold", "canary": "y"})
    assert selector_matches(None, {"x": "y"})
    assert selector_string(sel) == "a=1,tier in (gold,silver),!canary"


def test_namespaced_policy_covers_only_its_namespace_and_selected_targets():
    assert covers(CHAT, "prod", {}, [TARGET])
    assert not covers(CHAT, "staging", {}, [TARGET])
    assert not covers(CHAT, "prod", {}, [{"metadata": {"name": "x", "labels": {}}}])
    assert not covers(CHAT, "prod", {}, [TARGET, {"metadata": {"name": "x"}}])  # every target


def test_highest_priority_wins_and_namespaced_beats_cluster_on_a_tie():
    cluster = policy(
        kind="ClusterMitigationPolicy",
        name="global",
        namespaceSelector={"matchLabels": {"env": "prod"}},
    )
    low = policy(name="low", priority=10)
    assert select([cluster, low], "prod", {"env": "prod"}, [TARGET])["metadata"]["name"] == "global"
    tie = policy(name="tie", priority=100)
    assert select([cluster, tie], "prod", {"env": "prod"}, [TARGET])["metadata"]["name"] == "tie"
    assert select([cluster], "prod", {"env": "dev"}, [TARGET]) is None


def test_only_ready_policies_for_their_generation_are_used():
    stale = policy()
    stale["metadata"]["generation"] = 2
    invalid = policy()
    invalid["status"] = {
        "conditions": [{"type": "Ready", "status": "False"}],
        "observedGeneration": 1,
    }
    assert select([stale, invalid], "prod", {}, [TARGET]) is None


def test_validate_names_semantic_problems():
    spec = {
        "responses": [
            {"severity": 1, "actions": [{"type": "ScaleToZero"}]},
            {"severity": 1, "actions": []},
        ],
        "safety": {"cooldown": "ten minutes"},
    }
    problems = validate(spec)
    assert any("second response for severity 1" in p for p in problems)
    assert any("safety.cooldown" in p and "not a duration" in p for p in problems)
    assert validate(CHAT["spec"]) == []
