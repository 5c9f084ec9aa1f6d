"""Fixtures for the end-to-end suite: the real monitoring pipeline in front of the operator.

    exporter ─scrape 1s─► prometheus (repo rules, `for: 2s`) ─► alertmanager (repo example
    config, group_wait 1s) ─POST /api/v1/alerts, bearer token─► webhook_operator ─► cluster

`exporter` serves model metrics, `prometheus` evaluates deploy/prometheus/ai-incident-rules.yaml,
`alertmanager` routes with deploy/alertmanager/alertmanager.yaml, `webhook_operator` is the
operator process with its webhook on a free port, watching the test's namespace. Every
process is real and on 127.0.0.1; each test gets its own. `metrics_prometheus` is a
Prometheus that only scrapes the exporter, for tests of PromQL against real series.
The `cluster` and `solo_namespace` fixtures come from tests/conftest.py.
"""

from __future__ import annotations

import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai_incident_operator import kube
from ai_incident_operator.resources import Ref

import promkit
from e2e.exporter import ModelMetricsExporter
from kit import OperatorProcess, free_port, wait_for

# Rules fire 2 s after a series degrades instead of minutes.
RULE_FOR = "2s"


@pytest.fixture(autouse=True)
def _monitoring_binaries() -> None:
    """Fail (not skip) without Prometheus and Alertmanager: `make deps` installs them."""
    for binary in ("prometheus", "prometheus-alertmanager"):
        try:
            promkit.require(binary)
        except promkit.ToolMissing as err:
            pytest.fail(str(err), pytrace=False)


@dataclass
class WebhookOperator:
    """The operator process and how Alertmanager reaches its webhook."""

    process: OperatorProcess
    namespace: str
    url: str  # http://127.0.0.1:PORT/api/v1/alerts
    token: str
    token_file: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.process.log_tail(chars)


@pytest.fixture
def webhook_token_file(tmp_path: Path) -> Path:
    path = tmp_path / "webhook-token"
    path.write_text(secrets.token_urlsafe(24) + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def webhook_operator(
    cluster: Path, solo_namespace: str, webhook_token_file: Path
) -> Iterator[WebhookOperator]:
    """`aiincident run` watching SOLO_NAMESPACE, webhook on 127.0.0.1 with a bearer token file.

    The operator's own namespace is another one: alerts never open incidents against the
    workloads of the operator's namespace.
    """
    port = free_port()
    home = f"{solo_namespace}-home"
    kube.create(
        "Namespace", "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": home}}
    )
    proc = OperatorProcess(
        f"e2e-{solo_namespace}",
        "--namespace",
        solo_namespace,
        "--namespace",
        home,
        "--webhook-listen",
        f"127.0.0.1:{port}",
        "--webhook-token-file",
        str(webhook_token_file),
        env={
            "AIINCIDENT_RESYNC_SECONDS": "2",
            # Alerts that map to no workload open incidents here.
            "AIINCIDENT_NAMESPACE": home,
        },
    )
    proc.start()
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 30, f"operator webhook {base}/readyz (log: {proc.log_path})")
        yield WebhookOperator(
            proc,
            solo_namespace,
            f"{base}/api/v1/alerts",
            webhook_token_file.read_text().strip(),
            webhook_token_file,
        )
    finally:
        proc.stop()
        kube.delete(Ref("Namespace", "", home))


@pytest.fixture
def exporter() -> Iterator[ModelMetricsExporter]:
    """A model-metrics exporter with no models yet: add_model(namespace, deployment)."""
    exp = ModelMetricsExporter().start()
    yield exp
    exp.stop()


@pytest.fixture
def alertmanager(
    webhook_operator: WebhookOperator, webhook_token_file: Path
) -> Iterator[promkit.Alertmanager]:
    """Alertmanager with the repo's example config, posting to the operator's webhook."""
    config = promkit.operator_alertmanager_config(webhook_operator.url, webhook_token_file)
    am = promkit.start_alertmanager(config, name=f"alertmanager-{webhook_operator.namespace}")
    yield am
    am.stop()


@pytest.fixture
def prometheus(
    exporter: ModelMetricsExporter, alertmanager: promkit.Alertmanager
) -> Iterator[promkit.Prometheus]:
    """Prometheus scraping EXPORTER with the repo's rules (`for` shortened), alerting ALERTMANAGER."""
    prom = promkit.start_prometheus(
        [exporter.target],
        rules=promkit.rules_with_for(promkit.RULES, RULE_FOR),
        alertmanager=alertmanager,
        name=f"prometheus-{alertmanager.name.removeprefix('alertmanager-')}",
    )
    yield prom
    prom.stop()


@pytest.fixture
def metrics_prometheus(exporter: ModelMetricsExporter) -> Iterator[promkit.Prometheus]:
    """Prometheus that only scrapes EXPORTER: no rules, no Alertmanager."""
    prom = promkit.start_prometheus_for(exporter.target)
    yield prom
    prom.stop()
