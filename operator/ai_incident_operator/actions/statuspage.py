"""StatusPage: tell affected users, on a status page, that the service is disrupted.

An incident is opened on an Atlassian Statuspage page (its incidents API: POST
`{page}/incidents`, then PATCH `{page}/incidents/{id}`, `Authorization: OAuth <key>`)
or posted to a Generic webhook. What users read comes from the policy only (`title`,
`message`, `messages: {investigating, mitigated, resolved}`), never from the incident:
its title, workloads, namespaces and queries are internal. The page follows the
incident's phase: `investigating` when opened, `identified` once mitigated (`monitoring`
if a pass applies it while resolution is verified); undo is the `resolved` update, sent
with the other last words (the pages, traffic) once the model is back.

The page's incident id (what Statuspage answered) and the status last posted are kept
in the action's status entry (`page`, with the Secret references, never their values),
so every update goes to the same incident, nothing is opened twice after a restart,
and the resolve still goes out when the policy is gone. Before the open, one pass records
the intent there (when, which process); the next sends it. An intent found without a
result that this process did not just make (a crash after the POST) looks at the page's
unresolved incidents first and takes the one it opened. URLs and keys come from
Secrets in the operator's namespace under the same rules as Notify's
(`notify.channel_url`). Of an answer, only its status code and the id are kept.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import egress
from ..access import Access
from ..conditions import now_iso
from ..times import parse_time
from .base import Action, ActionContext, Outcome
from .notify import _OPENER, TIMEOUT, USER_AGENT, NotifyError, channel_url

FORMATS = ("Statuspage", "Generic")
# The incident's phase -> the step users see; the step -> Statuspage's incident status.
STEPS = {"investigating": "investigating", "mitigated": "identified", "verifying": "monitoring"}
DEFAULT_TITLE = "Degraded service"
DEFAULT_MESSAGES = {
    "investigating": "We are investigating a problem with this service. Some answers may be "
    "unavailable or of lower quality.",
    "mitigated": "We have identified the problem and put a safeguard in place while we work on "
    "a fix. Some answers may be unavailable.",
    "verifying": "A fix is in place and we are monitoring the results.",
    "resolved": "This incident has been resolved. The service is operating normally.",
}
MESSAGE_KEYS = ("investigating", "mitigated", "resolved")  # the policy's messages (the CRD's)
IMPACT = {1: "major", 2: "minor", 3: "minor"}  # Statuspage's impact_override, by severity
COMPONENT = {1: "major_outage", 2: "partial_outage", 3: "degraded_performance"}
RECHECK = 5.0  # seconds: opened before the response took hold; look again to update it
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
PAGE = "page"  # the status entry's field
PROCESS = uuid.uuid4().hex[:12]  # whose intent an entry records
INTENT_RECHECK = 0.2  # seconds: the pass after the intent's status write opens the incident
_attempted: set[tuple[str, str]] = set()  # (incident uid, key) opened by this process
# Page incidents this process resolved: a pass whose status write conflicts runs again from
# a fresh read, where the entry is not yet Reverted; the "resolved" is not sent twice.
_resolved: set[tuple[str, str]] = set()  # (incident uid, page incident id)
_lock = threading.Lock()


class PageError(Exception):
    """The page could not be reached; the words say why, without the URL or the key.

    UNKNOWN: the request may have arrived and been acted on (no answer, a dropped
    connection, a gateway error): a create must not simply be sent again.
    """

    def __init__(self, words: str, unknown: bool = False) -> None:
        super().__init__(words)
        self.unknown = unknown


# --- What users read (pure) ---------------------------------------------------------------


def step_of(incident: dict[str, Any]) -> str:
    """Where the incident is, in users' words: investigating, mitigated or verifying."""
    phase = (incident.get("status") or {}).get("phase")
    if phase == "Mitigated":
        return "mitigated"
    if phase == "Resolving":
        return "verifying"
    return "investigating"


def message(spec: dict[str, Any], step: str) -> str:
    """The policy's words for STEP (`messages.STEP`; `message` when opened), else a default."""
    given = (spec.get("messages") or {}).get(step)
    if not given and step == "investigating":
        given = spec.get("message")
    return str(given or DEFAULT_MESSAGES[step])


def title(spec: dict[str, Any]) -> str:
    return str(spec.get("title") or DEFAULT_TITLE)


