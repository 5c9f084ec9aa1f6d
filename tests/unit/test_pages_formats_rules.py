"""Issue 15 item 1: the paging formats' requests, exactly as the services document them.

PagerDuty Events API v2 (trigger / acknowledge / resolve with one dedup_key), Opsgenie's
alert API (create / acknowledge / close by alias, GenieKey), a Teams incoming webhook's
Adaptive Card; and the rules that must hold for any incident (hypothesis): the dedup
key is stable, bounded and unique per incident, and every request passes the checks
of the local receivers that stand in for the services (tests/pagerkit.py).
"""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator.actions import notify, pages

from pagerkit import (
    opsgenie_action_problems,
    opsgenie_create_problems,
    pagerduty_problems,
    teams_problems,
)

UID = "0b6f9a2e-6a55-4d55-9a43-1c1d4f6f3e01"
KEY = f"aiincident:prod:harm:{UID}"
ROUTING = "R" * 32
INCIDENT = {
    "apiVersion": "aiincident.io/v1alpha1",
    "kind": "AIIncident",
    "metadata": {"name": "harm", "namespace": "prod", "uid": UID},
    "spec": {
        "category": "HarmfulOutput",
        "severity": 1,
        "title": "Unsafe medical advice",
        "description": "Unsafe medical advice\nreported by support",
        "target": {"name": "chat-llm"},
    },
    "status": {
        "severity": 1,
        "phase": "Mitigating",
        "detectedAt": "2026-03-01T09:00:00Z",
        "targets": [{"kind": "Deployment", "namespace": "prod", "name": "chat-llm"}],
    },
}
TRIGGER_LINE = (
    "[SEV1] prod/harm HarmfulOutput: Unsafe medical advice (Mitigating; Deployment/chat-llm)"
)
ACK_LINE = "[ACK] prod/harm HarmfulOutput: Unsafe medical advice: acknowledged by alice"
RESOLVED_LINE = "[RESOLVED] prod/harm HarmfulOutput: Unsafe medical advice (mitigations undone)"
DETAILS = {
    "incident": "prod/harm",
    "severity": "1",
    "category": "HarmfulOutput",
    "phase": "Mitigating",
    "targets": "Deployment/chat-llm",
    "acknowledge": "aiincident ack harm -n prod",
}


def built(fmt: str, event: str, key: str = "", who: str = "") -> pages.Page:
    page = notify.request(fmt, event, INCIDENT, who=who)
    return pages.keyed(fmt, page, key)


# --- PagerDuty -------------------------------------------------------------------------------


def test_pagerduty_trigger_is_the_documented_alert_event():
    page = built("PagerDuty", "trigger", ROUTING)
    assert (page.path, page.headers) == ("", {})
    assert page.body == {
        "routing_key": ROUTING,
        "event_action": "trigger",
        "dedup_key": KEY,
        "payload": {
            "summary": TRIGGER_LINE,
            "source": "prod/Deployment/chat-llm",
            "severity": "critical",
            "timestamp": "2026-03-01T09:00:00Z",
            "component": "Deployment/chat-llm",
            "group": "prod",
            "class": "HarmfulOutput",
            "custom_details": {
                **DETAILS,
                "description": "Unsafe medical advice\nreported by support",
            },
        },
        "client": "ai-incident-operator",
    }
    assert pagerduty_problems(page.body, {ROUTING}) == []


def test_pagerduty_acknowledge_and_resolve_carry_only_the_key_and_the_action():
    for event in ("acknowledge", "resolve"):
        page = built("PagerDuty", event, ROUTING, who="alice")
        assert page.body == {"routing_key": ROUTING, "event_action": event, "dedup_key": KEY}
        assert pagerduty_problems(page.body, {ROUTING}) == []


def test_pagerduty_severity_follows_the_incidents():
    assert [pages.pagerduty_severity(s) for s in (1, 2, 3, 4)] == [
        "critical", "error", "warning", "info"
    ]  # fmt: skip
    assert pages.pagerduty_severity(None) == "error"  # not yet triaged: neither wake nor hide
    assert pages.pagerduty_severity(7) == "error"
    for severity, expected in ((2, "error"), (3, "warning")):
        incident = {**INCIDENT, "status": {**INCIDENT["status"], "severity": severity}}
        body = notify.request("PagerDuty", "trigger", incident).body
        assert body["payload"]["severity"] == expected


