"""Alertmanager as the operator's webhook sees it: payloads shaped as version 4, and a client.

Used by the intake's integration and property tests; `Webhook(proc)` posts to an
`OperatorProcess`'s webhook with its bearer token.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ai_incident_operator.intake.mapping import fingerprint


def am_alert(
    status: str = "firing",
    starts: str = "2026-01-01T10:00:00.123456789Z",
    ends: str | None = None,
    annotations: dict[str, str] | None = None,
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager posts it (the fingerprint is Alertmanager's)."""
    labels = {"alertname": "ModelQualityLow", **labels}
    return {
        "status": status,
        "labels": labels,
        "annotations": annotations if annotations is not None else {"summary": "quality is low"},
        "startsAt": starts,
        "endsAt": ends
        or ("0001-01-01T00:00:00Z" if status == "firing" else "2026-01-01T11:00:00Z"),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=ai_model_quality_score",
        "fingerprint": fingerprint(labels),
    }


def am_payload(*alerts: dict[str, Any], receiver: str = "ai-incident-operator") -> dict[str, Any]:
    """A version 4 webhook payload with ALERTS (common labels as Alertmanager computes them)."""
    common: dict[str, str] = {}
    if alerts:
        common = dict(alerts[0]["labels"])
        for a in alerts[1:]:
            common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    firing = any(a["status"] == "firing" for a in alerts)
    return {
        "version": "4",
        "groupKey": '{}/{ai_incident_category=~".+"}:' + json.dumps(common, sort_keys=True),
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {k: v for k, v in common.items() if k in ("namespace", "deployment")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


@dataclass
class Reply:
    status: int
    body: Any  # decoded JSON, or the raw text when it is not JSON
    headers: dict[str, str]


class Webhook:
    """Posts to an operator's webhook, as Alertmanager does."""

    def __init__(self, url: str, token: str | None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token

    @classmethod
    def of(cls, proc: Any) -> Webhook:
        return cls(proc.webhook_url, proc.webhook_token)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                data: Any = json.loads(raw)
            except ValueError:
                data = raw.decode(errors="replace")
            return Reply(resp.status, data, {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def post(
        self,
        payload: Any = None,
        *,
        raw: bytes | Iterable[bytes] | None = None,
        token: str | None = "",
        content_type: str | None = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """POST /api/v1/alerts: PAYLOAD as JSON (or RAW bytes), with the bearer token unless
        TOKEN says otherwise (None: no Authorization header)."""
        sent = dict(headers or {})
        token = self.token if token == "" else token
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        if content_type is not None:
            sent["Content-Type"] = content_type
        data = raw if raw is not None else json.dumps(payload).encode()
        return self.request("POST", "/api/v1/alerts", data, sent)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one series on /metrics (0 when absent)."""
        text = self.get("/metrics").body
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            metric, _, rest = series.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == wanted:
                return float(value)
        return 0.0


def wait_ready(hook: Webhook, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if hook.get("/readyz").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"webhook not ready within {timeout}s")
