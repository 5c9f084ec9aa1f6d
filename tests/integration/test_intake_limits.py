"""The Alertmanager intake's bounds (issue 11, findings 7, 8, 9 and 11), end to end.

Each test starts its own `aiincident run` with the bounds under test (a real process,
real HTTP, a real apiserver), so that one test's budget is not another's: the reach of
the webhook and of each token, the limits per request and per minute, the unmapped cap,
read deadlines and the connection cap, JSON answers that quote nothing, /metrics apart,
and namespaced RBAC answered as 403 rather than 503.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
import test_chart as chart
import yaml

from ai_incident_operator import kube
from ai_incident_operator.intake import mapping
from ai_incident_operator.kube import Ref

from alertkit import Webhook, am_alert, am_payload
from kit import OPERATOR_ENV, OperatorProcess, free_port, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def namespaces(cluster) -> Iterator[Callable[[], str]]:
    """Makes fresh namespaces (`solo-*`: no session operator watches them); removed after."""
    core, custom = kubernetes.client.CoreV1Api(), kubernetes.client.CustomObjectsApi()
    made: list[str] = []

    def make() -> str:
        name = f"solo-{uuid.uuid4().hex[:8]}"
        core.create_namespace({"metadata": {"name": name}})
        made.append(name)
        return name

    yield make
    for name in made:
        for item in kube.list_objects("AIIncident", name):
            custom.patch_namespaced_custom_object(
                "aiincident.io", "v1alpha1", name, "aiincidents", item["metadata"]["name"],
                {"metadata": {"finalizers": None}},
            )  # fmt: skip
        core.delete_namespace(name)


def start(name: str, home: str, *args: str, env: dict | None = None) -> OperatorProcess:
    """`aiincident run` filing unmapped alerts in HOME, ready to take alerts."""
    proc = OperatorProcess(
        name, *args, env={**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": home, **(env or {})}
    ).start()
    wait_for(proc.webhook_ready, 30, f"webhook ready (log: {proc.log_path})")
    return proc


def incidents(ns: str) -> list[dict]:
    return kube.list_objects("AIIncident", ns)


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send DATA on a new connection and read until the server closes it (or TIMEOUT)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def split(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


# --- 7. the webhook's reach ----------------------------------------------------------------------


def test_alerts_open_incidents_only_within_the_webhooks_and_the_tokens_reach(namespaces, tmp_path):
    a, b, c, home = (namespaces() for _ in range(4))
    unwatched = f"solo-{uuid.uuid4().hex[:8]}"  # allowed by the webhook, not watched
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# who may send what\nadmin-token\nteam-a-token {a}\n")
    watch = [arg for ns in (a, b, c, home) for arg in ("--namespace", ns)]
    proc = start(
        "intake-reach", home, *watch, "--webhook-namespaces", f"{a},{b}",
        "--webhook-namespaces", unwatched, "--webhook-token-file", str(tokens),
    )  # fmt: skip
    admin, team = (
        Webhook(proc.webhook_url, "admin-token"),
        Webhook(proc.webhook_url, "team-a-token"),
    )
    try:
        sent = [am_alert(namespace=ns, deployment="chat-llm") for ns in (a, b, c, unwatched)]
        reply = admin.post(am_payload(*sent))
        assert reply.status == 200, reply.body
        assert [d["namespace"] for d in reply.body["incidents"]] == [a, b]
        assert reply.body["rejected"] == 2
        refused = {p["field"]: p["problem"] for p in reply.body["problems"]}
        assert refused.keys() == {"alerts[2].labels.namespace", "alerts[3].labels.namespace"}
        assert (
            f"--webhook-namespaces allows only {a}, {b}, {unwatched}"
            in refused["alerts[2].labels.namespace"]
        )
        assert (
            "--namespace (the namespaces the operator watches)"
            in refused["alerts[3].labels.namespace"]
        )
        # Nothing of the payload is taken: 403, with the reason.
        alone = admin.post(am_payload(am_alert(namespace=c, deployment="db")))
        assert alone.status == 403 and alone.body["field"] == "alerts[0].labels.namespace"
        assert not incidents(c)
        # A token with namespaces of its own reaches only those.
        denied = team.post(am_payload(am_alert(namespace=b, deployment="other", pod="p")))
        assert denied.status == 403, denied.body
        assert f"the sender's token allows only {a}" in denied.body["problem"]
        assert [i["spec"]["target"]["name"] for i in incidents(b)] == ["chat-llm"]
        mine = team.post(am_payload(am_alert(namespace=a, deployment="mine")))
        assert mine.status == 200 and mine.body["incidents"][0]["namespace"] == a
        # An alert that names no namespace is unmapped, as before: no target, home.
        stray = team.post(am_payload(am_alert(deployment="nowhere")))
        assert stray.status == 200 and stray.body["incidents"][0]["namespace"] == home
        assert admin.post(am_payload(sent[0]), token="team-b-token").status == 403
    finally:
        proc.stop()


# --- 8. unbounded work from one request -------------------------------------------------------------


def test_a_request_is_bounded_in_alerts_and_bytes(namespaces):
    ns, home = namespaces(), namespaces()
    proc = start("intake-request-limits", home, "--namespace", ns, "--namespace", home,
                 "--webhook-max-alerts", "20", "--webhook-max-body-bytes", "65536")  # fmt: skip
    hook = Webhook.of(proc)
    try:
        many = [am_alert(namespace=ns, deployment=f"d{i}") for i in range(21)]
        reply = hook.post(am_payload(*many))
        assert reply.status == 413 and reply.body["field"] == "alerts", reply.body
        assert "set max_alerts: 20 in Alertmanager's webhook_config" in reply.body["problem"]
        big = am_alert(namespace=ns, deployment="big", annotations={"description": "x" * 70000})
        reply = hook.post(am_payload(big))
        assert reply.status == 413 and reply.body["field"] == "body"
        assert "at most 65536 bytes" in reply.body["problem"]
        assert not incidents(ns)
        assert hook.post(am_payload(*many[:20])).status == 200
        assert len(incidents(ns)) == 20
    finally:
        proc.stop()


def test_new_incidents_per_minute_are_bounded_and_nothing_accepted_is_lost(namespaces):
    ns, home = namespaces(), namespaces()
    proc = start("intake-rate", home, "--namespace", ns, "--namespace", home,
                 "--webhook-incidents-per-minute", "6")  # fmt: skip
    hook = Webhook.of(proc)
    try:
        storm = [am_alert(namespace=ns, deployment=f"d{i}") for i in range(8)]
        reply = hook.post(am_payload(*storm))
        assert reply.status == 429, reply.body
        assert 1 <= int(reply.headers["retry-after"]) <= 11
        assert [d["result"] for d in reply.body["incidents"]] == ["created"] * 6
        opened = {i["spec"]["target"]["name"] for i in incidents(ns)}
        assert len(opened) == 6
        # Alerts of an existing incident are never refused by the budget.
        first = sorted(opened)[0]
        more = am_alert(namespace=ns, deployment=first, pod="p2")
        folded = hook.post(am_payload(more))
        assert folded.status == 200 and folded.body["incidents"][0]["result"] == "updated"
        # As Alertmanager does: send the whole payload again after Retry-After.
        deadline = time.monotonic() + 90
        while reply.status == 429 and time.monotonic() < deadline:
            time.sleep(int(reply.headers["retry-after"]))
            reply = hook.post(am_payload(*storm))
        assert reply.status == 200, reply.body
        found = {i["spec"]["target"]["name"]: i for i in incidents(ns)}
        assert set(found) == {f"d{i}" for i in range(8)}
        held = {a["fingerprint"] for i in found.values() for a in i["spec"]["alerts"]}
        assert held == {a["fingerprint"] for a in [*storm, more]}
        assert hook.metric("aiincident_alerts_received_total", result="limited") >= 2
    finally:
        proc.stop()


def test_unmapped_alerts_beyond_the_cap_are_counted_in_one_record(namespaces):
    home = namespaces()
    proc = start("intake-unmapped-cap", home, "--namespace", home, "--webhook-max-unmapped", "2")
    hook = Webhook.of(proc)
    try:
        strays = [am_alert(alertname=f"Stray{i}", deployment=f"d{i}") for i in range(5)]
        reply = hook.post(am_payload(*strays))
        assert reply.status == 200, reply.body
        assert len({d["name"] for d in reply.body["incidents"]}) == 3
        kept = incidents(home)
        more = [i for i in kept if mapping.MORE_ANNOTATION in i["metadata"]["annotations"]]
        assert len(kept) == 3 and len(more) == 1
        (record,) = more
        assert record["metadata"]["annotations"][mapping.MORE_ANNOTATION] == "3"
        assert (
            "max unmapped incidents"
            in record["metadata"]["annotations"][mapping.UNMAPPED_ANNOTATION]
        )
        assert "target" not in record["spec"]
        # A resend counts nothing twice.
        assert hook.post(am_payload(*strays)).status == 200
        assert len(incidents(home)) == 3
        again = kube.get(Ref("AIIncident", home, record["metadata"]["name"]))
        assert again["metadata"]["annotations"][mapping.MORE_ANNOTATION] == "3"
    finally:
        proc.stop()


# --- 9. slow and odd clients -------------------------------------------------------------------------


def test_slow_clients_time_out_and_connections_are_capped(namespaces):
    home = namespaces()
    proc = start("intake-slow", home, "--namespace", home, "--webhook-read-timeout", "1",
                 "--webhook-max-connections", "4")  # fmt: skip
    port, hook = proc.webhook_port, Webhook.of(proc)
    try:
        # Headers dribbled, never finished: a JSON 408, then closed.
        started = time.monotonic()
        status, headers, body = split(
            raw_exchange(port, b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\n")
        )
        assert (status, body["field"]) == (408, "headers") and headers["connection"] == "close"
        assert time.monotonic() - started < 5
        # A body that stops short of its Content-Length: the same.
        partial = (
            f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {proc.webhook_token}"
            '\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"alerts"'
        ).encode()
        status, _, body = split(raw_exchange(port, partial))
        assert (status, body["field"]) == (408, "body")
        # Beyond the cap a new connection is told so at once; the others are not harmed.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        try:
            time.sleep(0.2)
            status, headers, body = split(raw_exchange(port, b"GET /healthz HTTP/1.1\r\n\r\n"))
            assert (status, body["field"], headers["retry-after"]) == (503, "connection", "5")
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: hook.get("/healthz").status == 200, 10, "connections freed")
        # (At least once: until the closes are processed the cap may refuse the next too.)
        assert hook.metric("aiincident_webhook_connections_closed_total", reason="too_many") >= 1
        assert (
            hook.metric("aiincident_webhook_connections_closed_total", reason="header_timeout") >= 1
        )
    finally:
        proc.stop()


def test_malformed_requests_get_json_that_quotes_no_header(namespaces):
    home = namespaces()
    proc = start("intake-malformed", home, "--namespace", home)
    token = proc.webhook_token
    try:
        for bad in (
            f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\x01\r\n\r\n",
            f"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization : Bearer {token}\r\n\r\n",
            f"POST /api/v1/alerts HTTP/1.1\r\nAuthorization: Bearer {token}\r\nX: {'a' * 9000}\r\n\r\n",
        ):
            answer = raw_exchange(proc.webhook_port, bad.encode())
            assert token.encode() not in answer
            status, headers, body = split(answer)
            assert status == 400 and headers["content-type"].startswith("application/json")
            assert body["error"] == "bad request" and body["field"] == "request"
        time.sleep(0.2)  # the log line is written after the answer
        assert token not in proc.log_path.read_text(errors="replace")
    finally:
        proc.stop()


def test_a_503_and_readyz_name_neither_the_apiserver_nor_the_account(cluster, tmp_path):
    doc = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    port = free_port()
    for c in doc["clusters"]:
        c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "kubeconfig"
    dead.write_text(yaml.safe_dump(doc))
    proc = OperatorProcess("intake-quiet-503", "--namespace", "nothing-*",
                           env={"KUBECONFIG": str(dead)}).start()  # fmt: skip
    try:
        client = Webhook.of(proc)
        for answer in (
            client.get("/readyz"),
            client.post(am_payload(am_alert(namespace="nothing-prod", deployment="chat-llm"))),
        ):
            assert answer.status == 503, answer.body
            text = json.dumps(answer.body)
            assert str(port) not in text and "127.0.0.1" not in text and "https" not in text
        assert "apiserver" in client.get("/readyz").body["reason"]
    finally:
        proc.stop()
    assert str(port) in proc.log_path.read_text(errors="replace")  # the log says where


def test_metrics_can_listen_apart_and_require_the_token(namespaces):
    home = namespaces()
    metrics_port = free_port()
    proc = start("intake-metrics", home, "--namespace", home, "--metrics-listen",
                 f"127.0.0.1:{metrics_port}", "--metrics-require-token")  # fmt: skip
    try:
        assert Webhook.of(proc).get("/metrics").status == 404
        apart = Webhook(f"http://127.0.0.1:{metrics_port}", proc.webhook_token)
        assert apart.get("/metrics").status == 401
        scraped = apart.request(
            "GET", "/metrics", headers={"Authorization": f"Bearer {proc.webhook_token}"}
        )
        assert scraped.status == 200 and "aiincident_webhook_requests" in scraped.body
    finally:
        proc.stop()


# --- 11. namespaced RBAC mode --------------------------------------------------------------------------


@pytest.fixture
def namespaced_release(cluster, namespaces) -> Iterator[tuple[str, str]]:
    """The chart installed with rbac.namespaced for one namespace; (watched, another)."""
    watched, other = namespaces(), namespaces()
    chart.install("rbac.namespaced=true", f"watchNamespaces={{{watched}}}")
    try:
        yield watched, other
    finally:
        chart.helm("uninstall", chart.RELEASE, "--namespace", chart.RELEASE_NS, check=False)
        core = kubernetes.client.CoreV1Api()
        for item in kube.list_objects("AIIncident", chart.RELEASE_NS):
            kube.patch(Ref("AIIncident", chart.RELEASE_NS, item["metadata"]["name"]),
                       {"metadata": {"finalizers": None}})  # fmt: skip
        core.delete_namespace(chart.RELEASE_NS)
        wait_for(lambda: chart.RELEASE_NS not in
                 {n.metadata.name for n in core.list_namespace().items}, 60, "release ns gone")  # fmt: skip


def test_namespaced_rbac_answers_403_not_503_and_stays_ready(
    namespaced_release, local_cluster, tmp_path
):
    watched, other = namespaced_release
    kubeconfig = chart.sa_kubeconfig(local_cluster, tmp_path)
    token = chart.token_of_release()
    # As the chart runs it: --namespace WATCHED. And as a misconfigured one: watching OTHER
    # too, where its Role was never granted, so that the apiserver answers 403.
    proc = chart.run_as_sa("chart-sa-intake-namespaced", kubeconfig, watched)
    try:
        wait_for(proc.webhook_ready, 30, f"webhook ready (log: {proc.log_path})")
        hook = Webhook(proc.webhook_url, token)
        mine = hook.post(am_payload(am_alert(namespace=watched, deployment="chat-llm")))
        assert mine.status == 200 and mine.body["incidents"][0]["namespace"] == watched
        # Unmapped alerts go to the operator's namespace, which its Roles cover.
        stray = hook.post(am_payload(am_alert(deployment="nowhere")))
        assert stray.status == 200, stray.body
        assert stray.body["incidents"][0]["namespace"] == chart.RELEASE_NS
        elsewhere = hook.post(am_payload(am_alert(namespace=other, deployment="chat-llm")))
        assert elsewhere.status == 403 and "--namespace" in elsewhere.body["problem"]
        assert proc.webhook_ready()
    finally:
        proc.stop()
    wide = chart.run_as_sa("chart-sa-intake-unroled", kubeconfig, watched, other)
    try:
        wait_for(wide.webhook_ready, 30, f"webhook ready (log: {wide.log_path})")
        hook = Webhook(wide.webhook_url, token)
        for _ in range(3):  # a resend is refused the same way: it is not "unavailable"
            refused = hook.post(am_payload(am_alert(namespace=other, deployment="chat-llm")))
            assert refused.status == 403, refused.body
            assert refused.body["problem"] == (
                f"the operator may not write AIIncidents in namespace {other}: grant its Role "
                f"there or add {other} to watchNamespaces"
            )
            assert "serviceaccount" not in json.dumps(refused.body)
            assert wide.webhook_ready()
        mixed = hook.post(am_payload(am_alert(namespace=watched, deployment="chat-llm", pod="p"),
                                     am_alert(namespace=other, deployment="x")))  # fmt: skip
        assert mixed.status == 200 and mixed.body["rejected"] == 1
        assert [d["namespace"] for d in mixed.body["incidents"]] == [watched]
    finally:
        wide.stop()