# --- Opsgenie --------------------------------------------------------------------------------


def test_opsgenie_create_is_the_documented_alert_with_the_genie_key():
    page = built("Opsgenie", "trigger", "genie-key")
    assert page.path == ""
    assert page.headers == {"Authorization": "GenieKey genie-key"}
    assert page.body == {
        "message": TRIGGER_LINE,
        "alias": KEY,
        "description": "Unsafe medical advice\nreported by support",
        "priority": "P1",
        "source": "ai-incident-operator",
        "tags": ["aiincident", "severity-1", "HarmfulOutput", "prod"],
        "details": DETAILS,
        "entity": "prod/Deployment/chat-llm",
    }
    assert opsgenie_create_problems(page.body) == []


def test_opsgenie_acknowledge_and_close_name_the_alert_by_alias():
    alias = "aiincident%3Aprod%3Aharm%3A" + UID
    ack = built("Opsgenie", "acknowledge", "genie-key", who="alice")
    assert ack.path == f"/{alias}/acknowledge?identifierType=alias"
    assert ack.headers == {"Authorization": "GenieKey genie-key"}
    assert ack.body == {
        "user": "alice",
        "source": "ai-incident-operator",
        "note": "acknowledged by alice (aiincident ack)",
    }
    close = built("Opsgenie", "resolve", "genie-key")
    assert close.path == f"/{alias}/close?identifierType=alias"
    assert close.body == {
        "user": "ai-incident-operator",
        "source": "ai-incident-operator",
        "note": "resolved: the operator undid its mitigations",
    }
    assert opsgenie_action_problems(ack.body) == opsgenie_action_problems(close.body) == []


def test_opsgenie_priority_follows_the_severity():
    assert [pages.opsgenie_priority(s) for s in (1, 2, 3, 4, 5, None)] == [
        "P1", "P2", "P3", "P4", "P5", "P3"
    ]  # fmt: skip


# --- Microsoft Teams -------------------------------------------------------------------------


def card(page: pages.Page) -> dict:
    (attachment,) = page.body["attachments"]
    assert page.body["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    return attachment["content"]


def test_teams_gets_an_adaptive_card_per_event():
    trigger = built("MSTeams", "trigger")
    assert card(trigger) == {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {"type": "TextBlock", "text": TRIGGER_LINE, "weight": "Bolder", "size": "Medium",
             "wrap": True},
            {"type": "TextBlock", "text": "Unsafe medical advice\nreported by support",
             "wrap": True},
            {"type": "TextBlock", "text": "Acknowledge: `aiincident ack harm -n prod`",
             "wrap": True},
            {"type": "FactSet", "facts": [
                {"title": "Severity", "value": "1"},
                {"title": "Category", "value": "HarmfulOutput"},
                {"title": "Phase", "value": "Mitigating"},
                {"title": "Targets", "value": "Deployment/chat-llm"},
            ]},
        ],
    }  # fmt: skip
    ack = card(built("MSTeams", "acknowledge", who="alice"))["body"]
    assert [b.get("text") for b in ack[:2]] == [ACK_LINE, "Acknowledged by alice."]
    resolved = card(built("MSTeams", "resolve"))["body"]
    assert [b.get("text") for b in resolved[:2]] == [
        RESOLVED_LINE,
        "Resolved: the operator undid its mitigations.",
    ]
    assert teams_problems(trigger.body) == []


# --- Slack and Generic: the acknowledgement ---------------------------------------------------


def test_slack_and_generic_hear_who_acknowledged_and_keep_their_pages():
    assert built("Slack", "acknowledge", who="alice").body == {"text": ACK_LINE}
    generic = built("Generic", "acknowledge", who="alice").body
    assert (generic["event"], generic["by"], generic["incident"]) == (
        "acknowledged",
        "alice",
        "harm",
    )
    assert built("Generic", "trigger").body == notify.payload("Generic", INCIDENT)
    assert built("Slack", "resolve").body == notify.payload("Slack", INCIDENT, resolved=True)