def statuspage_open(spec: dict[str, Any], step: str, severity: int | None) -> dict[str, Any]:
    """The body of Statuspage's "create an incident" (POST /v1/pages/{page_id}/incidents)."""
    incident: dict[str, Any] = {
        "name": title(spec),
        "status": STEPS[step],
        "body": message(spec, step),
        "impact_override": IMPACT.get(severity or 2, "minor"),
    }
    ids = list((spec.get("page") or {}).get("componentIds") or [])
    if ids:
        incident["component_ids"] = ids
        incident["components"] = {i: COMPONENT.get(severity or 2, "partial_outage") for i in ids}
    return {"incident": incident}


def statuspage_update(spec: dict[str, Any], step: str) -> dict[str, Any]:
    """The body of Statuspage's "update an incident" (PATCH .../incidents/{incident_id})."""
    status = "resolved" if step == "resolved" else STEPS[step]
    incident: dict[str, Any] = {"status": status, "body": message(spec, step)}
    ids = list((spec.get("page") or {}).get("componentIds") or [])
    if ids and step == "resolved":
        incident["components"] = {i: "operational" for i in ids}
    return {"incident": incident}


def generic(spec: dict[str, Any], step: str, key: str, severity: int | None) -> dict[str, Any]:
    """A Generic webhook's body: KEY names the incident across its updates."""
    status = "resolved" if step == "resolved" else STEPS[step]
    return {
        "event": "resolved" if step == "resolved" else "incident",
        "key": key,
        "status": status,
        "title": title(spec),
        "message": message(spec, step),
        "severity": severity,
    }


# --- Calls --------------------------------------------------------------------------------


