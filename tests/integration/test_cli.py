"""The `aiincident` commands for people, run as a user runs them, against the test cluster.

The console script from the venv, with the cluster fixture's KUBECONFIG; the session's
operator triages and mitigates what the commands file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import create_incident, deployment, get_incident, policy_body, wait_for

pytestmark = pytest.mark.integration
AIINCIDENT = Path(sys.executable).parent / "aiincident"
LABELS = {"app.kubernetes.io/part-of": "chat"}


def aiincident(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIINCIDENT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def setup_model(ns: str, require_approval: bool = False) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS))
    spec = {
        "priority": 100,
        "targetSelector": {"matchLabels": LABELS},
        "triage": {
            "defaultSeverity": 3,
            "rules": [{"when": {"categories": ["HarmfulOutput"]}, "severity": 1}],
        },
        "responses": [
            {
                "severity": 1,
                "requireApproval": require_approval,
                "actions": [{"type": "ScaleToZero"}],
            }
        ],
    }
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))

    def ready() -> bool:
        body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
        conditions = body.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_for(ready, 30, "policy Ready")


def phase_is(ns: str, name: str, phase: str) -> dict:
    return wait_for(
        lambda: (i := get_incident(ns, name)).get("status", {}).get("phase") == phase and i,
        30,
        f"{name} {phase}",
    )


def report(ns: str, *extra: str) -> subprocess.CompletedProcess:
    return aiincident(
        "report", "--namespace", ns, "--target", "chat-llm", "--category", "HarmfulOutput",
        "--reporter", "ticket SUP-1234",
        "--description", "The chat model gives unsafe medical advice.\nSeen by three users.",
        *extra,
    )  # fmt: skip


def test_report_list_describe_resolve(namespace, operator):
    setup_model(namespace)
    done = report(namespace)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip()
    assert re.fullmatch(r"chat-llm-harmfuloutput-[a-z0-9]{5}", name), done.stdout
    spec = get_incident(namespace, name)["spec"]
    assert spec["source"] == {"type": "UserReport", "reporter": "ticket SUP-1234"}
    assert spec["target"] == {"kind": "Deployment", "name": "chat-llm"}
    assert spec["title"] == "The chat model gives unsafe medical advice."
    assert "severity" not in spec  # triage decides
    phase_is(namespace, name, "Mitigated")

    listing = aiincident("list", "-n", namespace)
    assert listing.returncode == 0, listing.stderr
    header, row = listing.stdout.splitlines()
    assert header.split() == [
        "NAME", "SEVERITY", "PHASE", "CATEGORY", "TARGET", "AGE", "MITIGATIONS",
    ]  # fmt: skip
    cells = row.split()
    assert cells[:5] == [name, "1", "Mitigated", "HarmfulOutput", "chat-llm"]
    assert re.fullmatch(r"\d+s", cells[5]) and cells[6] == "ScaleToZero"

    described = aiincident("describe", name, "-n", namespace)
    assert described.returncode == 0, described.stderr
    text = described.stdout
    assert re.search(r"^Severity: +1: category HarmfulOutput is severity 1 by rule 1", text, re.M)
    assert re.search(rf"^Policy: +MitigationPolicy {namespace}/chat$", text, re.M)
    assert re.search(r"^Source: +UserReport: ticket SUP-1234$", text, re.M)
    assert re.search(r"^  Triaged +True +PolicyRule +\S+ +category HarmfulOutput", text, re.M)
    assert re.search(r"^  Mitigated +True +ActionsApplied ", text, re.M)
    assert "  ScaleToZero on Deployment/chat-llm: Applied" in text
    assert re.search(r"^    objects: \S*chat-llm", text, re.M)
    assert re.search(r"^Timeline:$", text, re.M)
    for step in ("Detected", "Triaged", "MitigationApplied", "Mitigated"):
        assert re.search(rf"^  \S+ +{step} ", text, re.M), step
    assert "Seen by three users." in text

    resolved = aiincident(
        "resolve", name, "-n", namespace, "--root-cause", "prompt template v42", "--fix", "v43"
    )
    assert resolved.returncode == 0, resolved.stderr
    incident = phase_is(namespace, name, "Resolved")
    assert incident["spec"]["resolution"] == {
        "requested": True,
        "rootCause": "prompt template v42",
        "fix": "v43",
        "by": kube.current_user(),  # the kubeconfig's user, as kubectl names it
    }
    assert kube.get(Ref("Deployment", namespace, "chat-llm"))["spec"]["replicas"] == 3
    text = aiincident("describe", name, "-n", namespace).stdout
    assert "ScaleToZero on Deployment/chat-llm: Reverted" in text
    assert "  root cause: prompt template v42" in text

    completed = aiincident("review", name, "-n", namespace, "--complete")
    assert completed.returncode == 0, completed.stderr
    assert get_incident(namespace, name)["spec"]["review"] == {"completed": True}
    phase_is(namespace, name, "Closed")


def test_approve_lets_a_response_that_needs_approval_go_ahead(namespace, operator):
    setup_model(namespace, require_approval=True)
    name = report(namespace, "--name", "harm", "--severity", "1").stdout.strip()
    assert name == "harm"
    phase_is(namespace, name, "AwaitingApproval")
    text = aiincident("describe", name, "-n", namespace).stdout
    assert re.search(r"^Approved: +no \(aiincident approve\)$", text, re.M)
    assert re.search(r"^  Approved +False +ApprovalRequired ", text, re.M)
    done = aiincident("approve", name, "-n", namespace)
    assert done.returncode == 0 and "approved" in done.stdout, done.stderr
    incident = phase_is(namespace, name, "Mitigated")
    assert incident["spec"]["approved"] is True


def test_report_takes_source_severity_title_and_list_shows_all_namespaces(namespace, operator):
    done = aiincident(
        "report", "-n", namespace, "--target", "ranker", "--category", "BiasViolation",
        "--severity", "2", "--source", "External", "--reporter", "journalist at example.org",
        "--description", "Ranking favours one group.", "--title", "Biased ranking",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The target does not exist yet: filed, with a warning.
    assert "Deployment" in done.stderr and "not found" in done.stderr
    name = done.stdout.strip()
    spec = get_incident(namespace, name)["spec"]
    assert (spec["severity"], spec["source"]["type"], spec["title"]) == (2, "External", "Biased ranking")  # fmt: skip
    rows = aiincident("list", "-A").stdout.splitlines()
    assert rows[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert any(r.split()[:2] == [namespace, name] for r in rows[1:])


def test_errors_are_one_line_and_exit_1(namespace, operator, tmp_path):
    create_incident(namespace, "taken", {"category": "Other", "target": {"name": "m"}})
    cases = [
        (("describe", "nope", "-n", namespace), f"AIIncident {namespace}/nope not found"),
        (("approve", "nope", "-n", namespace), "not found"),
        (("resolve", "nope", "-n", namespace), "not found"),
        (("report", "-n", namespace, "--target", "m", "--category", "Hallucination",
          "--reporter", "r", "--description", "d"), "invalid choice: 'Hallucination'"),
        (("report", "-n", "no-such-namespace", "--target", "m", "--category", "Other",
          "--reporter", "r", "--description", "d"), "namespace no-such-namespace not found"),
        (("report", "-n", namespace, "--name", "taken", "--target", "m", "--category", "Other",
          "--reporter", "r", "--description", "d"), f"AIIncident {namespace}/taken already exists"),
        (("report", "-n", namespace, "--target", "Not A Name", "--category", "Other",
          "--reporter", "r", "--description", "d"), "is not a Deployment name"),
    ]  # fmt: skip
    for args, words in cases:
        done = aiincident(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    # No cluster configuration at all.
    done = aiincident("list", "-n", namespace, env={"KUBECONFIG": str(tmp_path / "missing")})
    assert done.returncode == 1 and "KUBECONFIG names" in done.stderr and "Traceback" not in done.stderr  # fmt: skip


def test_list_of_an_empty_namespace_says_so(namespace):
    done = aiincident("list", "-n", namespace)
    assert done.returncode == 0 and done.stdout == ""
    assert f"No incidents found in namespace {namespace}." in done.stderr
