"""Issue 15 item 1, live: a severity-1 incident pages PagerDuty, Opsgenie and Teams; `aiincident
ack` reaches them; resolution resolves the page; restarts in between send nothing twice.

The operator runs as a process with its own namespace (where the Secrets with the
PagerDuty URL, its routing key and the Opsgenie key live, shared with the tenant's
namespace); the services are the local receivers of tests/pagerkit.py, which refuse
what the real ones would (the exact request shapes they document).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from ai_incident_operator import kube
from ai_incident_operator.actions import pages
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
from pagerkit import Pager

pytestmark = pytest.mark.integration
AIINCIDENT = Path(sys.executable).parent / "aiincident"
LABELS = {"app.kubernetes.io/part-of": "chat"}
ROUTING = "0123456789abcdef0123456789abcdef"
GENIE = "eb243592-faa2-4ba2-a551q-1afdf565c889"


def aiincident(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIINCIDENT), *args], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )


@pytest.fixture
def home(cluster) -> Iterator[str]:
    """The operator's own namespace, where the Secrets live."""
    name = f"paging-ops-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api()
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture
def pager() -> Iterator[Pager]:
    found = Pager({ROUTING}, {GENIE})
    yield found
    found.close()


def operator(ns: str, home: str, name: str) -> OperatorProcess:
    env = {**OPERATOR_ENV, "AIINCIDENT_NAMESPACE": home}
    return OperatorProcess(name, "--namespace", ns, env=env).start()


def setup(ns: str, home: str, pager: Pager) -> None:
    shared = {"aiincident.io/allowed-namespaces": ns}
    kube.create("Secret", home, {"metadata": {"name": "pagerduty", "annotations": shared},
                                 "stringData": {"url": pager.pagerduty_url,
                                                "routingKey": ROUTING}})  # fmt: skip
    kube.create("Secret", home, {"metadata": {"name": "opsgenie", "annotations": shared},
                                 "stringData": {"apiKey": GENIE}})  # fmt: skip
    kube.create("Deployment", ns, deployment("chat-llm", LABELS, replicas=1))
    spec = {
        "targetSelector": {"matchLabels": LABELS},
        "responses": [{"severity": 1, "actions": [
            {"type": "ScaleToZero"}, {"type": "Notify", "channels": ["oncall", "ops", "room"]}]}],
        "notifications": {"channels": [
            {"name": "oncall", "format": "PagerDuty",
             "webhook": {"urlSecretRef": {"name": "pagerduty", "key": "url"}},
             "routingKeySecretRef": {"name": "pagerduty", "key": "routingKey"}},
            {"name": "ops", "format": "Opsgenie", "webhook": {"url": pager.opsgenie_url},
             "apiKeySecretRef": {"name": "opsgenie", "key": "apiKey"}},
            {"name": "room", "format": "MSTeams", "webhook": {"url": pager.teams_url()}},
        ]},
    }  # fmt: skip
    kube.create("MitigationPolicy", ns, policy_body("chat", spec))


def ready(ns: str) -> bool:
    body = kube.get(Ref("MitigationPolicy", ns, "chat")) or {}
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def status_of(ns: str) -> dict:
    return get_incident(ns, "harm").get("status") or {}


