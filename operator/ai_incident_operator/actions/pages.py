"""Requests for paging services: PagerDuty Events API v2, Opsgenie alerts, Microsoft Teams.

Pure: `notify` reads the channel's URL and key (Secrets) and posts what these build.
Each incident is one alert on the paging service, named by `dedup_key` (PagerDuty's
`dedup_key`, Opsgenie's `alias`), so that the three events of a page reach the same
alert however often or from wherever they are sent:

- `trigger`: the Notify action is applied (PagerDuty `event_action: trigger`; Opsgenie
  `POST /v2/alerts`; a Teams card);
- `acknowledge`: a person acknowledged it (`aiincident ack`, `spec.acknowledged`);
  PagerDuty `acknowledge`; Opsgenie `POST /v2/alerts/{alias}/acknowledge?identifierType=alias`;
- `resolve`: its undo (the incident is resolved); PagerDuty `resolve`; Opsgenie
  `POST /v2/alerts/{alias}/close?identifierType=alias`.

The channel's URL is PagerDuty's enqueue endpoint (https://events.pagerduty.com/v2/enqueue),
Opsgenie's alerts endpoint (https://api.opsgenie.com/v2/alerts, or api.eu.opsgenie.com),
or the Teams incoming webhook. The key is PagerDuty's integration (routing) key, in the
body, or Opsgenie's API integration key, sent as `Authorization: GenieKey <key>`; the
builders leave it out and `keyed` puts it in, so that only the sender handles a secret.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any

TRIGGER, ACKNOWLEDGE, RESOLVE = "trigger", "acknowledge", "resolve"
EVENTS = (TRIGGER, ACKNOWLEDGE, RESOLVE)
PAGERDUTY, OPSGENIE, MSTEAMS = "PagerDuty", "Opsgenie", "MSTeams"
FORMATS = (PAGERDUTY, OPSGENIE, MSTEAMS)
# Formats whose service folds a repeated event into the one alert (its dedup key, alias).
DEDUPLICATED = (PAGERDUTY, OPSGENIE)
# Where each keyed format's key is named in its channel.
KEY_REFS = {PAGERDUTY: "routingKeySecretRef", OPSGENIE: "apiKeySecretRef"}
SOURCE = "ai-incident-operator"
DEDUP_LIMIT = 255  # PagerDuty's limit for dedup_key (Opsgenie's alias allows 512)
PD_SEVERITY = {1: "critical", 2: "error", 3: "warning", 4: "info"}
PD_UNKNOWN = "error"  # a severity not (yet) known neither wakes people as critical nor hides
OG_PRIORITY = {1: "P1", 2: "P2", 3: "P3", 4: "P4", 5: "P5"}
OG_UNKNOWN = "P3"  # Opsgenie's own default
# Opsgenie's documented limits (characters).
OG_MESSAGE, OG_DESCRIPTION, OG_TAG, OG_TAGS, OG_DETAIL, OG_USER = 130, 15000, 50, 20, 1000, 100
PD_SUMMARY = 1024
TEAMS_TEXT = 2000  # a card is read, not scrolled


@dataclass(frozen=True)
class Page:
    """One request: BODY posted (JSON) to the channel's URL + PATH, with HEADERS."""

    body: dict[str, Any]
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)


def dedup_key(metadata: dict[str, Any]) -> str:
    """`aiincident:<namespace>:<name>:<uid>`, at most 255 characters (the uid always kept).

    No '/': Opsgenie's alias is a path segment of its acknowledge and close URLs.
    """
    namespace = str(metadata.get("namespace") or "")
    name = str(metadata.get("name") or "")
    uid = str(metadata.get("uid") or "")
    key = f"aiincident:{namespace}:{name}:{uid}"
    if len(key) > DEDUP_LIMIT:  # names of up to 253 characters: shorten the name, never the uid
        room = DEDUP_LIMIT - len(f"aiincident:{namespace}::{uid}")
        key = f"aiincident:{namespace}:{name[: max(room, 0)]}:{uid}"[-DEDUP_LIMIT:]
    return key


def pagerduty_severity(severity: Any) -> str:
    return PD_SEVERITY.get(severity, PD_UNKNOWN) if isinstance(severity, int) else PD_UNKNOWN


def opsgenie_priority(severity: Any) -> str:
    return OG_PRIORITY.get(severity, OG_UNKNOWN) if isinstance(severity, int) else OG_UNKNOWN


def _cut(text: Any, limit: int) -> str:
    text = str(text if text is not None else "")
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _details(facts: dict[str, Any], ack: str) -> dict[str, str]:
    """The incident's facts as string values (Opsgenie's details are string to string)."""
    details = {
        "incident": f"{facts['namespace']}/{facts['incident']}",
        "severity": str(facts["severity"] if facts["severity"] is not None else "unknown"),
        "category": facts["category"] or "",
        "phase": facts["phase"] or "",
        "targets": ", ".join(facts["targets"]),
        "acknowledge": ack,
    }
    return {k: _cut(v, OG_DETAIL) for k, v in details.items() if v}


