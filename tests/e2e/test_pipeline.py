"""End to end: a degraded model becomes a mitigated incident, and recovery undoes it.

Real parts only (tests/e2e/conftest.py): the model-metrics exporter, Prometheus with
deploy/prometheus/ai-incident-rules.yaml (`for: 2s`), Alertmanager with
deploy/alertmanager/alertmanager.yaml (group_wait 1s), the operator process with its
bearer-token webhook, and the local control plane.
"""

from __future__ import annotations

import json
import time

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from e2e.exporter import ModelMetricsExporter
from kit import deployment, policy_body, service, spec_snapshot, virtual_service, wait_for
from promkit import Alertmanager, Prometheus

pytestmark = pytest.mark.e2e
LABELS = {"app.kubernetes.io/part-of": "chat"}
CONSERVATIVE_ENV = {"TEMPERATURE": "0", "MAX_TOKENS": "256"}


def _policy(namespace: str, prometheus: Prometheus, deployment_name: str) -> dict:
    """Severity from Alertmanager's `severity` label; sev 1 stops the model, sev 2 calms it."""
    quality = (
        f'min(ai_model_quality_score{{namespace="{namespace}",deployment="{deployment_name}"}})'
    )
    return {
        "targetSelector": {"matchLabels": LABELS},
        "triage": {
            "defaultSeverity": 3,
            "rules": [
                {"when": {"alertLabels": {"severity": "critical"}}, "severity": 1},
                {"when": {"alertLabels": {"severity": "warning"}}, "severity": 2},
            ],
        },
        "responses": [
            {"severity": 1, "actions": [{"type": "ScaleToZero"}]},
            {
                "severity": 2,
                "actions": [
                    {"type": "ConservativeConfig", "container": "llm", "env": CONSERVATIVE_ENV},
                    {"type": "TrafficShift", "router": {"kind": "VirtualService", "name": "chat"},
                     "fallback": {"service": "chat-fallback"}, "weight": 100},
                ],
            },
        ],
        "resolution": {
            "autoResolveWhenAlertsResolve": True,
            # Undo only once the real series say so.
            "verification": {
                "prometheusURL": prometheus.url,
                "window": "3s",
                "checks": [{"name": "quality", "query": quality, "min": 0.9}],
            },
            # Traffic comes back to the model in two steps once it is verified.
            "undo": {"trafficSteps": [50], "stepInterval": "1s"},
        },
    }  # fmt: skip


def _routing(namespace: str, model: str) -> None:
    """The model's Service, a fallback, and the VirtualService that routes to them."""
    kube.create("Service", namespace, service("chat", model))
    kube.create("Service", namespace, service("chat-fallback", "chat-fallback"))
    kube.create("VirtualService", namespace, virtual_service("chat", "chat"))


