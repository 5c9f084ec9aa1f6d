"""The shipped monitoring config: Prometheus rules and the Alertmanager example.

Runs `promtool check rules`, the rule unit tests (`promtool test rules
deploy/prometheus/tests/*.yaml`) and `amtool check-config`, and checks what the
operator's intake relies on: every alert names an AIIncident category, a severity,
the namespace and deployment, a runbook that exists, and Alertmanager routes it to
the operator with bearer auth, resolved notifications and per-incident groups.
Without promtool or amtool the tests fail, saying to run `make deps`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kit import REPO

RULES = REPO / "deploy" / "prometheus" / "ai-incident-rules.yaml"
RULE_TESTS = sorted((REPO / "deploy" / "prometheus" / "tests").glob("*.yaml"))
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yaml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
INCIDENT_CRD = REPO / "crds" / "aiincident.io_aiincidents.yaml"
OPERATOR_URL = "http://ai-incident-operator.aiincident-system:8080/api/v1/alerts"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed (Debian packages prometheus, prometheus-alertmanager): "
            "run `make deps`",
            pytrace=False,
        )
    return path


def _run(*argv: str) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stdout}\n{result.stderr}"
    return result


def _alerting_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def _categories() -> list[str]:
    crd = yaml.safe_load(INCIDENT_CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema["properties"]["spec"]["properties"]["category"]["enum"]


def test_promtool_check_rules():
    out = _run(_tool("promtool"), "check", "rules", str(RULES)).stdout
    assert f"SUCCESS: {len(_alerting_rules())} rules found" in out


def test_promtool_rule_unit_tests():
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests"
    _run(_tool("promtool"), "test", "rules", *map(str, RULE_TESTS))


def test_every_alert_is_unit_tested_firing():
    """Each alert appears in some test's expected (non-empty) alerts."""
    fired: set[str] = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test") or []:
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    assert {r["alert"] for r in _alerting_rules()} <= fired


def test_alerts_carry_what_the_intake_maps():
    categories = _categories()
    runbooks = RUNBOOKS.read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", runbooks, re.M)}  # fmt: skip
    names = [r["alert"] for r in _alerting_rules()]
    assert len(names) == len(set(names))
    for rule in _alerting_rules():
        name, labels, notes = rule["alert"], rule["labels"], rule["annotations"]
        assert labels["ai_incident_category"] in categories, name
        assert labels["severity"] in ("critical", "warning", "info"), name
        # Aggregations must keep the labels that name the target.
        assert "by (namespace, deployment" in rule["expr"], name
        assert {"summary", "description", "runbook_url"} <= notes.keys(), name
        anchor = notes["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower() and anchor in anchors, f"{name}: no runbook section"


def test_the_playbooks_monitoring_signals_are_covered():
    """Quality, drift, errors, latency and cost each have a rule with its category."""
    by_metric = {
        "ai_model_quality_score": "AccuracyDegradation",
        "ai_model_drift_score": "AccuracyDegradation",
        "ai_model_requests_total": "ModelFailure",
        "ai_model_request_duration_seconds_bucket": "ModelFailure",
        "ai_model_cost_dollars_total": "CostAnomaly",
    }
    for metric, category in by_metric.items():
        rules = [r for r in _alerting_rules() if metric in r["expr"]]
        assert rules, f"no rule on {metric}"
        assert {r["labels"]["ai_incident_category"] for r in rules} == {category}, metric


def test_amtool_check_config():
    out = _run(_tool("amtool"), "check-config", str(ALERTMANAGER)).stdout
    assert "SUCCESS" in out


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["ai_incident_category=ModelFailure", "namespace=prod", "deployment=chat"],
         "ai-incident-operator"),
        (["alertname=NodeDown", "severity=critical"], "default"),
    ],
)  # fmt: skip
def test_alertmanager_routes_ai_alerts_to_the_operator(labels, receiver):
    _run(
        _tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER}",
        f"--verify.receivers={receiver}",
        *labels,
    )


def test_alertmanager_posts_to_the_operator_with_bearer_auth():
    config = yaml.safe_load(ALERTMANAGER.read_text())
    [receiver] = [r for r in config["receivers"] if r["name"] == "ai-incident-operator"]
    [hook] = receiver["webhook_configs"]
    assert hook["url"] == OPERATOR_URL
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth.get("type", "Bearer") == "Bearer"
    assert Path(auth["credentials_file"]).is_absolute()
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "ai-incident-operator"]
    # One notification group per incident key: namespace, target, category.
    assert {"namespace", "deployment", "ai_incident_category"} <= set(route["group_by"])
    assert "..." not in route["group_by"]