def ack_command(facts: dict[str, Any]) -> str:
    return f"aiincident ack {facts['incident']} -n {facts['namespace']}"


def keyed(fmt: str, page: Page, key: str) -> Page:
    """PAGE with the channel's KEY: PagerDuty's routing_key, Opsgenie's GenieKey header."""
    if fmt == PAGERDUTY:
        return Page({"routing_key": key, **page.body}, page.path, page.headers)
    if fmt == OPSGENIE:
        return Page(page.body, page.path, {**page.headers, "Authorization": f"GenieKey {key}"})
    return page


def pagerduty(
    event: str, facts: dict[str, Any], *, key: str, summary: str, timestamp: str | None = None
) -> Page:
    """An Events API v2 alert event: a trigger with the payload, an acknowledge or resolve
    with dedup_key and event_action only (as PagerDuty documents them); `keyed` adds the
    routing_key."""
    body: dict[str, Any] = {"event_action": event, "dedup_key": key}
    if event != TRIGGER:
        return Page(body)
    where = f"{facts['namespace']}/{facts['incident']}"
    payload: dict[str, Any] = {
        "summary": _cut(summary, PD_SUMMARY),
        # "The unique location of the affected system": the model workload, else the incident.
        "source": f"{facts['namespace']}/{facts['targets'][0]}" if facts["targets"] else where,
        "severity": pagerduty_severity(facts["severity"]),
    }
    if timestamp:
        payload["timestamp"] = timestamp
    if facts["targets"]:
        payload["component"] = facts["targets"][0]
    payload["group"] = facts["namespace"]
    if facts["category"]:
        payload["class"] = facts["category"]
    payload["custom_details"] = {
        **_details(facts, ack_command(facts)),
        **({"description": _cut(facts["description"], 4000)} if facts["description"] else {}),
    }
    return Page({**body, "payload": payload, "client": SOURCE})


def opsgenie(event: str, facts: dict[str, Any], *, key: str, summary: str, who: str = "") -> Page:
    """Opsgenie's create alert, or acknowledge / close of the alert whose alias is KEY;
    `keyed` adds the GenieKey header."""
    if event == TRIGGER:
        tags = [
            "aiincident",
            f"severity-{facts['severity']}",
            facts["category"],
            facts["namespace"],
        ]
        body = {
            "message": _cut(summary, OG_MESSAGE),
            "alias": key,
            "description": _cut(facts["description"] or summary, OG_DESCRIPTION),
            "priority": opsgenie_priority(facts["severity"]),
            "source": SOURCE,
            "tags": [_cut(t, OG_TAG) for t in tags if t][:OG_TAGS],
            "details": _details(facts, ack_command(facts)),
        }
        if facts["targets"]:
            body["entity"] = _cut(f"{facts['namespace']}/{facts['targets'][0]}", 512)
        return Page(body)
    verb = "acknowledge" if event == ACKNOWLEDGE else "close"
    path = f"/{urllib.parse.quote(key, safe='')}/{verb}?identifierType=alias"
    if event == ACKNOWLEDGE:
        note = f"acknowledged by {who} (aiincident ack)" if who else "acknowledged"
        body = {"user": _cut(who or SOURCE, OG_USER), "source": SOURCE, "note": note}
    else:
        body = {
            "user": SOURCE,
            "source": SOURCE,
            "note": "resolved: the operator undid its mitigations",
        }
    return Page(body, path)


def msteams(event: str, facts: dict[str, Any], *, summary: str, who: str = "") -> Page:
    """An incoming-webhook message with one Adaptive Card, as Teams documents it."""
    if event == TRIGGER:
        lines = [_cut(facts["description"], TEAMS_TEXT)] if facts["description"] else []
        lines.append(f"Acknowledge: `{ack_command(facts)}`")
    elif event == ACKNOWLEDGE:
        lines = [f"Acknowledged by {who}." if who else "Acknowledged."]
    else:
        lines = ["Resolved: the operator undid its mitigations."]
    facts_set = [
        {"title": title, "value": str(value)}
        for title, value in (
            ("Severity", facts["severity"]),
            ("Category", facts["category"]),
            ("Phase", facts["phase"]),
            ("Targets", ", ".join(facts["targets"])),
        )
        if value not in (None, "")
    ]
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": _cut(summary, 400), "weight": "Bolder", "size": "Medium",
         "wrap": True},
        *({"type": "TextBlock", "text": line, "wrap": True} for line in lines),
    ]  # fmt: skip
    if facts_set:
        body.append({"type": "FactSet", "facts": facts_set})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": body,
    }
    return Page({
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}
        ],
    })  # fmt: skip
