"""The model-serving rule examples (deploy/prometheus/model-serving-rules.yaml): one per
workload kind label the intake knows, valid for promtool, each tested firing, and each
fired alert (as its promtool test expects it) opens an incident on a workload of that
kind through the intake's own mapping."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from ai_incident_operator.intake import mapping

from alertkit import am_alert, am_payload
from kit import REPO

RULES = REPO / "deploy" / "prometheus" / "model-serving-rules.yaml"
RULE_TEST = REPO / "deploy" / "prometheus" / "tests" / "model-serving.test.yaml"
SERVING_LABELS = ("inferenceservice", "llminferenceservice", "leaderworkerset", "rollout",
                  "statefulset")  # fmt: skip


def _alerts() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _fired() -> list[tuple[str, dict]]:
    found = []
    for test in yaml.safe_load(RULE_TEST.read_text())["tests"]:
        for case in test.get("alert_rule_test") or []:
            found += [(case["alertname"], e["exp_labels"]) for e in case.get("exp_alerts") or []]
    return found


def _promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed (Debian package prometheus): run `make deps`",
                    pytrace=False)  # fmt: skip
    done = subprocess.run([tool, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


def test_promtool_checks_the_serving_rules_and_their_tests():
    assert f"SUCCESS: {len(_alerts())} rules found" in _promtool("check", "rules", str(RULES))
    _promtool("test", "rules", str(RULE_TEST))


def test_every_serving_label_has_an_example_and_each_keeps_its_label():
    by_label = {}
    for rule in _alerts():
        (label,) = [x for x in SERVING_LABELS if f"by (namespace, {x}" in rule["expr"]]
        by_label.setdefault(label, []).append(rule["alert"])
        assert rule["labels"]["ai_incident_category"] in mapping.CATEGORIES, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys()
    assert set(by_label) == set(SERVING_LABELS)
    assert {name for name, _ in _fired()} == {r["alert"] for r in _alerts()}


@pytest.mark.parametrize("fired", _fired(), ids=lambda f: f[0] if isinstance(f, tuple) else "")
def test_each_fired_alert_opens_an_incident_on_its_workload_kind(fired):
    name, labels = fired
    payload = mapping.parse(am_payload(am_alert(alertname=name, **labels)))
    (alert,) = payload.alerts
    _, target, unmapped = mapping.locate(alert, "aiincident-system")
    label = next(x for x in SERVING_LABELS if x in labels)
    assert unmapped is None
    assert target == {"kind": mapping.KIND_LABELS[label], "name": labels[label]}