def condition(status: dict, type_: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def a_pass_after(ns: str, what: str) -> None:
    """A spec change, and the operator's pass over it (observedGeneration follows)."""
    body = get_incident(ns, "harm")
    generation = body["metadata"]["generation"]
    kube.patch(Ref("AIIncident", ns, "harm"), {"spec": {"description": what}})
    wait_for(lambda: status_of(ns).get("observedGeneration", 0) > generation, 30, "a pass")


def delivered(ns: str) -> dict:
    """The Notify entry's channels reached, per event."""
    entries = status_of(ns).get("mitigations") or []
    return next((e.get("delivered") or {} for e in entries if e["action"] == "Notify"), {})


def sent(pager: Pager) -> tuple[list[str], list[str], int]:
    return pager.actions("pagerduty"), pager.actions("opsgenie"), len(pager.events["teams"])


def test_page_ack_and_resolve_reach_the_services_once_across_restarts(solo_namespace, home, pager):
    ns = solo_namespace
    setup(ns, home, pager)
    proc = operator(ns, home, "paging-1")
    try:
        wait_for(lambda: ready(ns), 30, f"policy Ready (log: {proc.log_path})")
        create_incident(ns, "harm", {"category": "HarmfulOutput", "severity": 1,
                                     "target": {"name": "chat-llm"}})  # fmt: skip
        wait_for(lambda: status_of(ns).get("phase") == "Mitigated", 30, "Mitigated")
        wait_for(lambda: sent(pager) == (["trigger"], ["create"], 1), 30, "the pages")
        # Sent after the status write, recorded after the answers: the crash comes after that.
        wait_for(lambda: delivered(ns).get("trigger") == ["oncall", "ops", "room"], 30,
                 "the pages recorded")  # fmt: skip
    finally:
        proc.kill()  # a crash: nothing in memory survives
    key = pages.dedup_key(get_incident(ns, "harm")["metadata"])
    trigger = pager.events["pagerduty"][0]["body"]
    assert (trigger["routing_key"], trigger["event_action"], trigger["dedup_key"]) == (
        ROUTING, "trigger", key
    )  # fmt: skip
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["summary"].startswith(f"[SEV1] {ns}/harm HarmfulOutput")
    assert pager.events["opsgenie"][0]["body"]["priority"] == "P1"
    entry = next(e for e in status_of(ns)["mitigations"] if e["action"] == "Notify")
    assert entry["delivered"] == {"trigger": ["oncall", "ops", "room"]}

    proc = operator(ns, home, "paging-2")
    try:
        a_pass_after(ns, "after a restart")
        assert sent(pager) == (["trigger"], ["create"], 1)

        done = aiincident("ack", "harm", "-n", ns, "--by", "alice")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"aiincident {ns}/harm acknowledged by alice"
        wait_for(lambda: sent(pager) == (["trigger", "acknowledge"], ["create", "acknowledge"], 2),
                 30, f"the acknowledgement (log: {proc.log_path})")  # fmt: skip
        status = wait_for(lambda: (s := status_of(ns)) and condition(s, "Acknowledged") and s, 30,
                          "Acknowledged")  # fmt: skip
        wait_for(lambda: len(delivered(ns).get("acknowledge") or []) == 3, 30,
                 "the acknowledgement recorded")  # fmt: skip
    finally:
        proc.stop()
    ack = pager.events["pagerduty"][1]["body"]
    assert ack == {"routing_key": ROUTING, "event_action": "acknowledge", "dedup_key": key}
    og_ack = pager.events["opsgenie"][1]
    assert (og_ack["alias"], og_ack["body"]["user"]) == (key, "alice")
    at = get_incident(ns, "harm")["spec"]["acknowledged"]["at"]
    found = condition(status, "Acknowledged")
    assert (found["status"], found["reason"]) == ("True", "AcknowledgedBy")
    assert found["message"] == f"acknowledged by alice at {at}"
    assert [t["message"] for t in status["timeline"] if t["type"] == "Acknowledged"] == [
        f"acknowledged by alice at {at}"
    ]
    assert pager.alerts == {key: "acknowledged"}

    proc = operator(ns, home, "paging-3")
    try:
        a_pass_after(ns, "after another restart")
        assert sent(pager) == (["trigger", "acknowledge"], ["create", "acknowledge"], 2)
        done = aiincident("resolve", "harm", "-n", ns, "--fix", "template restored")
        assert done.returncode == 0, done.stderr
        wait_for(lambda: status_of(ns).get("phase") == "Resolved", 60, "Resolved")
        wait_for(lambda: len(pager.events["pagerduty"]) == 3, 30, "the resolve")
    finally:
        proc.stop()
    assert sent(pager) == (
        ["trigger", "acknowledge", "resolve"], ["create", "acknowledge", "close"], 3
    )  # fmt: skip
    resolve = pager.events["pagerduty"][2]["body"]
    assert resolve == {"routing_key": ROUTING, "event_action": "resolve", "dedup_key": key}
    assert pager.alerts == {key: "resolved"}
    assert pager.errors == []
    described = aiincident("describe", "harm", "-n", ns).stdout
    assert f"Acknowledged: by alice at {at}" in described