class Pipeline:
    """The parts of one test, and what to print when a wait times out."""

    def __init__(self, operator, exporter, prometheus, alertmanager) -> None:
        self.operator = operator
        self.exporter: ModelMetricsExporter = exporter
        self.prometheus: Prometheus = prometheus
        self.alertmanager: Alertmanager = alertmanager
        self.namespace: str = operator.namespace

    def incidents(self) -> list[dict]:
        return kube.list_objects("AIIncident", self.namespace)

    def incident(self, target: str, category: str) -> dict | None:
        found = [
            i
            for i in self.incidents()
            if (i["spec"].get("target") or {}).get("name") == target
            and i["spec"].get("category") == category
        ]
        assert len(found) <= 1, f"more than one {category} incident for {target}: {found}"
        return found[0] if found else None

    def wait(self, check, timeout: float, what: str):
        try:
            return wait_for(check, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{err}\n{self.state()}") from None

    def state(self) -> str:
        """Where the pipeline stands: Prometheus's and Alertmanager's alerts, incidents, log."""
        parts = []
        try:
            prom = [(a["labels"]["alertname"], a["state"]) for a in self.prometheus.alerts()]
            parts.append(f"prometheus alerts: {prom}")
        except Exception as err:
            parts.append(f"prometheus: {err}")
        try:
            am = [
                (a["labels"]["alertname"], a["status"]["state"]) for a in self.alertmanager.alerts()
            ]
            parts.append(f"alertmanager alerts: {am}")
        except Exception as err:
            parts.append(f"alertmanager: {err}")
        try:
            for inc in self.incidents():
                summary = {"spec": inc["spec"], "status": inc.get("status")}
                parts.append(f"incident {inc['metadata']['name']}: {json.dumps(summary)[:3000]}")
        except Exception as err:
            parts.append(f"incidents: {err}")
        parts.append(f"alertmanager log:\n{self.alertmanager.log_tail(1500)}")
        parts.append(f"operator log:\n{self.operator.log_tail(3000)}")
        return "\n".join(parts)


def _mitigation(incident: dict | None, action: str) -> dict:
    entries = ((incident or {}).get("status") or {}).get("mitigations") or []
    return next((e for e in entries if e["action"] == action), {})


def _env(namespace: str, name: str) -> dict[str, str]:
    dep = kube.get(Ref("Deployment", namespace, name))
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_quality_drop_is_mitigated_and_undone_when_the_alert_resolves(
    webhook_operator, exporter, alertmanager, prometheus
):
    p = Pipeline(webhook_operator, exporter, prometheus, alertmanager)
    ns = p.namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=3))
    _routing(ns, "chat-llm")
    kube.create("MitigationPolicy", ns, policy_body("chat", _policy(ns, prometheus, "chat-llm")))
    before = spec_snapshot(kube.get(Ref("Deployment", ns, "chat-llm")))
    routes_before = kube.get(Ref("VirtualService", ns, "chat"))["spec"]
    exporter.add_model(ns, "chat-llm")
    selector = f'ai_model_quality_score{{namespace="{ns}",deployment="chat-llm"}}'
    p.wait(lambda: prometheus.query(selector), 10, "healthy quality series in Prometheus")

    started = time.monotonic()
    exporter.degrade_quality(ns, "chat-llm", score=0.7)  # below 0.8: warning, not critical

    incident = p.wait(lambda: p.incident("chat-llm", "AccuracyDegradation"), 40, "an incident")
    opened = time.monotonic() - started
    spec = incident["spec"]
    assert spec["source"]["type"] == "Alertmanager"
    assert spec["target"]["name"] == "chat-llm"
    [alert] = [a for a in spec["alerts"] if a["alertname"] == "AIModelQualityDegraded"]
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "warning"
    assert alert["labels"]["ai_incident_category"] == "AccuracyDegradation"
    assert (alert["labels"]["namespace"], alert["labels"]["deployment"]) == (ns, "chat-llm")
    assert alert["annotations"]["runbook_url"].endswith("#aimodelqualitydegraded")
    assert "0.70" in alert["annotations"]["description"]

    name = incident["metadata"]["name"]

    def conservative_applied() -> dict | None:
        inc = p.incident("chat-llm", "AccuracyDegradation")
        return inc if _mitigation(inc, "ConservativeConfig").get("state") == "Applied" else None

    incident = p.wait(conservative_applied, 30, "ConservativeConfig applied")
    mitigated = time.monotonic() - started
    assert incident["status"]["severity"] == 2  # from the alert's severity=warning
    assert _env(ns, "chat-llm").items() >= CONSERVATIVE_ENV.items()

    healed_at = time.monotonic()
    exporter.heal(ns, "chat-llm", "quality")

    def alerts_resolved() -> list | None:
        alerts = p.incident("chat-llm", "AccuracyDegradation")["spec"].get("alerts") or []
        return alerts if alerts and all(a["status"] == "resolved" for a in alerts) else None

    alerts = p.wait(alerts_resolved, 40, "spec.alerts resolved")
    alerts_resolved_after = time.monotonic() - healed_at
    assert all(a.get("endsAt") for a in alerts)

    # autoResolveWhenAlertsResolve: verified in Prometheus, undone, resolved.
    def resolved() -> dict | None:
        inc = p.incident("chat-llm", "AccuracyDegradation")
        return inc if (inc.get("status") or {}).get("phase") == "Resolved" else None

    incident = p.wait(resolved, 40, "the incident Resolved")
    resolved_after = time.monotonic() - healed_at
    assert incident["metadata"]["name"] == name
    assert _mitigation(incident, "ConservativeConfig")["state"] == "Reverted"
    assert spec_snapshot(kube.get(Ref("Deployment", ns, "chat-llm"))) == before
    # Verified in Prometheus, then traffic given back in a step, then the review document.
    status = incident["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Verified")["status"] == "True"
    assert "UndoStep" in [t["type"] for t in status["timeline"]]
    assert kube.get(Ref("VirtualService", ns, "chat"))["spec"] == routes_before
    review = kube.get(Ref("ConfigMap", ns, status["reviewRef"]["name"]))["data"]["review.md"]
    assert "Post-incident review" in review and "AIModelQualityDegraded" in review
    # Repeats and the resolved notification folded into the one incident.
    assert [i["metadata"]["name"] for i in p.incidents()] == [name]
    print(
        f"degrade->incident {opened:.1f}s, degrade->mitigated {mitigated:.1f}s, "
        f"heal->alerts resolved {alerts_resolved_after:.1f}s, heal->Resolved {resolved_after:.1f}s"
    )


