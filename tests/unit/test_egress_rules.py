"""The egress rules (issue 11, findings 2 and 3): which URLs a policy may call, which
Secrets it may use, and what of an answer is kept.

Property tests: whatever a tenant writes, a URL the rules allow is one that Python's
and urllib3's parsers (the ones that send the request) read as the allowlisted host,
port and path; loopback and metadata addresses never pass a wildcard entry; sanitised
words are bounded printable ASCII with no URL. Then the clients themselves, against
real loopback servers: redirects are not followed and bodies never reach a message.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator import egress
from ai_incident_operator.actions import notify
from ai_incident_operator.investigation import prometheus

from fakecluster import FakeCluster

ALLOW = egress.parse_entries(
    ["https://hooks.example.com/services/", "http://*.monitoring.svc:9090", "http://10.0.0.7:*"]
)
OPS = "aiincident-system"


def allowed(url: str, entries=ALLOW) -> bool:
    return egress.check_url(url, True, entries) is None


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/services/T1/B2/x",
        "https://HOOKS.example.com./services/x",
        "https://hooks.example.com:443/services",
        "http://prometheus.monitoring.svc:9090",
        "http://prometheus.monitoring.svc:9090/prom/",
        "http://10.0.0.7:8080/anything",
    ],
)
def test_urls_in_the_allowlist_pass(url):
    assert egress.check_url(url, True, ALLOW) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://hooks.example.com/servicesX", "not in the operator's URL allowlist"),
        ("https://hooks.example.com/other", "not in the operator's URL allowlist"),
        ("http://hooks.example.com/services/x", "not in the operator's URL allowlist"),
        ("https://hooks.example.com:8443/services/x", "not in the operator's URL allowlist"),
        ("https://hooks.example.com/services/../admin", "'..' segments"),
        ("https://hooks.example.com/services/%2e%2e/admin", "percent-encode"),
        ("https://hooks.example.com/services/a%2fb", "percent-encode"),
        ("https://x@hooks.example.com/services/", "'@'"),
        ("https://hooks.example.com@127.0.0.1/services/", "'@'"),
        ("https://hooks.example.com\\@127.0.0.1/services/", "backslashes"),
        ("https://hooks.example.com/services/\n", "printable ASCII"),
        ("https://hooks.ex\u0430mple.com/services/", "printable ASCII"),
        ("http://2130706433/", "four decimal numbers"),
        ("http://0x7f.0.0.1/", "four decimal numbers"),
        ("http://127.1/", "four decimal numbers"),
        ("http://0177.0.0.1/", "four decimal numbers"),
        ("http://[::1%25eth0]/", "'%'"),
        ("ftp://hooks.example.com/services/", "not an http(s) URL"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("http://kubernetes.default.svc:9090/", "not in the operator's URL allowlist"),
        ("http://localhost.monitoring.svc:9090/", None),  # a name like any other
    ],
)
def test_urls_outside_the_allowlist_or_ambiguous_are_refused(url, why):
    problem = egress.check_url(url, True, ALLOW)
    if why is None:
        assert problem is None
    else:
        assert problem and why in problem, problem


def test_special_hosts_pass_only_an_entry_naming_them_exactly():
    anywhere = egress.parse_entries(["http://*:*", "https://*.svc.cluster.local"])
    for url in (
        "http://127.0.0.1:8080/admin",
        "http://localhost:80/",
        "http://app.localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9090/",
        "http://[::ffff:127.0.0.1]/",
        "http://[fe80::1]/",
        "http://0.0.0.0:9090/",
        "http://metadata.google.internal/",
        "https://kubernetes.default.svc.cluster.local/api",
        "http://10.96.0.1/",  # the apiserver's address, as the pod's env says
    ):
        problem = egress.check_url(url, True, anywhere, apiserver={"10.96.0.1"})
        assert problem and "points at" in problem, (url, problem)
    exact = egress.parse_entries(["http://127.0.0.1:9090/"])
    assert egress.check_url("http://127.0.0.1:9090/x", True, exact) is None
    assert egress.check_url("http://127.0.0.1:9091/x", True, exact)


def test_trusted_urls_need_only_be_http():
    # A ClusterMitigationPolicy's URL, or a Secret's: no allowlist, userinfo allowed.
    assert egress.check_url("http://user:pw@127.0.0.1:9090/", False, []) is None
    assert egress.check_url("https://hooks.slack.com/services/T/B/C", False, []) is None
    assert "http(s)" in egress.check_url("gopher://x/", False, [])


def test_a_wildcard_name_resolving_to_loopback_is_refused_at_use(monkeypatch):
    monkeypatch.setenv(egress.ENV, "http://*.example.com:*")
    assert egress.check("http://hooks.example.com/x", True, lambda host: ["93.184.216.34"]) is None
    problem = egress.check("http://rebind.example.com/x", True, lambda host: ["127.0.0.1"])
    assert problem and "resolves to a loopback address" in problem
    problem = egress.check("http://meta.example.com/", True, lambda host: ["169.254.169.254"])
    assert problem and "link-local" in problem
    # An exact entry is the admin's word for that name: its DNS is not second-guessed.
    monkeypatch.setenv(egress.ENV, "http://prom.example.com:*")
    assert egress.check("http://prom.example.com/", True, lambda host: ["127.0.0.1"]) is None
    assert egress.check("http://prom.example.com/", False, lambda host: ["127.0.0.1"]) is None


@pytest.mark.parametrize(
    "entry",
    ["", "hooks.example.com", "ftp://x", "http://a@b", "http://x/?q", "http://x/#f",
     "http://0x7f.1", "http://x:99999", "http://x/../y", "http://x\\y"],
)  # fmt: skip
def test_bad_allowlist_entries_are_refused_at_start(entry, monkeypatch):
    monkeypatch.setattr(egress, "_configured", [])
    with pytest.raises(ValueError):
        egress.parse_entry(entry)
    if entry:
        with pytest.raises(ValueError):
            egress.configure(["https://ok.example.com/", entry])
        assert egress._configured == []  # nothing half-taken


def test_the_allowlist_merges_the_command_line_and_the_environment(monkeypatch):
    monkeypatch.setattr(egress, "_configured", [])
    egress.configure(["https://a.example.com/"])
    entries = egress.allowlist({egress.ENV: "http://b.example.com:9090, ,http://x@bad"})
    assert [e.text for e in entries] == ["https://a.example.com/", "http://b.example.com:9090"]


# The tricky alphabet: what parsers disagree on.
_PIECES = st.sampled_from(
    ["hooks.example.com", "127.0.0.1", "@", ":", "/", "\\", "%2f", "%2e", ".", "..", "?", "#",
     "services", "admin", "443", "x", "0x7f", "[::1]", ";", "%40", "\t", "\u0430"]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=8).map("".join), st.sampled_from(["https://", "http://"]))
def test_an_allowed_url_is_what_every_parser_sends_to(rest, scheme):
    url = scheme + rest
    if not allowed(url):
        return
    split = urllib.parse.urlsplit(url)
    assert split.hostname == "hooks.example.com" and (split.port or 443) == 443
    assert split.path.startswith("/services")
    parsed = urllib3.util.parse_url(url)
    assert parsed.host.rstrip(".").lower() == "hooks.example.com"
    assert (parsed.port or 443) == 443 and parsed.auth is None


@settings(max_examples=300, deadline=None)
@given(st.ip_addresses(), st.integers(1, 65535))
def test_loopback_and_link_local_never_pass_a_wildcard(ip, port):
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    url = f"http://{host}:{port}/"
    anywhere = egress.parse_entries(["http://*:*"])
    problem = egress.check_url(url, True, anywhere)
    mapped = getattr(ip, "ipv4_mapped", None) or ip
    if mapped.is_loopback or mapped.is_link_local or mapped.is_unspecified:
        assert problem and "points at" in problem
    else:
        assert problem is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600), st.integers(3, 300))
def test_sanitised_words_are_bounded_printable_and_hold_no_url(text, limit):
    words = egress.sanitise(text, limit)
    assert len(words) <= limit
    assert all(32 <= ord(c) < 127 for c in words)
    assert "://" not in words and "\n" not in words


def test_sanitise_hides_hosts_in_client_errors():
    raw = (
        "HTTPConnectionPool(host='10.1.2.3', port=9): Max retries exceeded with url: "
        "/api/v1/query_range?query=up (Caused by NewConnectionError(... "
        "http://admin.internal:8080/x [Errno 111] Connection refused))"
    )
    words = egress.sanitise(raw)
    for leak in ("10.1.2.3", "admin.internal", "/api/v1", "query=up"):
        assert leak not in words
    assert "Connection refused" in words


# --- Policies and Secrets ---------------------------------------------------------------


def _policy(kind: str, namespace: str | None, url: str) -> dict:
    meta = {"name": "p", **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "spec": {
            "notifications": {"channels": [{"name": "c", "webhook": {"url": url}}, "junk"]},
            "evidence": {"prometheusURL": url},
            "resolution": {"verification": {"prometheusURL": url}},
        },
    }


def test_a_namespaced_policys_inline_urls_are_checked_a_cluster_policys_not():
    bad = "http://169.254.169.254/latest"
    problems = egress.policy_problems(_policy("MitigationPolicy", "team-a", bad), ALLOW)
    assert [p.split(":", 1)[0] for p in problems] == [
        "notifications.channels[c].webhook.url",
        "evidence.prometheusURL",
        "resolution.verification.prometheusURL",
    ]
    assert egress.policy_problems(_policy("ClusterMitigationPolicy", None, bad), ALLOW) == []
    good = "https://hooks.example.com/services/x"
    assert egress.policy_problems(_policy("MitigationPolicy", "team-a", good), ALLOW) == []
    assert egress.policy_problems({"metadata": {"namespace": "a"}, "spec": "junk"}, ALLOW) == []


def test_scope_of_a_policy_ref():
    assert egress.scope_of_ref({"kind": "ClusterMitigationPolicy", "name": "c"}, "a") is None
    assert egress.scope_of_ref({"kind": "MitigationPolicy", "namespace": "b"}, "a") == "b"
    assert egress.scope_of_ref(None, "a") == "a"  # unknown: the stricter rules


@pytest.mark.parametrize(
    ("annotation", "namespace", "ok"),
    [("team-a", "team-a", True), ("team-b, team-a", "team-a", True), ("*", "x", True),
     ("team-b", "team-a", False), ("", "team-a", False), (None, "team-a", False),
     ("team-a-2", "team-a", False)],
)  # fmt: skip
def test_secret_allows(annotation, namespace, ok):
    meta = {"name": "s"}
    if annotation is not None:
        meta["annotations"] = {egress.ANNOTATION: annotation}
    assert egress.secret_allows({"metadata": meta}, namespace) is ok


def _hook_secret(fake: FakeCluster, name: str, annotation: str | None, data: dict | None = None):
    meta = {"name": name, "namespace": OPS}
    if annotation:
        meta["annotations"] = {egress.ANNOTATION: annotation}
    url = base64.b64encode(b"https://hooks.example.com/services/b").decode()
    fake.add({"kind": "Secret", "metadata": meta, "data": {"url": url} if data is None else data})


def test_a_tenant_cannot_tell_another_teams_secret_from_a_missing_one(monkeypatch):
    monkeypatch.setenv("AIINCIDENT_NAMESPACE", OPS)
    fake = FakeCluster()
    _hook_secret(fake, "team-b", "team-b")
    _hook_secret(fake, "bare", None)
    _hook_secret(fake, "keyless", "team-a", data={})
    _hook_secret(fake, "ours", "team-a")

    def error(name: str, tenant: str | None = "team-a") -> str:
        channel = {"name": "c", "webhook": {"urlSecretRef": {"name": name, "key": "url"}}}
        with pytest.raises(notify.NotifyError) as err:
            notify.channel_url(fake, channel, tenant)
        return str(err.value).replace(name, "NAME")

    assert error("team-b") == error("bare") == error("keyless") == error("missing")
    assert error("missing") == (
        "Secret NAME (key url) is not available to namespace team-a: an admin must create it "
        "in the operator's namespace with annotation aiincident.io/allowed-namespaces naming "
        "team-a"
    )
    ours = {"name": "c", "webhook": {"urlSecretRef": {"name": "ours", "key": "url"}}}
    assert notify.channel_url(fake, ours, "team-a") == "https://hooks.example.com/services/b"
    # A cluster policy may use any Secret of the operator's namespace.
    team_b = {"name": "c", "webhook": {"urlSecretRef": {"name": "team-b", "key": "url"}}}
    assert notify.channel_url(fake, team_b, None) == "https://hooks.example.com/services/b"
    assert error("missing", None) == f"Secret {OPS}/NAME not found"


def test_a_tenants_inline_webhook_outside_the_allowlist_is_refused(monkeypatch):
    monkeypatch.setenv(egress.ENV, "https://hooks.example.com/services/")
    channel = {"name": "c", "webhook": {"url": "http://127.0.0.1:8080/admin"}}
    with pytest.raises(
        notify.NotifyError, match=r"^webhook\.url refused: http://127\.0\.0\.1:8080 is"
    ):
        notify.channel_url(FakeCluster(), channel, "team-a")
    assert notify.channel_url(FakeCluster(), channel, None) == "http://127.0.0.1:8080/admin"


# --- The clients, against real servers ----------------------------------------------------

BODY = b"SECRET-BODY-0451"


class _Server:
    """Answers every path with (code, body, headers) for it; records each request."""

    def __init__(self, answers: dict[str, tuple[int, bytes, dict[str, str]]]) -> None:
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append(self.path)
                path = self.path.split("?", 1)[0]
                code, body, headers = next(
                    (a for p, a in answers.items() if path.startswith(p)), (200, b"{}", {})
                )
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def target() -> Iterator[_Server]:
    s = _Server({})
    yield s
    s.http.shutdown()
    s.http.server_close()


@pytest.fixture
def server(target: _Server) -> Iterator[_Server]:
    s = _Server(
        {
            "/hook/500": (500, BODY, {}),
            "/hook/302": (302, BODY, {"Location": f"{target.url}/stolen"}),
            "/hook/307": (307, BODY, {"Location": f"{target.url}/stolen"}),
            "/p404": (404, BODY, {}),
            "/p302": (302, BODY, {"Location": f"{target.url}/stolen"}),
            "/perr": (400, b'{"status":"error","errorType":"bad_data","error":"parse error '
                      b'at http://internal.example:1/x ' + b"y" * 500 + b'"}', {}),
            "/phtml/api/v1/query": (200, b"<html>" + BODY + b"</html>", {}),
            "/pok/api/v1/query": (200, b'{"status":"success","data":{"resultType":"vector",'
                                  b'"result":[{"metric":{"a":"b"},"value":[1,"2"]}]}}', {}),
        }
    )  # fmt: skip
    yield s
    s.http.shutdown()
    s.http.server_close()


def test_notify_keeps_only_the_status_code_and_follows_no_redirect(server, target):
    for path, words in (
        ("/hook/500", "HTTP 500 (after 2 tries)"),
        ("/hook/302", "HTTP 302 (a redirect, not followed)"),
        ("/hook/307", "HTTP 307 (a redirect, not followed)"),
    ):
        with pytest.raises(notify.NotifyError) as err:
            notify.post(f"{server.url}{path}", {}, backoff=(0,), sleep=lambda s: None)
        assert str(err.value) == words
    assert target.seen == []


def test_prometheus_answers_become_a_code_or_its_sanitised_error(server, target):
    def error(path: str) -> str:
        with pytest.raises(prometheus.PrometheusError) as err:
            prometheus.query(f"{server.url}{path}", "up")
        return str(err.value)

    assert error("/p404") == (
        f"HTTP 404 from Prometheus at {server.url}/p404; is prometheusURL right?"
    )
    assert error("/p302").startswith(f"HTTP 302 from Prometheus at {server.url}/p302: a redirect")
    rejected = error("/perr")
    assert rejected.startswith(f"Prometheus at {server.url}/perr rejected 'up': bad_data: parse")
    assert "internal.example" not in rejected and len(rejected.split("bad_data: ")[1]) <= 200
    assert "did not answer like Prometheus's HTTP API" in error("/phtml")
    for message in (error("/p404"), error("/p302"), error("/phtml")):
        assert BODY.decode() not in message
    assert target.seen == []
    [series] = prometheus.query(f"{server.url}/pok", "up")
    assert series.labels == {"a": "b"} and series.samples == [(1.0, 2.0)]


def test_the_operator_refuses_to_start_with_a_bad_allowlist_entry():
    env = {**os.environ, egress.ENV: "http://prom.monitoring.svc:9090,http://a@b"}
    run = [sys.executable, "-m", "ai_incident_operator.cli", "run", "--webhook-listen", ""]
    for argv, words in (
        ([*run, "--allowed-url", "http://0x7f.1/"], "four decimal numbers"),
        (run, "'http://a@b': no userinfo"),
    ):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and words in done.stderr, done.stderr
