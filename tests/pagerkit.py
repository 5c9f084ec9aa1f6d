"""Local stand-ins for the paging services, speaking their documented request shapes.

`Pager` is one threaded HTTP server on 127.0.0.1 with three receivers:

- `/v2/enqueue`: PagerDuty's Events API v2. A request must be a JSON object with a
  `routing_key` the receiver knows, `event_action` trigger | acknowledge | resolve, a
  `dedup_key` of at most 255 characters, and, for a trigger, `payload.summary` (at most
  1024), `payload.source` and `payload.severity` (critical | error | warning | info);
  no fields PagerDuty does not document. Answered 202 with `dedup_key`, as the service
  does; anything else 400 "invalid event", with the reasons kept in `errors`.
- `/v2/alerts`: Opsgenie's alert API: create (`POST /v2/alerts`: message at most 130,
  alias at most 512, priority P1..P5, tags, details of strings) and acknowledge / close
  (`POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias`), with
  `Authorization: GenieKey <key>` (401 otherwise). Answered 202 with a requestId.
- `/teams/...`: a Microsoft Teams incoming webhook: `type: message` and one Adaptive Card
  attachment. Answered 200 "1".

What was accepted is kept in order (`events`, per service) and the alerts' states follow
(`alerts`: dedup key or alias -> open | acknowledged | resolved), so a test asserts what
the service would show. `fail(path, code, times)` scripts failures.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")
PD_TOP = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client",
          "client_url"}  # fmt: skip
PD_PAYLOAD = {"summary", "source", "severity", "timestamp", "component", "group", "class",
              "custom_details"}  # fmt: skip
OG_CREATE = {"message", "alias", "description", "responders", "visibleTo", "actions", "tags",
             "details", "entity", "source", "priority", "user", "note"}  # fmt: skip
OG_ACTION = {"user", "source", "note"}
OG_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
ADAPTIVE = "application/vnd.microsoft.card.adaptive"


def pagerduty_problems(body: Any, routing_keys: set[str]) -> list[str]:
    """Why BODY is not an Events API v2 alert event PagerDuty would accept ([] if it is)."""
    if not isinstance(body, dict):
        return ["the event is not a JSON object"]
    problems = [f"unknown field {k}" for k in body if k not in PD_TOP]
    if body.get("routing_key") not in routing_keys:
        problems.append("routing_key is not an integration key of this service")
    if body.get("event_action") not in PD_ACTIONS:
        problems.append(f"event_action must be one of {', '.join(PD_ACTIONS)}")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        problems.append("dedup_key must be a string of at most 255 characters")
    if body.get("event_action") in ("acknowledge", "resolve") and not dedup:
        problems.append("acknowledge and resolve need the dedup_key of the alert")
    if body.get("event_action") == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*problems, "a trigger needs a payload object"]
        problems += [f"unknown field payload.{k}" for k in payload if k not in PD_PAYLOAD]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            problems.append("payload.summary must be 1 to 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload.get("source"):
            problems.append("payload.source is required")
        if payload.get("severity") not in PD_SEVERITIES:
            problems.append(f"payload.severity must be one of {', '.join(PD_SEVERITIES)}")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict):
            problems.append("payload.custom_details must be an object")
        for link in body.get("links") or []:
            if not isinstance(link, dict) or not link.get("href"):
                problems.append("each link needs an href")
    return problems


def opsgenie_create_problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["the alert is not a JSON object"]
    problems = [f"unknown field {k}" for k in body if k not in OG_CREATE]
    message = body.get("message")
    if not isinstance(message, str) or not message or len(message) > 130:
        problems.append("message must be 1 to 130 characters")
    alias = body.get("alias")
    if alias is not None and (not isinstance(alias, str) or len(alias) > 512):
        problems.append("alias must be at most 512 characters")
    if len(str(body.get("description") or "")) > 15000:
        problems.append("description must be at most 15000 characters")
    if body.get("priority", "P3") not in OG_PRIORITIES:
        problems.append("priority must be P1..P5")
    tags = body.get("tags") or []
    if (
        not isinstance(tags, list)
        or len(tags) > 20
        or any(not isinstance(t, str) or len(t) > 50 for t in tags)
    ):
        problems.append("tags: at most 20 strings of at most 50 characters")
    details = body.get("details") or {}
    if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
        problems.append("details must map strings to strings")
    if len(str(body.get("source") or "")) > 100:
        problems.append("source must be at most 100 characters")
    return problems


def opsgenie_action_problems(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return ["the request is not a JSON object"]
    problems = [f"unknown field {k}" for k in body if k not in OG_ACTION]
    if len(str(body.get("user") or "")) > 100 or len(str(body.get("source") or "")) > 100:
        problems.append("user and source must be at most 100 characters")
    return problems


def teams_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("type") != "message":
        return ['the "type" field must be "message"']
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments must hold the card"]
    problems = []
    for card in attachments:
        if card.get("contentType") != ADAPTIVE:
            problems.append(f"contentType must be {ADAPTIVE}")
        content = card.get("content") or {}
        if content.get("type") != "AdaptiveCard" or not content.get("version"):
            problems.append("content must be an AdaptiveCard with a version")
        if not isinstance(content.get("body"), list) or not content["body"]:
            problems.append("the card needs a body")
    return problems


class Pager:
    """The three receivers on one port (`url`); ROUTING_KEYS and GENIE_KEYS are accepted."""

    def __init__(self, routing_keys: set[str] | None = None, genie_keys: set[str] | None = None):
        self.routing_keys = set(routing_keys or {"R" * 32})
        self.genie_keys = set(genie_keys or {"genie-key"})
        self.events: dict[str, list[dict[str, Any]]] = {
            "pagerduty": [],
            "opsgenie": [],
            "teams": [],
        }
        self.requests: list[tuple[str, dict[str, str], Any]] = []  # (path, headers, body), all
        self.errors: list[str] = []
        self.alerts: dict[str, str] = {}  # dedup key / alias -> open | acknowledged | resolved
        self._fail: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        pager = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                code, answer = pager._handle(self.path, dict(self.headers), body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def pagerduty_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    @property
    def opsgenie_url(self) -> str:
        return f"{self.url}/v2/alerts"

    def teams_url(self, channel: str = "oncall") -> str:
        return f"{self.url}/teams/{channel}"

    def fail(self, path: str, code: int, times: int = 1) -> None:
        """Answer the next TIMES requests to PATH (a prefix) with CODE."""
        with self._lock:
            self._fail.setdefault(path, []).extend([code] * times)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def actions(self, service: str = "pagerduty") -> list[str]:
        """The accepted events' kinds in order: event_action, or create / acknowledge / close."""
        return [e["action"] for e in self.events[service]]

    # --- the services ---------------------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((path, headers, body))
            for prefix, codes in self._fail.items():
                if path.startswith(prefix) and codes:
                    return codes.pop(0), {"message": "scripted failure"}
            parts = urllib.parse.urlsplit(path)
            if parts.path == "/v2/enqueue":
                return self._pagerduty(body)
            if parts.path.startswith("/v2/alerts"):
                return self._opsgenie(parts, headers, body)
            if parts.path.startswith("/teams/"):
                problems = teams_problems(body)
                if problems:
                    return self._refuse(400, "teams", problems, b"Bad payload")
                self.events["teams"].append({"action": "message", "path": parts.path, "body": body})
                return 200, b"1"
            return 404, {"message": "no such endpoint"}

    def _refuse(self, code: int, service: str, problems: list[str], answer: Any) -> tuple[int, Any]:
        self.errors += [f"{service}: {p}" for p in problems]
        return code, answer

    def _pagerduty(self, body: Any) -> tuple[int, Any]:
        problems = pagerduty_problems(body, self.routing_keys)
        if problems:
            answer = {"status": "invalid event", "message": "Event object is invalid",
                      "errors": problems}  # fmt: skip
            return self._refuse(400, "pagerduty", problems, answer)
        action, dedup = body["event_action"], body.get("dedup_key") or uuid.uuid4().hex
        self.events["pagerduty"].append({"action": action, "dedup_key": dedup, "body": body})
        state = self.alerts.get(dedup)
        if action == "trigger" and state in (None, "resolved"):
            self.alerts[dedup] = "open"
        elif action == "acknowledge" and state == "open":
            self.alerts[dedup] = "acknowledged"
        elif action == "resolve" and state in ("open", "acknowledged"):
            self.alerts[dedup] = "resolved"
        # Acknowledge or resolve without an open alert: accepted and dropped, as PagerDuty does.
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup}

    def _opsgenie(
        self, parts: urllib.parse.SplitResult, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, key = auth.partition(" ")
        if scheme != "GenieKey" or key not in self.genie_keys:
            return self._refuse(401, "opsgenie", ["no valid GenieKey"], {"message": "Unauthorized"})
        segments = parts.path.split("/")  # "", v2, alerts[, identifier, verb]
        accepted = {"result": "Request will be processed", "took": 0.01,
                    "requestId": str(uuid.uuid4())}  # fmt: skip
        if len(segments) == 3:
            problems = opsgenie_create_problems(body)
            if problems:
                return self._refuse(422, "opsgenie", problems, {"message": "; ".join(problems)})
            alias = body.get("alias") or str(uuid.uuid4())
            self.events["opsgenie"].append({"action": "create", "alias": alias, "body": body})
            if self.alerts.get(alias) in (None, "resolved"):
                self.alerts[alias] = "open"
            return 202, accepted
        query = urllib.parse.parse_qs(parts.query)
        if len(segments) != 5 or segments[4] not in ("acknowledge", "close"):
            return 404, {"message": "no such endpoint"}
        if query.get("identifierType") != ["alias"]:
            return self._refuse(404, "opsgenie", ["identifierType=alias missing: read as an id"],
                                {"message": "Alert does not exist"})  # fmt: skip
        problems = opsgenie_action_problems(body)
        if problems:
            return self._refuse(422, "opsgenie", problems, {"message": "; ".join(problems)})
        alias, verb = urllib.parse.unquote(segments[3]), segments[4]
        self.events["opsgenie"].append({"action": verb, "alias": alias, "body": body})
        if verb == "acknowledge" and self.alerts.get(alias) == "open":
            self.alerts[alias] = "acknowledged"
        elif verb == "close" and self.alerts.get(alias) in ("open", "acknowledged"):
            self.alerts[alias] = "resolved"
        return 202, accepted
