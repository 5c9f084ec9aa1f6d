"""Verification checks and evidence queries against a real Prometheus and real series.

The exporter (tests/e2e/exporter.py) serves a model's metrics; Prometheus (tests/promkit.py)
scrapes it every second. Verification must see a whole healthy window before it says
healthy, fail on one bad sample, and say why in words; evidence summarises the queries
around detection and a drift or upstream-error series becomes the top hypothesis.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from ai_incident_operator import kube
from ai_incident_operator.investigation import evidence, hypotheses
from ai_incident_operator.kube import Ref
from ai_incident_operator.resolution.verify import verify

from e2e.exporter import ModelMetricsExporter
from kit import create_incident, deployment, wait_for
from promkit import Prometheus

pytestmark = pytest.mark.e2e
WINDOW = timedelta(seconds=4)


def now() -> datetime:
    return datetime.now(UTC)


def quality_check(namespace: str) -> dict:
    return {
        "name": "quality",
        "query": f'min(ai_model_quality_score{{namespace="{namespace}",deployment="chat-llm"}})',
        "min": 0.9,
    }


def test_verification_waits_for_a_whole_healthy_window(
    exporter: ModelMetricsExporter, metrics_prometheus: Prometheus
):
    url = metrics_prometheus.url
    check = quality_check("prod")
    exporter.add_model("prod", "chat-llm")
    ok, message = verify([check], url, WINDOW, now())
    assert not ok  # the series is younger than the window, or not scraped yet
    assert "no data" in message or "data covers only the last" in message

    wait_for(lambda: verify([check], url, WINDOW, now())[0], 20, "a healthy 4s window")
    ok, message = verify([check], url, WINDOW, now())
    assert message.startswith("healthy for 4s: quality: ")
    assert "within >= 0.9 (lowest 0.95, highest 0.95)" in message

    exporter.degrade_quality("prod", "chat-llm", 0.5)
    ok, message = wait_for(
        lambda: (r := verify([check], url, WINDOW, now())) and not r[0] and r, 10, "a bad sample"
    )
    assert message.startswith("not healthy: quality: ")
    assert "outside >= 0.9; worst 0.5" in message

    exporter.heal("prod", "chat-llm")
    wait_for(
        lambda: metrics_prometheus.query(check["query"])[0]["value"][1] == "0.95", 10, "healed"
    )
    ok, message = verify([check], url, WINDOW, now())
    assert not ok, "the bad samples are still inside the window"
    wait_for(lambda: verify([check], url, WINDOW, now())[0], 20, "healthy again for 4s")


def test_no_data_a_bad_query_and_every_check(
    exporter: ModelMetricsExporter, metrics_prometheus: Prometheus
):
    url = metrics_prometheus.url
    exporter.add_model("prod", "chat-llm")
    wait_for(lambda: verify([quality_check("prod")], url, WINDOW, now())[0], 20, "healthy")

    ok, message = verify(
        [{"name": "missing", "query": "ai_model_not_exported", "min": 1}], url, WINDOW, now()
    )
    assert not ok
    assert message == (
        "not healthy: missing: no data for `ai_model_not_exported` in the last 4s; no data "
        "counts as not healthy: check that the metric exists and Prometheus scrapes it"
    )

    ok, message = verify(
        [{"name": "typo", "query": "min(ai_model_quality_score", "min": 1}], url, WINDOW, now()
    )
    assert not ok
    assert (
        f"typo: cannot verify: Prometheus at {url} rejected 'min(ai_model_quality_score': bad_data: "
        in message
    )

    latency = {
        "name": "p99",
        "query": 'histogram_quantile(0.99, sum by (le) (rate(ai_model_request_duration_seconds_bucket{namespace="prod"}[5s])))',
        "max": 1.0,
    }
    checks = [quality_check("prod"), latency]
    wait_for(lambda: verify(checks, url, WINDOW, now())[0], 20, "both healthy for the window")
    exporter.degrade_latency("prod", "chat-llm", 8.0)
    ok, message = wait_for(
        lambda: (r := verify(checks, url, WINDOW, now())) and "outside" in r[1] and r,
        15,
        "latency above its max",
    )
    assert not ok
    assert message.startswith("not healthy: p99: ") and "outside <= 1" in message
    assert message.endswith("(passing: quality)")


def _model_with_history(ns: str, exporter: ModelMetricsExporter, prom: Prometheus) -> dict:
    """A model Deployment, and a few seconds of healthy series for it in Prometheus."""
    kube.create("Deployment", ns, deployment("chat-llm", {"app": "chat"}, replicas=0))
    exporter.add_model(ns, "chat-llm")
    wait_for(
        lambda: (
            (r := prom.query(f'count_over_time(ai_model_drift_score{{namespace="{ns}"}}[1m])'))
            and float(r[0]["value"][1]) >= 4
        ),
        20,
        "4s of healthy series",
    )
    create_incident(
        ns, "quality-drop", {"category": "AccuracyDegradation", "target": {"name": "chat-llm"}}
    )
    return kube.get(Ref("AIIncident", ns, "quality-drop"))


def _policy(ns: str, prom: Prometheus) -> dict:
    errors = (
        f'sum(rate(ai_model_requests_total{{namespace="{ns}",code="500"}}[5s])) / '
        f'sum(rate(ai_model_requests_total{{namespace="{ns}"}}[5s]))'
    )
    return {
        "evidence": {
            "prometheusURL": prom.url,
            "lookback": "5m",
            "queries": [
                {"name": "quality", "kind": "Quality", "query": f'min(ai_model_quality_score{{namespace="{ns}"}})'},
                {"name": "input drift", "kind": "Drift", "threshold": 0.3,
                 "query": f'max(ai_model_drift_score{{namespace="{ns}"}})'},
                {"name": "retrieval errors", "kind": "UpstreamErrors", "threshold": 0.1, "query": errors},
            ],
        }
    }  # fmt: skip


def _investigate(ns: str, incident: dict, policy: dict, detected: datetime) -> tuple[dict, list]:
    target = kube.get(Ref("Deployment", ns, "chat-llm"))
    data, facts = evidence.collect(incident, [target], policy, now(), detected_at=detected)
    return data, hypotheses.rank(facts, now())


def test_drift_in_prometheus_is_the_top_hypothesis(
    solo_namespace: str, exporter: ModelMetricsExporter, metrics_prometheus: Prometheus
):
    ns, prom = solo_namespace, metrics_prometheus
    incident = _model_with_history(ns, exporter, prom)
    detected = now()
    exporter.degrade_drift(ns, "chat-llm", 0.6)
    wait_for(
        lambda: (
            prom.query(f'max(ai_model_drift_score{{namespace="{ns}"}})')[0]["value"][1] == "0.6"
        ),
        10,
        "drift scraped",
    )
    time.sleep(1.5)  # a range query step or two past the change
    data, ranked = _investigate(ns, incident, _policy(ns, prom), detected)

    assert ranked[0]["cause"] == "InputDrift"
    line = ranked[0]["evidence"][0]
    assert line.startswith(
        f'drift query input drift (max(ai_model_drift_score{{namespace="{ns}"}})) reached 0.6 at '
    )
    assert "above its threshold 0.3; 0.05 on average before detection" in line
    assert "UpstreamDependency" not in [h["cause"] for h in ranked]
    metrics = data["metrics.md"]
    assert "## input drift (Drift, threshold 0.3)" in metrics
    assert "before detection: mean 0.05 (min 0.05, max 0.05" in metrics
    assert "; after: mean " in metrics and "max 0.6," in metrics
    assert "## quality (Quality)" in metrics and "min 0.95, max 0.95, last 0.95" in metrics


def test_upstream_errors_in_prometheus_are_the_top_hypothesis(
    solo_namespace: str, exporter: ModelMetricsExporter, metrics_prometheus: Prometheus
):
    ns, prom = solo_namespace, metrics_prometheus
    incident = _model_with_history(ns, exporter, prom)
    detected = now()
    exporter.degrade_errors(ns, "chat-llm", 0.5)
    policy = _policy(ns, prom)
    errors = policy["evidence"]["queries"][2]["query"]
    wait_for(
        lambda: (r := prom.query(errors)) and float(r[0]["value"][1]) > 0.4, 15, "errors scraped"
    )
    data, ranked = _investigate(ns, incident, policy, detected)

    assert ranked[0]["cause"] == "UpstreamDependency"
    assert ranked[0]["evidence"][0].startswith("upstream errors query retrieval errors (")
    assert "above its threshold 0.1" in ranked[0]["evidence"][0]
    assert "InputDrift" not in [h["cause"] for h in ranked]
    assert "## retrieval errors (UpstreamErrors, threshold 0.1)" in data["metrics.md"]
