"""The monitoring half of `make demo`: a degraded model, the alert, the incident, recovery.

Starts a model-metrics exporter, real Prometheus (the repo's AI-incident rules, `for`
shortened to 2s) and real Alertmanager (the repo's example config, pointed at the
running operator's webhook), degrades the model's quality score, shows what the
operator did, heals it, and shows the recovery. Reuses the e2e suite's harness
(tests/promkit.py, tests/e2e/exporter.py) so the demo runs what the tests check.

Usage: demo_pipeline.py NAMESPACE WEBHOOK_URL TOKEN_FILE
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import promkit  # noqa: E402
from e2e.exporter import ModelMetricsExporter  # noqa: E402


def kubectl(*args: str) -> str:
    return subprocess.run(["kubectl", *args], capture_output=True, text=True).stdout


def alert_incident(namespace: str) -> str:
    out = kubectl("get", "aii", "-n", namespace, "-o",
                  "jsonpath={range .items[?(@.spec.source.type==\"Alertmanager\")]}{.metadata.name}{\"\\n\"}{end}")  # fmt: skip
    return out.split()[0] if out.split() else ""


def wait(what: str, check, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise SystemExit(f"demo: timed out waiting for {what}")


def show(namespace: str, name: str) -> None:
    print(kubectl("get", "aii", "-n", namespace))
    print(kubectl("get", "aii", "-n", namespace, name, "-o",
                  "jsonpath={range .status.timeline[*]}  {.time}  {.type}: {.message}{\"\\n\"}{end}"))  # fmt: skip


def main(namespace: str, webhook_url: str, token_file: str) -> int:
    exporter = ModelMetricsExporter([(namespace, "chat-llm")]).start()
    am = promkit.start_alertmanager(
        promkit.operator_alertmanager_config(webhook_url, Path(token_file).resolve()),
        name="demo-alertmanager",
    )
    prom = promkit.start_prometheus(
        [exporter.target], rules=promkit.rules_with_for(promkit.RULES, "2s"),
        alertmanager=am, name="demo-prometheus",
    )  # fmt: skip
    try:
        print(
            f">> Prometheus {prom.url} scrapes the model's metrics; Alertmanager {am.url} posts to the operator"
        )
        print(">> the model's quality score drops to 0.5 (AIModelQualityCritical fires)")
        exporter.degrade_quality(namespace, "chat-llm", 0.5)
        name = wait("the alert's incident", lambda: alert_incident(namespace))
        wait("its mitigation", lambda: kubectl("get", "aii", "-n", namespace, name, "-o",
                                               "jsonpath={.status.phase}") == "Mitigated")  # fmt: skip
        show(namespace, name)
        env = kubectl("get", "deploy", "-n", namespace, "chat-llm", "-o",
                      "jsonpath={.spec.template.spec.containers[0].env}")  # fmt: skip
        print(f">> the model now runs with the conservative configuration: env {env}\n")

        print(">> the model recovers; the alert resolves, the incident resolves itself")
        exporter.heal(namespace, "chat-llm")
        wait("resolution", lambda: kubectl("get", "aii", "-n", namespace, name, "-o",
                                           "jsonpath={.status.phase}") in ("Resolved", "Closed"))  # fmt: skip
        show(namespace, name)
        env = kubectl("get", "deploy", "-n", namespace, "chat-llm", "-o",
                      "jsonpath={.spec.template.spec.containers[0].env}")  # fmt: skip
        print(f">> configuration as it was before: env {env}")
        print(f">> the post-incident review: .venv/bin/aiincident review {name} -n {namespace}")
    finally:
        prom.stop()
        am.stop()
        exporter.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