def test_error_spike_pages_as_a_critical_model_failure(
    webhook_operator, exporter, alertmanager, prometheus
):
    p = Pipeline(webhook_operator, exporter, prometheus, alertmanager)
    ns = p.namespace
    kube.create("Deployment", ns, deployment("vision", LABELS, replicas=2))
    _routing(ns, "vision")
    kube.create("MitigationPolicy", ns, policy_body("vision", _policy(ns, prometheus, "vision")))
    started = time.monotonic()
    # Half the requests fail from the first scrape on: both error-rate rules fire together.
    exporter.add_model(ns, "vision", error_ratio=0.5)

    def stopped() -> dict | None:
        inc = p.incident("vision", "ModelFailure")
        return inc if _mitigation(inc, "ScaleToZero").get("state") == "Applied" else None

    incident = p.wait(stopped, 40, "a ModelFailure incident with ScaleToZero applied")
    mitigated = time.monotonic() - started
    assert incident["spec"]["source"]["type"] == "Alertmanager"
    assert incident["status"]["severity"] == 1  # from the alert's severity=critical
    assert kube.get(Ref("Deployment", ns, "vision"))["spec"]["replicas"] == 0
    names = {a["alertname"] for a in incident["spec"]["alerts"]}
    # The example config's inhibition: the critical alert mutes the warning of the same model.
    assert names == {"AIModelErrorRateCritical"}, incident["spec"]["alerts"]
    firing = {a["labels"]["alertname"] for a in prometheus.alerts("firing")}
    assert {"AIModelErrorRateCritical", "AIModelErrorRateHigh"} <= firing
    assert [i["spec"]["category"] for i in p.incidents()] == ["ModelFailure"]
    print(f"error spike->ScaleToZero applied {mitigated:.1f}s")


def test_metrics_prometheus_reads_the_exporters_series(exporter, metrics_prometheus):
    """The bare Prometheus that investigation tests reuse sees the exporter's changes."""
    exporter.add_model("prod", "chat-llm")
    exporter.degrade_latency("prod", "chat-llm", seconds=8.0)
    p95 = (
        "histogram_quantile(0.95, sum by (namespace, deployment, le)"
        ' (rate(ai_model_request_duration_seconds_bucket{deployment="chat-llm"}[1m])))'
    )

    def slow() -> list:
        result = metrics_prometheus.query(p95)
        return result if result and float(result[0]["value"][1]) > 5 else []

    [series] = wait_for(slow, 15, "p95 latency above 5 s")
    assert series["metric"] == {"namespace": "prod", "deployment": "chat-llm"}
    assert metrics_prometheus.alerts() == []  # no rules loaded
