"""Affected users and the fix's schedule, live (issue 15 items 3 and 5).

- A severity-1 incident opens an incident on a status page that speaks Atlassian
  Statuspage's incidents API, with the policy's user-facing words only; it is updated
  once mitigated, monitoring while resolution is verified and resolved at the end, and an operator restart in between opens
  nothing twice.
- A severity-3 incident files one GitHub issue; its URL lands in `status.tickets`, and
  an operator restart does not file it again.

Each test runs its own operator on its own namespace, which is also the operator's
namespace (AIINCIDENT_NAMESPACE), where the Secrets with the URLs and tokens are.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

import kubelet
from kit import (
    OPERATOR_ENV,
    OperatorProcess,
    create_incident,
    deployment,
    get_incident,
    policy_body,
    wait_for,
)

pytestmark = pytest.mark.integration
LABELS = {"app.kubernetes.io/part-of": "chat"}
Body = dict[str, Any]
ISSUE_URL = "https://github.example/o/r/issues/7"
AIINCIDENT = Path(sys.executable).parent / "aiincident"


class Receiver:
    """Statuspage's incidents API and GitHub's issues API on 127.0.0.1; records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Body]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                with receiver.lock:
                    receiver.requests.append((self.command, self.path, dict(self.headers), body))
                if self.path.endswith("/issues"):
                    with receiver.lock:
                        number = 6 + sum(1 for r in receiver.requests if r[1].endswith("/issues"))
                    code, answer = 201, {"number": number, "html_url": f"{ISSUE_URL[:-1]}{number}"}
                elif self.command == "GET":  # the unresolved incidents: none
                    code, answer = 200, []
                elif self.command == "POST":
                    code, answer = 201, {"id": "sp1", "status": body["incident"]["status"]}
                else:
                    code, answer = 200, {"id": self.path.rpartition("/")[2]}
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_GET = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def seen(self) -> list[tuple[str, str, dict[str, str], Body]]:
        with self.lock:
            return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def own_operator(solo_namespace: str) -> Iterator[OperatorProcess]:
    """An operator on SOLO_NAMESPACE, which is also its own namespace (the Secrets')."""
    env = {**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": solo_namespace}
    proc = OperatorProcess("statuspage", "--namespace", solo_namespace, env=env).start()
    yield proc
    proc.stop()


def secret(ns: str, name: str, data: dict[str, str]) -> None:
    kube.create("Secret", ns, {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "annotations": {"aiincident.io/allowed-namespaces": ns}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    })  # fmt: skip


def setup(ns: str, severity: int, actions: list[Body]) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    spec = {"targetSelector": {"matchLabels": LABELS},
            "responses": [{"severity": severity, "actions": actions}]}  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))
    wait_for(lambda: _ready(ns), 30, "policy Ready")


def _ready(ns: str) -> bool:
    policy = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    conditions = (policy.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def status_of(ns: str, name: str) -> Body:
    return get_incident(ns, name).get("status") or {}


def entry(status: Body, action: str) -> Body:
    return next((e for e in status.get("mitigations") or [] if e["action"] == action), {})


def restart(proc: OperatorProcess, ns: str, name: str) -> None:
    """Kill the operator (a crash) and start it again; wait until it has looked again."""
    proc.kill()
    proc.start()
    # A spec change the new process must act on: its pass has run once it is observed.
    kube.patch(Ref("AIIncident", ns, name), {"spec": {"description": "after a restart"}})
    generation = get_incident(ns, name)["metadata"]["generation"]
    wait_for(
        lambda: status_of(ns, name).get("observedGeneration") == generation,
        30,
        "the restarted operator's pass",
    )


def what_happened(receiver: Receiver, proc: OperatorProcess, ns: str, name: str) -> str:
    """What a failed wait needs said: the requests seen, the incident's status, the log."""
    seen = [(m, p, (b or {}).get("incident", {}).get("status")) for m, p, _, b in receiver.seen()]
    status = json.dumps(status_of(ns, name), indent=1, sort_keys=True)
    return f"requests: {seen}\nstatus: {status}\nlog ({proc.log_path}):\n{proc.log_tail(8000)}"


PAGE = {
    "format": "Statuspage",
    "urlSecretRef": {"name": "statuspage", "key": "url"},
    "tokenSecretRef": {"name": "statuspage", "key": "token"},
}
STATUSPAGE = {
    "type": "StatusPage",
    "page": PAGE,
    "title": "Chat assistant",
    "message": "Some answers may be unavailable.",
    "messages": {"mitigated": "A safe fallback answers for now.", "resolved": "All fixed."},
}


def test_a_severity_1_status_page_is_told_updated_and_resolved(
    solo_namespace, own_operator, receiver
):
    ns = solo_namespace
    secret(ns, "statuspage", {"url": f"{receiver.url}/v1/pages/PAGE\n", "token": "sp-key"})
    kubelet.hold(ns)  # the model comes back when the test says: the page says monitoring first
    setup(ns, 1, [{"type": "ScaleToZero"}, STATUSPAGE])
    create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                 "title": "Unsafe advice from chat-llm",
                                 "target": {"name": "chat-llm"}})  # fmt: skip
    wait_for(
        lambda: (
            (entry(status_of(ns, "harm"), "StatusPage").get("page") or {}).get("status")
            == "identified"
        ),
        30,
        "the status page says identified",
    )
    first, update = receiver.seen()
    method, path, headers, body = first
    assert (method, path) == ("POST", "/v1/pages/PAGE/incidents")
    assert headers["Authorization"] == "OAuth sp-key"
    assert headers["Content-Type"] == "application/json"
    assert body == {"incident": {"name": "Chat assistant", "status": "investigating",
                                 "body": "Some answers may be unavailable.",
                                 "impact_override": "major"}}  # fmt: skip
    method, path, headers, body = update
    assert (method, path) == ("PATCH", "/v1/pages/PAGE/incidents/sp1")
    assert headers["Authorization"] == "OAuth sp-key"
    assert body == {
        "incident": {"status": "identified", "body": "A safe fallback answers for now."}
    }
    status = status_of(ns, "harm")
    assert status["phase"] == "Mitigated"
    assert entry(status, "StatusPage")["page"] == {**PAGE, "id": "sp1", "status": "identified"}

    restart(own_operator, ns, "harm")
    assert len(receiver.seen()) == 2  # nothing opened or updated again

    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
    wait_for(lambda: len(receiver.seen()) >= 3, 30, "the page says monitoring",
             explain=lambda: what_happened(receiver, own_operator, ns, "harm"))  # fmt: skip
    assert status_of(ns, "harm")["phase"] == "Resolving", what_happened(
        receiver, own_operator, ns, "harm"
    )
    wait_for(lambda: kubelet.mark_ready(ns), 30, "the restored model's Pod")
    wait_for(lambda: status_of(ns, "harm").get("phase") == "Resolved", 60, "Resolved")
    requests = receiver.seen()
    assert [(m, p, (b or {}).get("incident", {}).get("status")) for m, p, _, b in requests] == [
        ("POST", "/v1/pages/PAGE/incidents", "investigating"),
        ("PATCH", "/v1/pages/PAGE/incidents/sp1", "identified"),
        ("PATCH", "/v1/pages/PAGE/incidents/sp1", "monitoring"),  # while recovery is verified
        ("PATCH", "/v1/pages/PAGE/incidents/sp1", "resolved"),
    ]
    method, path, headers, body = requests[-1]
    assert (method, path) == ("PATCH", "/v1/pages/PAGE/incidents/sp1")
    assert body == {"incident": {"status": "resolved", "body": "All fixed."}}
    assert entry(status_of(ns, "harm"), "StatusPage")["state"] == "Reverted"
    # What users read: the policy's words, nothing internal.
    said = json.dumps([r[3] for r in requests])
    for internal in (ns, "chat-llm", "Unsafe advice", "HarmfulOutput"):
        assert internal not in said