def test_a_message_for_a_paging_channel_lands_on_the_incidents_alert():
    """A contest or escalation message built as a Generic object becomes a trigger of the
    incident's own alert (its dedup key), with the message in the summary."""
    body = {**notify.payload("PagerDuty", INCIDENT), "event": "contested", "message": "reverted"}
    page = notify._as_page("PagerDuty", body)
    assert page.body["event_action"] == "trigger"
    assert page.body["dedup_key"] == KEY
    assert page.body["payload"]["summary"] == f"{TRIGGER_LINE}: reverted"
    approval = notify.approval_payload(
        "Opsgenie", INCIDENT, "aiincident approve harm", ["ScaleToZero"]
    )
    assert isinstance(approval, pages.Page)
    assert approval.body["alias"] == KEY
    assert approval.body["message"].startswith("[SEV1] prod/harm")


def test_the_opsgenie_path_goes_below_the_channels_url():
    extra = "/a%3Ab/close?identifierType=alias"
    assert notify._join("https://api.opsgenie.com/v2/alerts", extra) == (
        "https://api.opsgenie.com/v2/alerts/a%3Ab/close?identifierType=alias"
    )
    assert notify._join("https://api.eu.opsgenie.com/v2/alerts/?x=1", extra) == (
        "https://api.eu.opsgenie.com/v2/alerts/a%3Ab/close?x=1&identifierType=alias"
    )
    assert notify._join("https://h/v2/enqueue", "") == "https://h/v2/enqueue"


# --- Validation -------------------------------------------------------------------------------


def test_a_paging_channel_needs_its_key_ref():
    policy = {"notifications": {"channels": [
        {"name": "pd", "format": "PagerDuty", "webhook": {"url": "https://events.pagerduty.com/v2/enqueue"}},
        {"name": "og", "format": "Opsgenie", "webhook": {"url": "https://api.opsgenie.com/v2/alerts"},
         "routingKeySecretRef": {"name": "og", "key": "key"}},
        {"name": "ok", "format": "PagerDuty", "webhook": {"url": "https://events.pagerduty.com/v2/enqueue"},
         "routingKeySecretRef": {"name": "pd", "key": "routingKey"}},
    ]}}  # fmt: skip
    assert notify.Notify().validate({"channels": ["pd", "og", "ok"]}, policy) == [
        "Notify: channel pd (PagerDuty) needs routingKeySecretRef: its key, from a Secret in "
        "the operator's namespace",
        "Notify: channel og (Opsgenie) needs apiKeySecretRef: its key, from a Secret in the "
        "operator's namespace",
    ]


# --- For any incident ---------------------------------------------------------------------------

NAMES = st.text(string.ascii_lowercase + string.digits + "-.", min_size=1, max_size=253)
NAMESPACES = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=63)
TEXT = st.text(max_size=3000)


@settings(max_examples=200, deadline=None)
@given(NAMESPACES, NAMES, st.uuids())
def test_the_dedup_key_is_bounded_stable_and_names_one_incident(namespace, name, uid):
    meta = {"namespace": namespace, "name": name, "uid": str(uid)}
    key = pages.dedup_key(meta)
    assert key == pages.dedup_key(dict(meta))
    assert len(key) <= 255
    assert key.endswith(f":{uid}") and "/" not in key
    assert key != pages.dedup_key({**meta, "uid": "other"})


@settings(max_examples=150, deadline=None)
@given(
    NAMESPACES,
    NAMES,
    TEXT,
    TEXT,
    st.one_of(st.none(), st.integers(min_value=1, max_value=3)),
    st.sampled_from(["trigger", "acknowledge", "resolve"]),
    st.text(max_size=300),
)
def test_every_request_passes_the_services_checks(
    namespace, name, title, description, severity, event, who
):
    incident = {
        "metadata": {"namespace": namespace, "name": name, "uid": UID},
        "spec": {"category": "HarmfulOutput", "title": title, "description": description},
        "status": {"severity": severity, "targets": [{"kind": "Deployment", "name": "m"}]},
    }
    pd = pages.keyed("PagerDuty", notify.request("PagerDuty", event, incident, who=who), ROUTING)
    assert pagerduty_problems(pd.body, {ROUTING}) == []
    og = pages.keyed("Opsgenie", notify.request("Opsgenie", event, incident, who=who), "k")
    check = opsgenie_create_problems if event == "trigger" else opsgenie_action_problems
    assert check(og.body) == []
    assert og.headers == {"Authorization": "GenieKey k"}
    assert teams_problems(notify.request("MSTeams", event, incident, who=who).body) == []
