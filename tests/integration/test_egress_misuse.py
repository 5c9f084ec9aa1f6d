"""Outbound calls under misuse (issue 11, findings 2 and 3), end to end.

A real operator process with a narrow URL allowlist (one loopback port), a real
apiserver, and real HTTP endpoints on 127.0.0.1: an "admin endpoint" outside the
allowlist that must never be called, whatever a tenant's policy says (inline URL,
prometheusURL path, a redirect, another team's Secret); an allowed endpoint whose
answers (500 and 404 bodies) must never reach the status, the Events or the
evidence; and a Secret of another tenant, which fails exactly as a missing one.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.kube import Ref

from kit import OPERATOR_ENV, OperatorProcess, create_incident, deployment, policy_body, wait_for

pytestmark = pytest.mark.integration

LABELS = {"app.kubernetes.io/part-of": "chat"}
ADMIN_SECRET = "ADMIN-TOKEN-d41d8cd98f00"  # what the admin endpoint would leak
LOUD_SECRET = "INTERNAL-STACKTRACE-5f2b"  # a webhook's 500 body
PROM_SECRET = "NOT-PROMETHEUS-BODY-93ab"  # a 404 body at the prometheusURL
REDIRECT_BODY = "REDIRECT-BODY-77c1"


class Endpoint:
    """An HTTP server on 127.0.0.1 that records every request (any method) and answers
    each path prefix as scripted: (code, body, headers)."""

    def __init__(self, answers: dict[str, tuple[int, bytes, dict[str, str]]]) -> None:
        self.requests: list[tuple[str, str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                endpoint.requests.append((self.command, self.path))
                path = self.path.split("?", 1)[0]
                code, body, headers = next(
                    (a for p, a in answers.items() if path.startswith(p)), (200, b"ok", {})
                )
                self.send_response(code)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin() -> Iterator[Endpoint]:
    """The loopback admin endpoint (and team B's webhook): outside the allowlist."""
    e = Endpoint({"/": (200, ADMIN_SECRET.encode(), {})})
    yield e
    e.close()


@pytest.fixture
def allowed(admin: Endpoint) -> Iterator[Endpoint]:
    """The one allowlisted port: a good webhook, a loud one, a redirect, a 404 'Prometheus'."""
    e = Endpoint(
        {
            "/loud": (500, LOUD_SECRET.encode(), {}),
            "/bounce": (302, REDIRECT_BODY.encode(), {"Location": f"{admin.url}/admin/redirected"}),
            "/prom": (404, PROM_SECRET.encode(), {"Content-Type": "text/plain"}),
        }
    )
    yield e
    e.close()


@pytest.fixture
def trusted() -> Iterator[Endpoint]:
    """Not in the allowlist either: reached only through a Secret an admin shared."""
    e = Endpoint({})
    yield e
    e.close()


@pytest.fixture
def home(cluster) -> Iterator[str]:
    """The operator's own namespace, where the Secrets live."""
    name = f"egress-ops-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api()
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def operator(solo_namespace: str, home: str, allowed: Endpoint) -> Iterator[OperatorProcess]:
    env = {
        **OPERATOR_ENV,
        "AIINCIDENT_NAMESPACE": home,
        # Only the allowed endpoint's port: the admin endpoint is loopback too, and must
        # stay out of reach although the tests' default allows all of 127.0.0.1.
        "AIINCIDENT_ALLOWED_URLS": f"{allowed.url}/",
    }
    proc = OperatorProcess("egress", "--namespace", solo_namespace, env=env).start()
    yield proc
    proc.stop()


def _secret(ns: str, name: str, url: str, shared_with: str | None) -> None:
    meta: dict = {"name": name}
    if shared_with is not None:
        meta["annotations"] = {"aiincident.io/allowed-namespaces": shared_with}
    kube.create("Secret", ns, {"metadata": meta, "stringData": {"url": url}})


def _ready(ns: str, name: str) -> dict | None:
    body = kube.get(Ref("MitigationPolicy", ns, name)) or {}
    return next(
        (c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
        None,
    )


def _incident(ns: str, name: str) -> dict:
    return kube.get(Ref("AIIncident", ns, name)) or {}


def _condition(ns: str, name: str, type_: str) -> dict:
    conditions = (_incident(ns, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def _events(ns: str) -> str:
    items = kubernetes.client.CoreV1Api().list_namespaced_event(ns).items
    return json.dumps([e.message for e in items])


def test_inline_urls_outside_the_allowlist_make_the_policy_not_ready_and_are_never_called(
    solo_namespace, operator, admin
):
    ns = solo_namespace
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=0))
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"defaultSeverity": 1},
        "notifications": {"channels": [
            {"name": "admin", "webhook": {"url": f"{admin.url}/admin/shutdown"}},
            {"name": "decimal", "webhook": {"url": f"http://2130706433:{admin.port}/x"}},
        ]},
        "responses": [{"severity": 1, "actions": [
            {"type": "Notify", "channels": ["admin", "decimal"]}]}],
        "evidence": {"prometheusURL": f"{admin.url}/admin/config", "lookback": "5m",
                     "queries": [{"name": "q", "query": "up"}]},
        "resolution": {"verification": {"prometheusURL": f"http://localhost:{admin.port}",
                                        "checks": [{"name": "q", "query": "up", "min": 1}]}},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("inline", policy))
    ready = wait_for(lambda: _ready(ns, "inline"), 30, "the policy's Ready condition")
    assert ready["status"] == "False", ready
    message = ready["message"]
    for field in (
        "notifications.channels[admin].webhook.url",
        "notifications.channels[decimal].webhook.url",
        "evidence.prometheusURL",
        "resolution.verification.prometheusURL",
    ):
        assert field in message, message
    assert "is not in the operator's URL allowlist" in message
    assert "write an IPv4 address as four decimal numbers" in message

    create_incident(ns, "harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})
    wait_for(lambda: _condition(ns, "harm", "Triaged").get("status") == "True", 30, "triaged")
    wait_for(lambda: _condition(ns, "harm", "EvidenceCollected"), 30, "evidence")
    assert not (_incident(ns, "harm")["status"]).get("policyRef")  # no policy was used
    assert admin.requests == []


def test_answers_redirects_and_other_tenants_secrets_stay_out(
    solo_namespace, home, operator, admin, allowed, trusted
):
    ns = solo_namespace
    # Team B's webhook Secret, shared with team B only; ours, shared with this namespace.
    _secret(home, "oncall-b", f"{admin.url}/team-b", shared_with="team-b")
    _secret(home, "oncall-a", f"{trusted.url}/mine", shared_with=f"other, {ns}")
    _secret(home, "unshared", f"{admin.url}/unshared", shared_with=None)
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=0))
    prom = f"{allowed.url}/prom"
    policy = {
        "targetSelector": {"matchLabels": LABELS},
        "triage": {"defaultSeverity": 1},
        "notifications": {"channels": [
            {"name": "ok", "webhook": {"url": f"{allowed.url}/ok"}},
            {"name": "mine", "webhook": {"urlSecretRef": {"name": "oncall-a", "key": "url"}}},
            {"name": "loud", "webhook": {"url": f"{allowed.url}/loud"}},
            {"name": "bounce", "webhook": {"url": f"{allowed.url}/bounce"}},
            {"name": "team-b", "webhook": {"urlSecretRef": {"name": "oncall-b", "key": "url"}}},
            {"name": "unshared", "webhook": {"urlSecretRef": {"name": "unshared", "key": "url"}}},
            {"name": "missing", "webhook": {"urlSecretRef": {"name": "nope", "key": "url"}}},
        ]},
        "responses": [{"severity": 1, "actions": [
            {"type": "Notify", "channels": ["ok", "mine"]},
            {"type": "Notify", "channels": ["loud", "bounce", "team-b", "unshared", "missing"]},
        ]}],
        "evidence": {"prometheusURL": prom, "lookback": "5m",
                     "queries": [{"name": "quality", "query": "up"}]},
        "resolution": {"verification": {"prometheusURL": prom, "window": "1s",
                                        "checks": [{"name": "quality", "query": "up", "min": 1}]}},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", policy))
    wait_for(lambda: (_ready(ns, "chat") or {}).get("status") == "True", 30, "policy Ready")
    create_incident(ns, "harm", {"category": "HarmfulOutput", "target": {"name": "chat-llm"}})

    def failed_notify() -> dict | None:
        entries = (_incident(ns, "harm").get("status") or {}).get("mitigations") or []
        return next((e for e in entries if "loud" in e.get("key", "")
                     and e.get("state") == "Failed"), None)  # fmt: skip

    entry = wait_for(failed_notify, 60, "the failing Notify's entry")
    message = entry["message"]
    assert "loud (HTTP 500 (after 4 tries))" in message, message
    assert "bounce (HTTP 302 (a redirect, not followed))" in message, message

    def unavailable(secret: str) -> str:
        return (
            f"Secret {secret} (key url) is not available to namespace {ns}: an admin must "
            "create it in the operator's namespace with annotation "
            f"aiincident.io/allowed-namespaces naming {ns}"
        )

    # Another team's Secret, an unshared one and none at all: one answer, names aside.
    assert f"team-b ({unavailable('oncall-b')})" in message, message
    assert f"unshared ({unavailable('unshared')})" in message, message
    assert f"missing ({unavailable('nope')})" in message, message
    wait_for(lambda: ("POST", "/mine") in trusted.requests, 30, "the shared Secret's webhook")
    assert [p for _, p in allowed.requests].count("/ok") == 1

    # The evidence: Prometheus's 404 as a status code, never its body.
    ref = wait_for(lambda: (_incident(ns, "harm").get("status") or {}).get("evidenceRef"), 60,
                   "the evidence")  # fmt: skip
    evidence = kube.get(Ref("ConfigMap", ns, ref["name"]))
    assert f"HTTP 404 from Prometheus at {prom}" in evidence["data"]["metrics.md"]

    # Verification before undo: the same.
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"resolution": {"requested": True}}})
    verified = wait_for(
        lambda: (c := _condition(ns, "harm", "Verified")).get("reason") == "ChecksFailing" and c,
        60,
        "the verification checks evaluated",
    )
    assert "HTTP 404 from Prometheus" in verified["message"], verified

    seen = json.dumps([_incident(ns, "harm"), evidence]) + _events(ns)
    for secret in (ADMIN_SECRET, LOUD_SECRET, PROM_SECRET, REDIRECT_BODY, admin.url):
        assert secret not in seen, secret
    # Not once: no inline URL, no prometheusURL path, no redirect, no other team's Secret.
    assert admin.requests == []
