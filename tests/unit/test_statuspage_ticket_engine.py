"""StatusPage and Ticket through `engine.reconcile` on a FakeCluster, to a real HTTP receiver.

A new `reconcile` on the status the last one wrote is what an operator restart does:
the page incident's id and the ticket's URL must come from the status, never from
memory, so nothing is opened or filed twice.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ai_incident_operator import engine
from ai_incident_operator.actions import statuspage as sp
from ai_incident_operator.actions import ticket
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

NS = "prod"
HOME = "aiincident-system"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]
ISSUE = "https://gh.example/o/r/issues/7"


class Receiver:
    """Speaks Statuspage's incidents API and GitHub's issues API; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Body]] = []
        self.opened: list[Body] = []  # the page's unresolved incidents
        self.refuse: set[str] = set()  # incident statuses answered 400, once recorded
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                receiver.requests.append((self.command, self.path, dict(self.headers), body))
                status = ((body or {}).get("incident") or {}).get("status")
                if status in receiver.refuse:
                    code, answer = 400, {"error": "refused"}
                elif self.path.endswith("/issues"):
                    number = 7 + sum(1 for r in receiver.requests if r[1].endswith("/issues")) - 1
                    code, answer = 201, {"number": number, "html_url": f"{ISSUE[:-1]}{number}"}
                elif self.command == "GET":
                    code, answer = 200, list(receiver.opened)
                elif self.command == "POST":
                    code, answer = 201, {"id": "sp1", "status": body["incident"]["status"]}
                    receiver.opened.append(
                        {
                            "id": "sp1",
                            "name": body["incident"]["name"],
                            "created_at": "2099-01-01T00:00:00Z",
                        }
                    )
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def secret(name: str, data: dict[str, str]) -> Body:
    return {
        "kind": "Secret",
        "metadata": {"name": name, "namespace": HOME,
                     "annotations": {"aiincident.io/allowed-namespaces": NS}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


def ref(name: str, key: str) -> Body:
    return {"name": name, "key": key}


class Scene:
    def __init__(self, url: str, actions: list[Body], severity: int) -> None:
        self.fake = FakeCluster()
        self.now = T0
        self.fake.add(secret("sp", {"url": f"{url}/v1/pages/PAGE\n", "token": "sp-token"}))
        self.fake.add(secret("gh", {"url": url, "token": "gh-token"}))
        self.fake.add({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "chat"}},
                     "template": {"metadata": {"labels": {"app": "chat"}},
                                  "spec": {"containers": [{"name": "llm", "image": "llm:v1"}]}}},
        })  # fmt: skip
        policy = {
            "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
            "metadata": {"name": "chat", "namespace": NS, "generation": 1},
            "spec": {"targetSelector": {"matchLabels": {"app": "chat"}},
                     "responses": [{"severity": severity, "actions": actions}]},
            "status": {"observedGeneration": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }  # fmt: skip
        self.world = engine.World(policies=[policy], write_review=lambda ctx: None)
        self.fake.add({
            "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
            "metadata": {"name": "harm", "namespace": NS, "uid": "u-1"},
            "spec": {"category": "HarmfulOutput", "severity": severity, "title": "Unsafe advice",
                     "target": {"name": "chat"}},
        })  # fmt: skip

    def run(self) -> engine.Result:
        self.now += timedelta(seconds=30)
        return engine.reconcile(NS, "harm", self.world, api=self.fake, now=self.now)

    def status(self) -> Body:
        return (self.fake.obj("AIIncident", NS, "harm") or {}).get("status") or {}

    def resolve(self) -> None:
        body = self.fake.obj("AIIncident", NS, "harm")
        assert body is not None
        body["spec"]["resolution"] = {"requested": True}
        self.fake.replace(Ref("AIIncident", NS, "harm"), body)


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", HOME)
    restarted(monkeypatch)


def restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a new operator process: it remembers nothing and is another process."""
    ticket._filed.clear()
    ticket._attempted.clear()
    sp._attempted.clear()
    sp._resolved.clear()
    monkeypatch.setattr(ticket, "PROCESS", uuid.uuid4().hex[:12])
    monkeypatch.setattr(sp, "PROCESS", uuid.uuid4().hex[:12])


TRACKER = {"format": "GitHub", "urlSecretRef": ref("gh", "url"),
           "tokenSecretRef": ref("gh", "token"), "project": "o/r"}  # fmt: skip
PAGE = {"format": "Statuspage", "urlSecretRef": ref("sp", "url"),
        "tokenSecretRef": ref("sp", "token")}  # fmt: skip
STATUSPAGE = {"type": "StatusPage", "page": PAGE, "title": "Chat assistant",
              "message": "Some answers may be unavailable.",
              "messages": {"mitigated": "A safe fallback answers for now.",
                           "resolved": "All answers are back."}}  # fmt: skip


def test_the_status_page_is_opened_updated_on_mitigation_and_resolved(receiver, monkeypatch):
    scene = Scene(receiver.url, [{"type": "ScaleToZero"}, STATUSPAGE], 1)
    scene.run()
    assert scene.status()["phase"] == "Mitigated"
    assert receiver.requests == []  # the intent is in the status first
    result = scene.run()
    assert result.requeue_after is not None and result.requeue_after <= 5
    [(method, path, headers, body)] = receiver.requests
    assert (method, path) == ("POST", "/v1/pages/PAGE/incidents")
    assert headers["Authorization"] == "OAuth sp-token"
    assert body == {"incident": {"name": "Chat assistant", "status": "investigating",
                                 "body": "Some answers may be unavailable.",
                                 "impact_override": "major"}}  # fmt: skip

    scene.run()  # the recheck: the response has taken hold
    method, path, headers, body = receiver.requests[-1]
    assert (method, path) == ("PATCH", "/v1/pages/PAGE/incidents/sp1")
    assert body == {
        "incident": {"status": "identified", "body": "A safe fallback answers for now."}
    }
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "StatusPage")
    assert entry["page"] == {**PAGE, "id": "sp1", "status": "identified"}

    scene.run()
    restarted(monkeypatch)
    scene.run()  # a restart: the status says it all, nothing is sent
    assert len(receiver.requests) == 2

    scene.resolve()
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    method, path, headers, body = receiver.requests[-1]
    assert (method, path) == ("PATCH", "/v1/pages/PAGE/incidents/sp1")
    assert body == {"incident": {"status": "resolved", "body": "All answers are back."}}
    assert len(receiver.requests) == 3
    said = json.dumps([r[3] for r in receiver.requests])
    assert "chat" not in said.replace("Chat assistant", "") and NS not in said


def test_a_ticket_is_filed_once_and_its_url_kept(receiver, monkeypatch):
    tracker = TRACKER
    scene = Scene(receiver.url, [{"type": "Ticket", "tracker": tracker}], 3)
    result = scene.run()
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "Ticket")
    assert entry["state"] == "Skipped" and entry["ticket"]["by"] == ticket.PROCESS
    assert entry["message"] == "filing an issue in GitHub o/r (intent recorded)"
    assert result.requeue_after is not None and result.requeue_after < 1
    assert receiver.requests == []  # the intent is in the status before anything is sent
    scene.run()
    [(method, path, headers, body)] = receiver.requests
    assert (method, path) == ("POST", "/repos/o/r/issues")
    assert headers["Authorization"] == "Bearer gh-token"
    assert headers["Accept"] == "application/vnd.github+json"
    assert body["title"] == "[SEV3] prod/harm: Unsafe advice"
    assert "kubectl describe aiincident -n prod harm" in body["body"]
    assert body["labels"] == []
    status = scene.status()
    assert status["tickets"] == [{"url": ISSUE, "for": "incident"}]
    for _ in range(3):
        scene.run()  # new passes, as after a restart (nothing in memory)
        restarted(monkeypatch)
    assert len(receiver.requests) == 1
    scene.resolve()
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert scene.status()["tickets"] == status["tickets"]
    assert len(receiver.requests) == 1


def test_review_action_items_are_filed_once_each(receiver):
    tracker = TRACKER
    scene = Scene(receiver.url, [{"type": "Ticket", "tracker": tracker}], 3)
    scene.fake.add(scene.world.policies[0])  # the CLI reads the policy from the apiserver
    scene.run()
    scene.run()
    scene.resolve()
    scene.run()
    body = scene.fake.get(Ref("AIIncident", NS, "harm"))
    assert body is not None
    body["spec"]["review"] = {"actionItems": [
        {"description": "Add a  canary\nstage", "owner": "ana"},
        {"description": "Already done", "done": True}]}  # fmt: skip
    scene.fake.replace(Ref("AIIncident", NS, "harm"), body)

    said = ticket.file_for_review(scene.fake, scene.fake.get(Ref("AIIncident", NS, "harm")))
    second = f"{ISSUE[:-1]}8"
    assert said == [f"filed {second} (action item: Add a canary stage)"]
    method, path, _, issue = receiver.requests[-1]
    assert (method, path) == ("POST", "/repos/o/r/issues")
    assert issue["title"] == "[prod/harm] Add a canary stage"
    assert "Owner: ana" in issue["body"]
    assert "`aiincident review -n prod harm`" in issue["body"]
    assert scene.status()["tickets"] == [
        {"url": ISSUE, "for": "incident"},
        {"url": second, "for": "action item: Add a canary stage"},
    ]
    again = ticket.file_for_review(scene.fake, scene.fake.get(Ref("AIIncident", NS, "harm")))
    assert again == ["no open action items left to file"]
    assert len(receiver.requests) == 2


def test_a_crash_after_filing_files_nothing_again_until_a_person_says(receiver, monkeypatch):
    scene = Scene(receiver.url, [{"type": "Ticket", "tracker": TRACKER}], 3)
    scene.run()  # the intent
    before = scene.status()
    scene.run()  # filed ... and the operator dies before its status write:
    assert len(receiver.requests) == 1
    scene.fake.objects[("AIIncident", NS, "harm")]["status"] = before
    restarted(monkeypatch)

    scene.run()
    scene.run()
    assert len(receiver.requests) == 1  # never filed twice
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "Ticket")
    assert entry["state"] == "Failed"
    assert entry["message"].startswith("an issue may have been filed in GitHub o/r (tried at ")
    assert "kubectl annotate aiincident -n prod harm aiincident.io/ticket=URL" in entry["message"]
    assert "tickets" not in scene.status()

    body = scene.fake.get(Ref("AIIncident", NS, "harm"))
    assert body is not None
    body["metadata"]["annotations"] = {"aiincident.io/ticket": ISSUE}
    scene.fake.replace(Ref("AIIncident", NS, "harm"), body)
    scene.run()
    assert scene.status()["tickets"] == [{"url": ISSUE, "for": "incident"}]
    assert len(receiver.requests) == 1


def test_a_refused_filing_is_tried_again_with_a_new_intent(receiver):
    scene = Scene(receiver.url, [{"type": "Ticket", "tracker": TRACKER}], 3)
    secret_body = scene.fake.objects[("Secret", HOME, "gh")]
    secret_body["data"]["url"] = base64.b64encode(b"http://127.0.0.1:9").decode()  # refused
    scene.run()
    scene.run()
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "Ticket")
    assert entry["state"] == "Failed" and entry["ticket"] == {}
    assert entry["message"].startswith("no issue filed in GitHub o/r: ")
    secret_body["data"]["url"] = base64.b64encode(receiver.url.encode()).decode()
    scene.run()  # a new intent
    scene.run()
    assert scene.status()["tickets"] == [{"url": ISSUE, "for": "incident"}]
    assert len(receiver.requests) == 1


def test_a_crash_after_opening_the_page_takes_the_incident_it_opened(receiver, monkeypatch):
    scene = Scene(receiver.url, [STATUSPAGE], 1)
    scene.run()  # the intent
    before = scene.status()
    scene.run()  # opened ... and the operator dies before its status write:
    scene.fake.objects[("AIIncident", NS, "harm")]["status"] = before
    restarted(monkeypatch)
    scene.run()
    assert [(m, p) for m, p, _, _ in receiver.requests] == [
        ("POST", "/v1/pages/PAGE/incidents"),
        ("GET", "/v1/pages/PAGE/incidents/unresolved"),
    ]
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "StatusPage")
    assert (entry["page"]["id"], entry["page"]["status"]) == ("sp1", "investigating")
    scene.run()
    assert receiver.requests[-1][:2] == ("PATCH", "/v1/pages/PAGE/incidents/sp1")
    assert sum(1 for m, *_ in receiver.requests if m == "POST") == 1


def test_a_failed_monitoring_update_is_tried_again_while_resolution_waits(receiver):
    """A page whose update failed is still open: the next pass says `monitoring` again, and
    its `resolved` waits for the model like every page's (a Failed entry keeps its page)."""
    scene = Scene(receiver.url, [{"type": "ScaleToZero"}, STATUSPAGE], 1)
    for _ in range(3):
        scene.run()  # intent, open, identified
    assert [r[3]["incident"]["status"] for r in receiver.requests] == [
        "investigating",
        "identified",
    ]
    scene.fake.rollouts_ready = False  # the model loads its weights for a while
    receiver.refuse.add("monitoring")  # the page's service has a bad moment
    scene.resolve()
    scene.run()
    assert scene.status()["phase"] == "Resolving"
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "StatusPage")
    assert entry["state"] == "Failed" and entry["page"]["status"] == "identified"
    receiver.refuse.clear()
    scene.run()
    statuses = [r[3]["incident"]["status"] for r in receiver.requests]
    assert statuses == ["investigating", "identified", "monitoring", "monitoring"]
    entry = next(e for e in scene.status()["mitigations"] if e["action"] == "StatusPage")
    assert entry["state"] == "Applied" and entry["page"]["status"] == "monitoring"
    scene.fake.rollouts_ready = True
    scene.run()
    assert scene.status()["phase"] == "Resolved"
    assert [r[3]["incident"]["status"] for r in receiver.requests][-1] == "resolved"