def test_a_severity_3_incident_files_one_ticket_that_survives_a_restart(
    solo_namespace, own_operator, receiver
):
    ns = solo_namespace
    secret(ns, "github", {"url": receiver.url, "token": "ghp-test"})
    tracker = {
        "format": "GitHub",
        "urlSecretRef": {"name": "github", "key": "url"},
        "tokenSecretRef": {"name": "github", "key": "token"},
        "project": "o/r",
        "labels": ["ai-incident"],
    }
    setup(ns, 3, [{"type": "Ticket", "tracker": tracker}])
    create_incident(ns, "cost", {"category": "CostAnomaly", "severity": 3,
                                 "title": "Token bill tripled",
                                 "target": {"name": "chat-llm"}})  # fmt: skip
    wait_for(lambda: status_of(ns, "cost").get("tickets"), 30, "status.tickets")
    assert status_of(ns, "cost")["tickets"] == [{"url": ISSUE_URL, "for": "incident"}]
    [(method, path, headers, body)] = receiver.seen()
    assert (method, path) == ("POST", "/repos/o/r/issues")
    assert headers["Authorization"] == "Bearer ghp-test"
    assert headers["Accept"] == "application/vnd.github+json"
    assert body["title"] == f"[SEV3] {ns}/cost: Token bill tripled"
    assert body["labels"] == ["ai-incident"]
    assert f"Incident: AIIncident {ns}/cost" in body["body"]
    assert f"`kubectl describe aiincident -n {ns} cost`" in body["body"]
    assert entry(status_of(ns, "cost"), "Ticket")["ticket"]["url"] == ISSUE_URL

    restart(own_operator, ns, "cost")
    assert len(receiver.seen()) == 1  # not filed again
    assert status_of(ns, "cost")["tickets"] == [{"url": ISSUE_URL, "for": "incident"}]

    # The review's action items, filed by the CLI with the same tracker, once each.
    kube.patch(Ref("AIIncident", ns, "cost"), {"spec": {"resolution": {"requested": True}}})
    wait_for(lambda: status_of(ns, "cost").get("reviewRef"), 60, "the review")
    items = [{"description": "Alert on token spend per hour", "owner": "ana"}]
    kube.patch(Ref("AIIncident", ns, "cost"), {"spec": {"review": {"actionItems": items}}})
    env = {**os.environ, "AIINCIDENT_NAMESPACE": ns}
    for _ in range(2):
        done = subprocess.run(
            [str(AIINCIDENT), "review", "cost", "-n", ns, "--file-action-items"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("# Post-incident review")
    assert done.stderr == "no open action items left to file\n"
    requests = receiver.seen()
    assert len(requests) == 2
    method, path, _, body = requests[-1]
    assert (method, path) == ("POST", "/repos/o/r/issues")
    assert body["title"] == f"[{ns}/cost] Alert on token spend per hour"
    assert status_of(ns, "cost")["tickets"] == [
        {"url": ISSUE_URL, "for": "incident"},
        {"url": f"{ISSUE_URL[:-1]}8", "for": "action item: Alert on token spend per hour"},
    ]
