"""Issue 15 item 2, live: the escalation ladder pages leadership once, and only when it must.

- A severity-1 incident not acknowledged pages `leadership` after `after` (3s), once,
  with a page that says it is an escalation; acknowledged first, nobody is paged.
- A level with a channel the policy does not define makes the policy Ready=False.
- The operator killed while the page is on the wire (after the claim, before its outcome
  was written), then started again, does not page again; a later level is paged once by
  the new process, and a second restart sends nothing.

The receiver is this file's: a threaded HTTP server that can hold a request open, so the
operator is killed mid-post.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

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


class Receiver:
    """Pages by path; a path in `held` is answered only once `release` is set."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[dict]] = {}
        self.held: set[str] = set()
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.setdefault(self.path, []).append(body)
                if self.path in receiver.held:
                    receiver.release.wait(30)
                try:
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the operator was killed while we held its request

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def pages(self, path: str) -> list[dict]:
        return list(self.bodies.get(path, []))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.release.set()
    r.server.shutdown()
    r.server.server_close()


def channel(name: str, url: str, fmt: str = "Generic") -> dict:
    return {"name": name, "format": fmt, "webhook": {"url": url}}


def setup(ns: str, ladder: list[dict], channels: list[dict]) -> None:
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "escalation": ladder,
                       "actions": [{"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall"]}]}],
        "notifications": {"channels": channels},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))
    wait_for(lambda: ready(ns) == ("True", "Valid"), 30, "policy Ready")


def ready(ns: str) -> tuple[str, str] | None:
    body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    found = next((c for c in (body.get("status") or {}).get("conditions") or []
                  if c["type"] == "Ready"), None)  # fmt: skip
    return (found["status"], found["reason"]) if found else None


def open_incident(ns: str, name: str) -> None:
    create_incident(ns, name, {"category": "HarmfulOutput", "severity": 1,
                               "title": "Unsafe advice", "target": {"name": "chat-llm"}})  # fmt: skip


def status_of(ns: str, name: str) -> dict:
    return get_incident(ns, name).get("status") or {}


def escalations(ns: str, name: str) -> list[tuple[int, str]]:
    return [(e["level"], e["state"]) for e in status_of(ns, name).get("escalations") or []]


def timeline(ns: str, name: str, type_: str) -> list[str]:
    return [t["message"] for t in status_of(ns, name).get("timeline") or [] if t["type"] == type_]


LEADERSHIP = {"after": "3s", "unless": "Acknowledged", "channels": ["leadership"]}


def test_not_acknowledged_in_time_leadership_is_paged_once(namespace, operator, receiver):
    setup(namespace, [LEADERSHIP], [channel("oncall", f"{receiver.url}/oncall"),
                                    channel("leadership", f"{receiver.url}/leadership")])  # fmt: skip
    open_incident(namespace, "harm")
    started = time.monotonic()
    (page,) = wait_for(lambda: receiver.pages("/leadership"), 30, "the escalation page")
    assert time.monotonic() - started >= 1.5  # not before `after` (detectedAt has seconds)
    assert page["event"] == "escalation"
    assert (page["incident"], page["severity"], page["title"]) == ("harm", 1, "Unsafe advice")
    status = status_of(namespace, "harm")
    assert page["escalation"]["level"] == 1
    assert page["escalation"]["unless"] == "Acknowledged"
    assert page["escalation"]["notMet"] == "not acknowledged 3s after detection"
    assert page["escalation"]["since"] == status["detectedAt"]
    assert page["escalation"]["channels"] == ["leadership"]

    wait_for(lambda: escalations(namespace, "harm") == [(1, "Sent")], 30, "Sent recorded")
    assert timeline(namespace, "harm", "Escalated") == [
        "escalated to leadership: not acknowledged 3s after detection"
    ]
    # Later passes (a spec change, the resync) page nobody again.
    kube.patch(Ref("AIIncident", namespace, "harm"), {"spec": {"description": "more users"}})
    wait_for(lambda: status_of(namespace, "harm").get("observedGeneration") == 2, 30, "a pass")
    time.sleep(3)
    assert len(receiver.pages("/leadership")) == 1
    assert len(receiver.pages("/oncall")) == 1