def call(
    method: str,
    url: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
    *,
    idempotent: bool,
    timeout: float = TIMEOUT,
    backoff: Sequence[float] = (0.5, 1.0),
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, Any]:
    """METHOD BODY as JSON to URL; (status code, the answer's JSON, {} if it has none).

    Not IDEMPOTENT (a create): retried only when the request surely did not arrive
    (connection refused, 429, 503), so a slow answer never opens a second incident.
    Raises PageError with words fit for a status: no URL, no key, no answer text.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PageError("the URL is not an http(s) URL")
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    reason, unknown = "", False
    for attempt in range(len(backoff) + 1):
        if attempt:
            sleep(backoff[attempt - 1])
        request = urllib.request.Request(url, data=data, headers=sent, method=method)
        try:
            with _OPENER.open(request, timeout=timeout) as resp:
                raw = resp.read(65536)
                if not 200 <= resp.status < 300:
                    raise PageError(f"HTTP {resp.status}")
                return resp.status, _json(raw)
        except urllib.error.HTTPError as err:
            err.close()  # its body is the service's words: never kept
            reason = f"HTTP {err.code}"
            if 300 <= err.code < 400:
                reason += " (a redirect, not followed)"
            retry = err.code in (429, 503) or (idempotent and err.code >= 500)
            unknown = err.code in (500, 502, 504)  # a proxy's or a crash's: it may have been done
        except urllib.error.URLError as err:
            # Refused, or the name did not resolve: nothing was sent.
            unsent = isinstance(err.reason, ConnectionRefusedError | socket.gaierror)
            reason = egress.sanitise(str(err.reason).replace(url, "<url>"), 120)
            retry, unknown = idempotent or unsent, not unsent
        except TimeoutError:
            reason = f"no answer within {timeout:g}s"
            retry, unknown = idempotent, True
        except OSError as err:  # a dropped connection: the request may have been read
            reason = f"{type(err).__name__}: {egress.sanitise(str(err).replace(url, '<url>'), 120)}"
            retry, unknown = idempotent, True
        if not retry:
            raise PageError(reason, unknown)
    raise PageError(f"{reason} (after {len(backoff) + 1} tries)", unknown)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {}


def answered_id(answer: Any) -> str:
    """The incident id an answer names, if it looks like one ('' otherwise)."""
    value = answer.get("id") if isinstance(answer, dict) else None
    if isinstance(value, int | str) and _ID.match(str(value)):
        return str(value)
    return ""


def adoptable(answer: Any, name: str, since: str) -> str:
    """The id of the unresolved incident in ANSWER (Statuspage's list) that an unseen open
    made: named NAME, created at SINCE or later (the earliest); '' for none."""
    start = parse_time(since)
    found = []
    for incident in answer if isinstance(answer, list) else []:
        if not isinstance(incident, dict) or incident.get("name") != name:
            continue
        created = parse_time(incident.get("created_at"))
        if start and created and created < start - timedelta(seconds=1):
            continue  # older than the try: another incident's
        if answered_id(incident):
            found.append(
                (created or start or datetime.min.replace(tzinfo=UTC), answered_id(incident))
            )
    return min(found)[1] if found else ""


def secret_value(api: Access, ref: dict[str, Any], tenant: str | None) -> str:
    """The value of the Secret REF in the operator's namespace, under Notify's rules."""
    try:
        return channel_url(api, {"webhook": {"urlSecretRef": ref}}, tenant)
    except NotifyError as err:
        raise PageError(str(err).replace("a readable URL", "readable text")) from None


def tenant_of(ctx: ActionContext) -> str | None:
    return egress.scope_of_ref((ctx.incident.get("status") or {}).get("policyRef"), ctx.namespace)


# --- The action ---------------------------------------------------------------------------


class StatusPage(Action):
    type = "StatusPage"
    per_incident = True  # one page incident, however many targets
    outside = True

    def key(self, spec: dict[str, Any]) -> str:
        ref = ((spec.get("page") or {}).get("urlSecretRef")) or {}
        return f"StatusPage:{ref.get('name', '')}/{ref.get('key', '')}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        page = spec.get("page")
        if not isinstance(page, dict):
            return ["StatusPage: page is required ({format, urlSecretRef, tokenSecretRef})"]
        problems = []
        fmt = page.get("format", "Statuspage")
        if fmt not in FORMATS:
            problems.append(f"StatusPage: page.format must be one of {', '.join(FORMATS)}")
        for field in ("urlSecretRef",) + (("tokenSecretRef",) if fmt == "Statuspage" else ()):
            ref = page.get(field)
            if not isinstance(ref, dict) or not ref.get("name") or not ref.get("key"):
                problems.append(f"StatusPage: page.{field} needs name and key (a Secret)")
        unknown = sorted(set(spec.get("messages") or {}) - set(MESSAGE_KEYS))
        if unknown:
            problems.append(
                f"StatusPage: messages has {', '.join(unknown)}; known: {', '.join(MESSAGE_KEYS)}"
            )
        return problems

    def _page(self, ctx: ActionContext) -> dict[str, Any]:
        """Where to post: the policy's page, else (the policy is gone) the one the entry kept."""
        kept = ctx.entry.get(PAGE) or {}
        return ctx.spec.get("page") or {k: v for k, v in kept.items() if k not in ("id", "status")}

    def _post(
        self, ctx: ActionContext, page: dict[str, Any], step: str, known: str, unseen: str = ""
    ) -> str:
        """Open (KNOWN empty) or update the page incident; the id it has now. UNSEEN: when an
        open whose outcome was not seen was tried: the page's open incidents are looked at
        first, and the one it made, if any, is taken."""
        tenant = tenant_of(ctx)
        url = secret_value(ctx.api, page.get("urlSecretRef") or {}, tenant).rstrip("/")
        severity = (ctx.incident.get("status") or {}).get("severity")
        if page.get("format", "Statuspage") == "Generic":
            key = ctx.incident["metadata"].get("uid") or ctx.holder
            call("POST", url, generic(ctx.spec, step, known or key, severity), {}, idempotent=True)
            return known or key
        token = secret_value(ctx.api, page.get("tokenSecretRef") or {}, tenant)
        auth = {"Authorization": f"OAuth {token}"}
        if known:
            path = f"{url}/incidents/{urllib.parse.quote(known, safe='')}"
            call("PATCH", path, statuspage_update(ctx.spec, step), auth, idempotent=True)
            return known
        if unseen:
            _, listed = call("GET", f"{url}/incidents/unresolved", None, auth, idempotent=True)
            found = adoptable(listed, title(ctx.spec), unseen)
            if found:
                return found
        _, answer = call(
            "POST", f"{url}/incidents", statuspage_open(ctx.spec, step, severity), auth,
            idempotent=False,
        )  # fmt: skip
        found = answered_id(answer)
        if not found:
            raise PageError("the status page answered without an incident id")
        return found

    def calls(self, ctx: ActionContext) -> bool:
        kept = ctx.entry.get(PAGE) or {}
        return not (kept.get("id") and kept.get("status") == STEPS[step_of(ctx.incident)])

    def apply(self, ctx: ActionContext) -> Outcome:
        kept = dict(ctx.entry.get(PAGE) or {})
        step = step_of(ctx.incident)
        want = STEPS[step]
        if kept.get("id") and kept.get("status") == want:
            return Outcome(
                "Applied", f"status page incident {kept['id']}: {want}", keep={PAGE: kept},
                recheck=RECHECK if step == "investigating" else None,
            )  # fmt: skip
        verb = "update" if kept.get("id") else "open"
        if ctx.dry_run:
            return Outcome("DryRun", f"would {verb} a status page incident ({want})")
        page = self._page(ctx)
        unseen = ""
        if not kept.get("id") and page.get("format", "Statuspage") == "Statuspage":
            # As Ticket's: the intent is in the status before the open is sent; one found
            # without a result this process did not just make may have opened it.
            attempt = (ctx.incident["metadata"].get("uid") or ctx.holder, ctx.key)
            if not kept.get("intentAt"):
                intent = {**_refs(page), "intentAt": now_iso(), "by": PROCESS}
                return Outcome(
                    "Skipped", "opening a status page incident (intent recorded)",
                    keep={PAGE: intent}, recheck=INTENT_RECHECK,
                )  # fmt: skip
            if kept.get("by") != PROCESS or attempt in _attempted:
                unseen = kept["intentAt"]
            with _lock:
                _attempted.add(attempt)
            step = "investigating"  # opened with the policy's first words, then updated
        try:
            found = self._post(ctx, page, step, kept.get("id") or "", unseen)
        except PageError as err:
            words = f"status page not {'updated' if kept.get('id') else 'opened'}: {err}"
            ctx.api.event(ctx.incident, "StatusPageFailed", words, warning=True)
            if not kept.get("id") and not err.unknown:
                with _lock:  # surely not opened: a new intent, a new try
                    _attempted.discard((ctx.incident["metadata"].get("uid") or ctx.holder, ctx.key))
                return Outcome("Failed", words, keep={PAGE: {}})
            # The id (or the intent) stays kept: a failed update never opens a second incident.
            return Outcome("Failed", words, keep={PAGE: kept} if kept else {})
        kept = {**_refs(page), "id": found, "status": STEPS[step]}
        words = f"status page incident {found}: {STEPS[step]}"
        ctx.api.event(ctx.incident, "StatusPageUpdated", words)
        return Outcome(
            "Applied", words, changed=True, keep={PAGE: kept},
            # Opened before the response took hold: look again to say it is mitigated.
            recheck=RECHECK if step == "investigating" else None,
        )  # fmt: skip

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        kept = dict(ctx.entry.get(PAGE) or {})
        if not kept.get("id"):
            return Outcome("Reverted", "no status page incident was opened", objects)
        if kept.get("status") == "resolved":
            return Outcome("Reverted", f"status page incident {kept['id']}: resolved", objects)
        if ctx.dry_run:
            return Outcome("DryRun", f"would resolve status page incident {kept['id']}")
        done = {PAGE: {**kept, "status": "resolved"}}
        resolved = (ctx.incident["metadata"].get("uid") or ctx.holder, kept["id"])
        with _lock:
            if resolved in _resolved:
                words = f"status page incident {kept['id']}: resolved"
                return Outcome("Reverted", words, objects, keep=done)
        try:
            self._post(ctx, self._page(ctx), "resolved", kept["id"])
        except PageError as err:
            words = f"status page incident {kept['id']} not resolved: {err}"
            ctx.api.event(ctx.incident, "StatusPageFailed", words, warning=True)
            # A lost "resolved" must not hold the incident open (as Notify's).
            return Outcome("Reverted", words, objects)
        with _lock:
            _resolved.add(resolved)
        words = f"status page incident {kept['id']}: resolved"
        ctx.api.event(ctx.incident, "StatusPageUpdated", words)
        return Outcome("Reverted", words, objects, changed=True, keep=done)


def _refs(page: dict[str, Any]) -> dict[str, Any]:
    """What the entry keeps of PAGE: its format and Secret references, never their values."""
    out: dict[str, Any] = {"format": page.get("format", "Statuspage")}
    for field in ("urlSecretRef", "tokenSecretRef"):
        ref = page.get(field)
        if isinstance(ref, dict):
            out[field] = {"name": str(ref.get("name", "")), "key": str(ref.get("key", ""))}
    return out