def test_acknowledged_first_nobody_is_paged(namespace, operator, receiver):
    setup(namespace, [LEADERSHIP], [channel("oncall", f"{receiver.url}/oncall"),
                                    channel("leadership", f"{receiver.url}/leadership")])  # fmt: skip
    open_incident(namespace, "acked")
    kube.patch(Ref("AIIncident", namespace, "acked"), {"spec": {"acknowledged": {"by": "alice"}}})
    assert get_incident(namespace, "acked")["spec"]["acknowledged"] == {"by": "alice"}
    wait_for(lambda: escalations(namespace, "acked") == [(1, "Skipped")], 30, "level 1 Skipped")
    assert timeline(namespace, "acked", "EscalationSkipped") == [
        "escalation level 1 to leadership not needed: acknowledged by alice when due "
        "(3s after detection)"
    ]
    time.sleep(2)
    assert receiver.pages("/leadership") == []
    assert [p["event"] for p in receiver.pages("/oncall")][:1] == ["incident"]  # then the ack


def test_a_level_naming_an_unknown_channel_makes_the_policy_not_ready(namespace, operator):
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}],
                       "escalation": [{"after": "10m", "channels": ["board"]}]}],
    }  # fmt: skip
    kube.create("MitigationPolicy", namespace, policy_body("chat", spec))
    wait_for(lambda: ready(namespace) == ("False", "Invalid"), 30, "policy Ready=False")
    body = kube.get(Ref("MitigationPolicy", namespace, "chat"))
    (cond,) = [c for c in body["status"]["conditions"] if c["type"] == "Ready"]
    assert cond["message"] == (
        "responses[0].escalation[0]: channel board is not in notifications.channels (none defined)"
    )


def test_a_restart_mid_send_and_after_sending_pages_nobody_twice(solo_namespace, receiver):
    ns = solo_namespace
    # The leadership channel's URL in a Secret of the operator's namespace, shared with ns.
    kube.create("Secret", ns, {
        "metadata": {"name": "leadership", "annotations": {"aiincident.io/allowed-namespaces": ns}},
        "stringData": {"url": f"{receiver.url}/leadership"},
    })  # fmt: skip
    ladder = [LEADERSHIP, {"after": "25s", "unless": "Resolved", "channels": ["boss"]}]
    secret = {"urlSecretRef": {"name": "leadership", "key": "url"}}
    env = {**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": ns}
    receiver.held.add("/leadership")  # the first operator dies with this page on the wire

    def start(name: str) -> OperatorProcess:
        return OperatorProcess(name, "--namespace", ns, env=env).start()

    proc = start("escalation-1")
    try:
        setup(ns, ladder, [channel("oncall", f"{receiver.url}/oncall"),
                           {"name": "leadership", "format": "Generic", "webhook": secret},
                           channel("boss", f"{receiver.url}/boss", "Slack")])  # fmt: skip
        open_incident(ns, "harm")
        wait_for(lambda: receiver.pages("/leadership"), 30, f"the page (log: {proc.log_path})")
        assert escalations(ns, "harm") == [(1, "Sending")]  # claimed before the post
        proc.kill()
    finally:
        proc.kill()
    receiver.release.set()

    proc = start("escalation-2")
    try:
        wait_for(lambda: escalations(ns, "harm") == [(1, "Unknown")], 30,
                 f"the claim left by the killed operator (log: {proc.log_path})")  # fmt: skip
        (said,) = timeline(ns, "harm", "EscalationUnknown")
        assert said.startswith("escalation level 1: the operator stopped while paging leadership")
        assert said.endswith("it may not have gone out, and is not sent again (at most once)")
        (boss,) = wait_for(lambda: receiver.pages("/boss"), 40, "level 2, by the new operator")
        assert boss["text"].startswith(
            f"[SEV1] {ns}/harm HarmfulOutput: ESCALATION level 2: not resolved 25s after detection"
        )
        wait_for(lambda: escalations(ns, "harm") == [(1, "Unknown"), (2, "Sent")], 30, "Sent")
    finally:
        proc.stop()

    proc = start("escalation-3")  # after sending: the status says it all
    try:
        wait_for(lambda: status_of(ns, "harm").get("phase") == "Mitigated", 30, "a pass")
        time.sleep(4)  # resyncs of the new process
    finally:
        proc.stop()
    assert len(receiver.pages("/leadership")) == 1
    assert len(receiver.pages("/boss")) == 1
    assert len(receiver.pages("/oncall")) == 1
    assert escalations(ns, "harm") == [(1, "Unknown"), (2, "Sent")]
