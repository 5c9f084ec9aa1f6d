"""Notify: tell people about the incident through webhooks (the engine calls it).

The action names channels of the policy's `notifications.channels`; each is a
webhook (Slack's incoming-webhook format, a Generic JSON object, or a paging service:
PagerDuty, Opsgenie, MSTeams, built by `pages`) whose URL is in the policy or, better,
in a Secret in the operator's own namespace, the only place its RBAC lets it read
Secrets; PagerDuty's routing key (`routingKeySecretRef`) and Opsgenie's API key
(`apiKeySecretRef`) only ever come from such a Secret. `egress` decides which URLs
and Secrets a policy may use: a namespaced policy's inline URL must be in the operator's
allowlist, and its Secret must name the policy's namespace in its annotation
`aiincident.io/allowed-namespaces`. Redirects are never followed, and nothing of an
answer but its status code reaches the status or an Event. Every channel is posted in parallel, with a
timeout and retries, so one dead endpoint neither blocks nor hides the others.
The outcome and an Event on the incident name the channels reached and the ones
that failed, and why; notifying never raises. A channel already reached for this
incident is not sent the same message again when the engine retries the action
for the others, nor after a restart: the entry keeps, per event (`trigger`,
`acknowledge`), the channels reached (`delivered`). Undo sends a short "resolved"
(PagerDuty `resolve`, Opsgenie close); `acknowledge` passes a person's
acknowledgement on (engine.acknowledge).

The "resolved" page must not depend on the policy outliving the incident: each pass
keeps, in the Notify entry's `sentTo`, the channels as the policy defines them
(`sent_to`: Secret references, never their values) and the policy's kind and name
(whose egress rules apply); undo uses that when the policy is gone (`as_sent`).

The payload builders and `post` are pure enough to test without a cluster.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .. import __version__, egress
from ..access import Access
from ..conditions import now_iso
from ..errors import APIError
from ..resources import Ref, operator_namespace
from . import pages
from .base import SENDING, Action, ActionContext, Outcome

TIMEOUT = 5.0  # seconds per request
BACKOFF = (0.5, 1.0, 2.0)  # the pauses before each retry: 4 tries at most
USER_AGENT = f"ai-incident-operator/{__version__}"
log = logging.getLogger(__name__)
SENT_TO = "sentTo"  # the Notify entry's field: what its "resolved" page needs
NOT_KEPT = "notKept"  # in a kept webhook: why its inline URL was not kept
DELIVERED = "delivered"  # the Notify entry's field: event -> the channels reached
# The entry's field: event -> the channels a stopped operator process may have sent it to
# (its claim, `sending`, was written; its outcome never was): never sent that event again.
UNSURE = "unsure"
PROCESS = uuid.uuid4().hex[:12]  # whose claim (`sending`) an entry records
DEDUP = "dedupKey"  # in a message `payload` made for a paging channel: its alert's key
FACTS = ("incident", "namespace", "severity", "category", "phase", "title", "description",
         "targets")  # fmt: skip  # what `_facts` says
# The engine applies a Notify that failed for one channel again on its next pass; the
# channels that already got the message must not get it again every pass.
REMEMBER = 24 * 3600.0  # seconds a delivery is remembered (in this process)
_sent: dict[tuple[str, str, str], float] = {}  # (incident uid, event, channel) -> when
_sent_lock = threading.Lock()


class NotifyError(Exception):
    """A channel could not be reached; the message says why, without the URL."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would send the message (or a GET) to a URL no check has seen.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass
class Delivery:
    channel: str
    ok: bool
    detail: str = ""  # why it failed
    earlier: bool = False  # delivered on an earlier pass, not sent again


# --- Payloads -----------------------------------------------------------------------------


def _facts(incident: dict[str, Any], target: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a notification says; triage's results (status) win over what was reported (spec)."""
    meta = incident.get("metadata", {})
    spec = incident.get("spec") or {}
    status = incident.get("status") or {}
    targets = [
        f"{t.get('kind', 'Deployment')}/{t['name']}"
        + (
            f" in {t['namespace']}"
            if t.get("namespace") not in (None, meta.get("namespace"))
            else ""
        )
        for t in status.get("targets") or []
        if t.get("name")
    ]
    if not targets and target and target.get("metadata", {}).get("name"):
        targets = [f"{target.get('kind', 'Deployment')}/{target['metadata']['name']}"]
    if not targets and (spec.get("target") or {}).get("name"):
        targets = [f"{spec['target'].get('kind', 'Deployment')}/{spec['target']['name']}"]
    description = spec.get("description") or ""
    return {
        "incident": meta.get("name"),
        "namespace": meta.get("namespace"),
        "severity": status.get("severity", spec.get("severity")),
        "category": spec.get("category"),
        "phase": status.get("phase"),
        "title": spec.get("title") or description.strip().split("\n")[0] or "(no title)",
        "description": description,
        "targets": targets,
    }


def _slack_escape(text: str) -> str:
    # Slack reads <...> as links and mentions; a title must not ping @channel.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(facts: dict[str, Any], resolved: bool = False) -> str:
    """One line, e.g. "[SEV1] prod/chat HarmfulOutput: Unsafe advice (Mitigating; Deployment/llm)"."""
    head = "[RESOLVED]" if resolved else f"[SEV{facts['severity'] or '?'}]"
    category = f" {facts['category']}" if facts["category"] else ""
    line = f"{head} {facts['namespace']}/{facts['incident']}{category}: {facts['title']}"
    if resolved:
        return line + " (mitigations undone)"
    details = [d for d in (facts["phase"], ", ".join(facts["targets"])) if d]
    return line + (f" ({'; '.join(details)})" if details else "")


def payload(
    fmt: str, incident: dict[str, Any], target: dict[str, Any] | None = None, resolved: bool = False
) -> dict[str, Any]:
    """The JSON body for a channel of format FMT (Slack, else Generic)."""
    facts = _facts(incident, target)
    if fmt == "Slack":
        return {"text": _slack_escape(summary(facts, resolved))}
    body = {"event": "resolved" if resolved else "incident", **facts}
    if fmt in pages.FORMATS:  # what `_as_page` needs to make it a request of the alert
        body[DEDUP] = pages.dedup_key(incident.get("metadata") or {})
        body["detectedAt"] = (incident.get("status") or {}).get("detectedAt")
    return body


def acknowledged_summary(facts: dict[str, Any], who: str) -> str:
    """E.g. "[ACK] prod/chat HarmfulOutput: Unsafe advice: acknowledged by alice"."""
    category = f" {facts['category']}" if facts["category"] else ""
    by = f" by {who}" if who else ""
    where = f"{facts['namespace']}/{facts['incident']}{category}"
    return f"[ACK] {where}: {facts['title']}: acknowledged{by}"


def request(
    fmt: str,
    event: str,
    incident: dict[str, Any],
    target: dict[str, Any] | None = None,
    *,
    who: str = "",
    line: str = "",
) -> pages.Page:
    """What a channel of format FMT is sent for EVENT (pages.TRIGGER, ACKNOWLEDGE,
    RESOLVE) of INCIDENT, without its key (`deliver` adds it). WHO acknowledged; LINE
    replaces the one-line summary (a message about the incident: an approval wait)."""
    facts = _facts(incident, target)
    if fmt in pages.FORMATS:
        dedup = pages.dedup_key(incident.get("metadata") or {})
        detected = (incident.get("status") or {}).get("detectedAt")
        return _paging(fmt, event, facts, dedup, detected, who=who, line=line)
    if event != pages.ACKNOWLEDGE:
        return pages.Page(payload(fmt, incident, target, resolved=event == pages.RESOLVE))
    if fmt == "Slack":
        return pages.Page({"text": _slack_escape(line or acknowledged_summary(facts, who))})
    return pages.Page({"event": "acknowledged", **facts, "by": who})


def _paging(
    fmt: str,
    event: str,
    facts: dict[str, Any],
    dedup: str,
    detected: str | None,
    *,
    who: str = "",
    line: str = "",
) -> pages.Page:
    line = line or (
        acknowledged_summary(facts, who)
        if event == pages.ACKNOWLEDGE
        else summary(facts, resolved=event == pages.RESOLVE)
    )
    if fmt == pages.PAGERDUTY:
        return pages.pagerduty(event, facts, key=dedup, summary=line, timestamp=detected)
    if fmt == pages.OPSGENIE:
        return pages.opsgenie(event, facts, key=dedup, summary=line, who=who)
    return pages.msteams(event, facts, summary=line, who=who)


def approval_payload(
    fmt: str, incident: dict[str, Any], command: str, actions: list[str]
) -> dict[str, Any] | pages.Page:
    """The page that a response waits for approval: what it would do, and how to approve it.

    A paging service (PagerDuty, Opsgenie, MSTeams) gets it as the trigger of the
    incident's one alert, so that the response's own page later lands on the same alert.
    """
    facts = _facts(incident)
    what = ", ".join(actions) or "its response"
    if fmt in pages.FORMATS:
        line = f"{summary(facts)}: waits for approval to apply {what}: {command}"
        return request(fmt, pages.TRIGGER, incident, line=line)
    if fmt == "Slack":
        return {
            "text": _slack_escape(
                f"{summary(facts)}: waits for approval to apply {what}: {command}"
            )
        }
    return {"event": "approval-required", **facts, "actions": actions, "approve": command}


def escalation_payload(
    fmt: str, incident: dict[str, Any], escalation: dict[str, Any]
) -> dict[str, Any]:
    """A page of the escalation ladder (engine.escalation): it says it is one, which level,
    what was not met and since when. ESCALATION: {level, unless, notMet, since, dueAt, ...}.
    Formats other than Generic get their incident page with the escalation in its title."""
    if fmt == "Generic":
        return {"event": "escalation", **_facts(incident), "escalation": escalation}
    spec = incident.get("spec") or {}
    title = _facts(incident)["title"]
    head = f"ESCALATION level {escalation.get('level')}: {escalation.get('notMet')}"
    marked = {**incident, "spec": {**spec, "title": f"{head}: {title}"}}
    return payload(fmt, marked)


# --- Delivery -----------------------------------------------------------------------------


def post(
    url: str,
    body: dict[str, Any],
    *,
    timeout: float = TIMEOUT,
    backoff: Sequence[float] | None = None,
    sleep: Callable[[float], None] | None = None,
    headers: dict[str, str] | None = None,
) -> int:
    """POST BODY as JSON; retry server errors, 429 and network errors. Returns the tries taken.

    Raises NotifyError naming the last failure; the URL (often a secret) is never in it,
    nor anything the endpoint answered beyond its status code. Redirects are not
    followed. BACKOFF and SLEEP default to the module's, looked up per call. HEADERS
    are added (Opsgenie's key): never in a message either.
    """
    backoff = BACKOFF if backoff is None else backoff
    sleep = sleep or time.sleep
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise NotifyError("the webhook URL is not an http(s) URL")
    data = json.dumps(body).encode()
    headers = {**(headers or {}), "Content-Type": "application/json", "User-Agent": USER_AGENT}
    tries = len(backoff) + 1
    for attempt in range(tries):
        if attempt:
            sleep(backoff[attempt - 1])
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return attempt + 1
                reason = f"HTTP {resp.status}"
                retry = False  # a 1xx we did not follow: retrying will not help
        except urllib.error.HTTPError as err:
            # The body is the endpoint's words, maybe an internal service's: never kept.
            err.close()
            reason = f"HTTP {err.code}"
            if 300 <= err.code < 400:
                reason += " (a redirect, not followed)"
            retry = err.code >= 500 or err.code == 429  # other 4xx: our request is wrong
        except urllib.error.URLError as err:
            reason = egress.sanitise(str(err.reason).replace(url, "<url>"), 120)
            retry = True
        except TimeoutError:
            reason = f"no answer within {timeout:g}s"
            retry = True
        except (OSError, ValueError) as err:
            words = egress.sanitise(str(err).replace(url, "<url>"), 120)
            reason = f"{type(err).__name__}: {words}"
            retry = isinstance(err, OSError)
        if not retry:
            raise NotifyError(reason)
    raise NotifyError(f"{reason} (after {tries} tries)")


def channel_url(api: Access, channel: dict[str, Any], tenant: str | None) -> str:
    """The webhook URL: webhook.url, else the Secret urlSecretRef in the operator's namespace.

    TENANT: the namespace of the namespaced policy that names the channel (its inline
    URL must pass `egress.check`, its Secret must be shared with TENANT); None for a
    ClusterMitigationPolicy, which may use any URL and any Secret there.
    """
    webhook = channel.get("webhook") or {}
    if webhook.get("url"):
        problem = egress.check(webhook["url"], namespaced=tenant is not None)
        if problem:
            raise NotifyError(f"webhook.url refused: {problem}")
        return webhook["url"]
    ref = webhook.get("urlSecretRef")
    if not ref:
        raise NotifyError(webhook.get(NOT_KEPT) or "no webhook.url or webhook.urlSecretRef")
    return _secret_value(api, ref, tenant, "URL")


def channel_key(api: Access, channel: dict[str, Any], tenant: str | None) -> str:
    """The routing key (PagerDuty) or API key (Opsgenie) of CHANNEL, from its Secret in the
    operator's namespace, under the same rules as `channel_url`'s; '' for other formats."""
    field = pages.KEY_REFS.get(channel.get("format", "Generic"))
    if not field:
        return ""
    ref = channel.get(field)
    if not ref:
        raise NotifyError(f"no {field} (a {channel.get('format')} channel needs its key)")
    value = _secret_value(api, ref, tenant, "key")
    # A header's value: a line break would make the client's error quote it, key and all.
    if not value or any(not 33 <= ord(c) < 127 for c in value):
        raise NotifyError(f"{field} {ref['name']}/{ref['key']}: not a key (one word, printable)")
    return value


def _secret_value(api: Access, ref: dict[str, Any], tenant: str | None, what: str) -> str:
    """The value at REF (a Secret of the operator's namespace) as text, stripped."""
    namespace = operator_namespace()
    where = f"Secret {namespace}/{ref['name']}"
    # To a tenant, a Secret that is missing, forbidden, not shared with it or without the
    # key looks the same: the answer must not tell whether team B's Secret exists.
    hidden = egress.secret_unavailable(ref["name"], ref["key"], tenant) if tenant else ""
    try:
        secret = api.get(Ref("Secret", namespace, ref["name"]))
    except APIError as err:
        if hidden and err.status in (403, 404):
            log.warning("%s for namespace %s: %s %s", where, tenant, err.status, err.reason)
            raise NotifyError(hidden) from None
        raise NotifyError(f"cannot read {where}: {err.status} {err.reason}") from None
    if hidden and (secret is None or not egress.secret_allows(secret, tenant)):
        log.warning("%s: missing or not shared with namespace %s", where, tenant)
        raise NotifyError(hidden)
    if secret is None:
        raise NotifyError(f"{where} not found")
    value = (secret.get("data") or {}).get(ref["key"])
    if not value:
        raise NotifyError(hidden or f"{where} has no key {ref['key']}")
    try:
        # Stripped: `echo URL | kubectl create secret ...` leaves a newline in the value.
        return base64.b64decode(value).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise NotifyError(f"{where} key {ref['key']} is not a readable {what}") from None


def defined_channels(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for c in (policy.get("notifications") or {}).get("channels") or []
        if isinstance(c, dict) and c.get("name")
    }


def _remembered(key: tuple[str, str, str]) -> bool:
    with _sent_lock:
        now = time.monotonic()
        for old in [k for k, at in _sent.items() if now - at > REMEMBER]:
            del _sent[old]
        return key in _sent


def deliver(
    api: Access,
    names: list[str],
    policy: dict[str, Any],
    body_for: Callable[[dict[str, Any]], dict[str, Any] | pages.Page],
    memo: tuple[str, str] | None = None,
    *,
    tenant: str | None,
    earlier: Collection[str] = (),
    **post_args: Any,
) -> list[Delivery]:
    """Post to every channel in NAMES at once; BODY_FOR(channel) makes each body (a JSON
    object, or a `pages.Page` with its path and headers).

    With MEMO (incident uid, event), a channel that already got this event in this
    process is skipped, and so is one in EARLIER (the status says it got it).
    TENANT: as for `channel_url`. A PagerDuty or Opsgenie channel's key is read here
    and added to the body (`pages.keyed`); nothing else sees it.
    """
    channels = defined_channels(policy)

    def one(name: str) -> Delivery:
        channel = channels.get(name)
        key = (*memo, name) if memo else None
        if name in earlier or (key and _remembered(key)):
            return Delivery(name, True, earlier=True)
        try:
            if channel is None:
                raise NotifyError("not defined in the policy's notifications.channels")
            fmt = channel.get("format", "Generic")
            url = channel_url(api, channel, tenant)
            page = _as_page(fmt, body_for(channel))
            page = pages.keyed(fmt, page, channel_key(api, channel, tenant))
            post(_join(url, page.path), page.body, headers=page.headers, **post_args)
            if key:
                with _sent_lock:
                    _sent[key] = time.monotonic()
            return Delivery(name, True)
        except NotifyError as err:
            return Delivery(name, False, str(err))
        except Exception as err:  # notifying must never fail the incident's handler
            return Delivery(name, False, f"{type(err).__name__}: {egress.sanitise(err, 120)}")

    if not names:
        return []
    with ThreadPoolExecutor(max_workers=min(len(names), 8)) as pool:
        return list(pool.map(one, names))


def _join(url: str, extra: str) -> str:
    """URL with EXTRA ("/alias/close?identifierType=alias") below its path, queries merged."""
    if not extra:
        return url
    parts = urllib.parse.urlsplit(url)
    more = urllib.parse.urlsplit(extra)
    query = "&".join(q for q in (parts.query, more.query) if q)
    path = parts.path.rstrip("/") + more.path
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def _as_page(fmt: str, body: dict[str, Any] | pages.Page) -> pages.Page:
    """BODY as a request. A plain object for a paging service (a message built for Generic
    channels: a contest, an escalation) becomes a trigger of the incident's alert."""
    if isinstance(body, pages.Page):
        return body
    if fmt not in pages.FORMATS:
        return pages.Page(body)
    facts = {name: body.get(name) for name in FACTS}
    if not (facts["namespace"] and facts["incident"]):
        raise NotifyError(f"a {fmt} channel takes the incident's pages, not this message")
    facts["targets"] = list(facts["targets"] or [])
    facts["description"] = facts["description"] or ""
    facts["title"] = facts["title"] or "(no title)"
    words = body.get("message") or ""
    line = summary(facts) + (f": {words}" if words else "")
    # `payload` gives a paging channel's message the incident's key; a message made
    # otherwise is keyed by the incident's name (a separate alert on the service).
    dedup = body.get(DEDUP) or pages.dedup_key(
        {"namespace": facts["namespace"], "name": facts["incident"]}
    )
    return _paging(fmt, pages.TRIGGER, facts, dedup, body.get("detectedAt"), line=line)


def report(deliveries: list[Delivery], verb: str) -> str:
    """E.g. "notified oncall; sent earlier: lead; failed: pager (HTTP 500 (after 4 tries))"."""
    ok = [d.channel for d in deliveries if d.ok and not d.earlier]
    earlier = [d.channel for d in deliveries if d.earlier]
    failed = [f"{d.channel} ({d.detail})" for d in deliveries if not d.ok]
    parts = [f"{verb} {', '.join(ok)}"] if ok else []
    parts += [f"sent earlier: {', '.join(earlier)}"] if earlier else []
    parts += [f"failed: {', '.join(failed)}"] if failed else []
    return "; ".join(parts) or "no channels"


def _words(reported: str, deliveries: list[Delivery], doubted: str) -> str:
    """What was sent (REPORTED, from `report`) and what was not sent again (DOUBTED)."""
    parts = [reported] if deliveries or not doubted else []
    return "; ".join(parts + ([doubted] if doubted else []))


class Notify(Action):
    type = "Notify"
    per_incident = True  # one message per incident, however many targets
    once = True  # sending again on every pass would be noise
    outside = True

    def key(self, spec: dict[str, Any]) -> str:
        # Two Notify actions (a response's, the regulatory one) must not share an entry.
        return f"Notify:{spec.get('purpose') or ','.join(spec.get('channels') or [])}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        names = spec.get("channels")
        if not isinstance(names, list) or not names:
            return ["Notify: channels must name at least one of notifications.channels"]
        channels = defined_channels(policy)
        problems = []
        for name in names:
            channel = channels.get(name)
            if channel is None:
                known = ", ".join(channels) or "none defined"
                problems.append(
                    f"Notify: channel {name} is not in notifications.channels ({known})"
                )
                continue
            webhook = channel.get("webhook") or {}
            url = webhook.get("url")
            if not url and not webhook.get("urlSecretRef"):
                problems.append(f"Notify: channel {name} needs webhook.url or webhook.urlSecretRef")
            elif url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                problems.append(f"Notify: channel {name}: webhook.url is not an http(s) URL")
            fmt = channel.get("format", "Generic")
            field = pages.KEY_REFS.get(fmt)
            if field and not channel.get(field):
                problems.append(
                    f"Notify: channel {name} ({fmt}) needs {field}: its key, from a Secret in "
                    "the operator's namespace"
                )
        return problems

    # --- what each event reached, kept in the entry (`delivered`) ---------------------------

    @staticmethod
    def delivered(entry: dict[str, Any]) -> dict[str, list[str]]:
        """Event -> the channels reached, as the entry ENTRY keeps them; nothing after an
        undo (a page applied again is a new alert: trigger, acknowledge and resolve anew)."""
        if entry.get("state") == "Reverted":
            return {}
        return {k: list(v) for k, v in (entry.get(DELIVERED) or {}).items() if isinstance(v, list)}

    @staticmethod
    def _round(entry: dict[str, Any]) -> str:
        # The in-process memo of one round of pages; a re-apply after an undo is a new round.
        return entry.get("revertedAt") or ""

    @staticmethod
    def unsure(entry: dict[str, Any]) -> dict[str, list[str]]:
        """Event -> the channels that may have got it from a process that stopped (`UNSURE`)."""
        if entry.get("state") == "Reverted":
            return {}
        return {k: list(v) for k, v in (entry.get(UNSURE) or {}).items() if isinstance(v, list)}

    def claim(self, ctx: ActionContext, undo: bool = False) -> Outcome:
        """Written before the page goes out (engine.outside): which event, when, by whom."""
        names = ", ".join(ctx.spec.get("channels") or [])
        event = pages.RESOLVE if undo else pages.TRIGGER
        words = f"telling {names} it is resolved" if undo else f"sending to {names}"
        return Outcome("Skipped", words, keep={SENDING: {"event": event, "at": now_iso(),
                                                         "by": PROCESS}})  # fmt: skip

    def merged(self, entry: dict[str, Any], outcome: Outcome) -> Outcome:
        """The channels reached per event, as OUTCOME found them and as ENTRY has them now
        (an acknowledgement's outcome may have been recorded meanwhile)."""
        mine = outcome.keep.get(DELIVERED)
        if not isinstance(mine, dict):
            return outcome
        union = self.delivered(entry)
        for event, names in mine.items():
            union[event] = list(names) + [n for n in union.get(event, []) if n not in names]
        return dataclasses.replace(outcome, keep={**outcome.keep, DELIVERED: union})

    def in_doubt(self, ctx: ActionContext, event: str) -> tuple[list[str], str]:
        """The channels of this entry that an operator process which stopped mid-send may
        have sent EVENT to, and when it claimed them. Paging services (PagerDuty, Opsgenie)
        fold a repeated event into the one alert, so they are not in doubt: they get it again.
        Nothing is in doubt when the claim is this process's (its outcome was not written,
        but `_sent` remembers what went out)."""
        claim = ctx.entry.get(SENDING) or {}
        if claim.get("event") != event or claim.get("by") in (None, PROCESS):
            return [], ""
        done = self.delivered(ctx.entry).get(event, []) + self.unsure(ctx.entry).get(event, [])
        channels = defined_channels(ctx.policy)
        doubt = [
            n for n in ctx.spec.get("channels") or []
            if n not in done and (channels.get(n) or {}).get("format") not in pages.DEDUPLICATED
        ]  # fmt: skip
        return doubt, str(claim.get("at") or "")

    def _doubted(self, ctx: ActionContext, event: str, doubt: list[str], at: str) -> str:
        """Say, loudly, what is not sent again after a restart; the words for the outcome."""
        if not doubt:
            return ""
        words = (
            f"not sent again: {', '.join(doubt)} (the operator stopped while sending at {at}; "
            "it may have gone out, and a second copy is worse: look in the channel)"
        )
        ctx.api.event(ctx.incident, "NotifyUnsure", words, warning=True)
        return words

    def _kept(self, ctx: ActionContext, event: str, deliveries: list[Delivery]) -> dict[str, Any]:
        delivered = self.delivered(ctx.entry)
        reached = delivered.get(event, [])
        reached += [d.channel for d in deliveries if d.ok and d.channel not in reached]
        return {DELIVERED: {**delivered, event: reached}}

    def _send(
        self, ctx: ActionContext, event: str, names: list[str] | None = None, who: str = ""
    ) -> list[Delivery]:
        meta = ctx.incident["metadata"]
        incident = meta.get("uid") or ctx.holder
        # On undo the engine passes a stand-in target; the incident's status names the real ones.
        target = ctx.target if event == pages.TRIGGER else None
        return deliver(
            ctx.api,
            list(ctx.spec.get("channels") or []) if names is None else names,
            ctx.policy,
            lambda channel: request(
                channel.get("format", "Generic"), event, ctx.incident, target, who=who
            ),
            memo=(incident, f"{event} {self._round(ctx.entry)}"),
            # Which policy names the channels: the incident's status.policyRef, set in
            # the same pass (none: the stricter, namespaced rules).
            tenant=egress.scope_of_ref(
                (ctx.incident.get("status") or {}).get("policyRef"), ctx.namespace
            ),
            earlier=self.delivered(ctx.entry).get(event, []),
        )

    def _todo(self, ctx: ActionContext, event: str) -> tuple[list[str], dict[str, Any], str]:
        """The channels to send EVENT to now, what to keep about those in doubt, their words."""
        doubt, at = self.in_doubt(ctx, event)
        unsure = self.unsure(ctx.entry)
        skip = set(doubt) | set(unsure.get(event, []))
        names = [n for n in ctx.spec.get("channels") or [] if n not in skip]
        keep = {UNSURE: {**unsure, event: unsure.get(event, []) + doubt}} if doubt else {}
        return names, keep, self._doubted(ctx, event, doubt, at)

    def apply(self, ctx: ActionContext) -> Outcome:
        names = ", ".join(ctx.spec.get("channels") or [])
        if ctx.dry_run:
            return Outcome("DryRun", f"would notify {names}")
        todo, keep, doubted = self._todo(ctx, pages.TRIGGER)
        deliveries = self._send(ctx, pages.TRIGGER, todo)
        message = _words(report(deliveries, "notified"), deliveries, doubted)
        failed = any(not d.ok for d in deliveries) or not (deliveries or doubted)
        ctx.api.event(
            ctx.incident, "NotifyFailed" if failed else "Notified", message, warning=failed
        )
        return Outcome(
            "Failed" if failed else "Applied",
            message,
            changed=any(d.ok and not d.earlier for d in deliveries),
            keep={**self._kept(ctx, pages.TRIGGER, deliveries), **keep},
        )

    def _to_acknowledge(self, ctx: ActionContext) -> list[str]:
        delivered = self.delivered(ctx.entry)
        done = delivered.get(pages.ACKNOWLEDGE, [])
        return [n for n in delivered.get(pages.TRIGGER, []) if n not in done]

    def acknowledging(self, ctx: ActionContext) -> bool:
        """Whether a channel this entry paged has not yet been told of the acknowledgement."""
        return bool(self._to_acknowledge(ctx))

    def acknowledge(self, ctx: ActionContext, who: str) -> tuple[list[Delivery], dict[str, Any]]:
        """Tell the channels this entry paged that WHO acknowledged the incident: PagerDuty
        `acknowledge`, Opsgenie's acknowledge, a short message elsewhere. Each channel once.

        Returns the deliveries and the fields to keep on the entry (`delivered`).
        """
        todo = self._to_acknowledge(ctx)
        if not todo:
            return [], {}
        deliveries = self._send(ctx, pages.ACKNOWLEDGE, todo, who)
        return deliveries, self._kept(ctx, pages.ACKNOWLEDGE, deliveries)

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        names = ", ".join(ctx.spec.get("channels") or [])
        if ctx.dry_run:
            return Outcome("DryRun", f"would tell {names} the incident is resolved")
        todo, keep, doubted = self._todo(ctx, pages.RESOLVE)
        deliveries = self._send(ctx, pages.RESOLVE, todo)
        message = _words(report(deliveries, "resolved sent to"), deliveries, doubted)
        failed = any(not d.ok for d in deliveries)
        ctx.api.event(
            ctx.incident, "NotifyFailed" if failed else "Notified", message, warning=failed
        )
        # A lost "resolved" message must not hold the incident open: the undo still counts.
        return Outcome(
            "Reverted",
            message,
            objects,
            changed=any(d.ok and not d.earlier for d in deliveries),
            keep={**self._kept(ctx, pages.RESOLVE, deliveries), **keep},
        )


# --- What the "resolved" page needs when the policy is gone --------------------------------


def notify_specs(policy_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Notify a policy may run: its responses' and the regulatory one (engine.regulatory)."""
    specs = [
        action
        for response in policy_spec.get("responses") or []
        for action in response.get("actions") or []
        if action.get("type") == Notify.type
    ]
    regulatory = policy_spec.get("regulatory") or {}
    if regulatory.get("channels"):
        specs.append(
            {"type": Notify.type, "channels": regulatory["channels"], "purpose": "regulatory"}
        )
    return specs


def sent_to(key: str, policy: dict[str, Any]) -> dict[str, Any] | None:
    """What the entry KEY's "resolved" page needs if POLICY (a body) is deleted first; None
    when POLICY has no such Notify.

    The channels' definitions keep Secret references, never what the Secrets hold. An
    inline webhook.url is kept from a namespaced policy only (the incident's namespace
    wrote it there itself); a ClusterMitigationPolicy's would reach the tenant's status.
    """
    spec = next((s for s in notify_specs(policy.get("spec") or {}) if Notify().key(s) == key), None)
    if spec is None:
        return None
    meta = policy.get("metadata") or {}
    ref = {"kind": policy.get("kind") or "MitigationPolicy", "name": meta.get("name", "")}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    defined = defined_channels(policy.get("spec") or {})
    names = list(spec.get("channels") or [])
    kept = [_keepable(defined[n], ref) for n in names if n in defined]
    return {"policyRef": ref, "channels": names, "definitions": kept}


def _keepable(channel: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    kept = copy.deepcopy(channel)
    webhook = kept.get("webhook") or {}
    if ref["kind"] == egress.CLUSTER_KIND and webhook.pop("url", None):
        webhook[NOT_KEPT] = (
            f"its webhook.url was inline in {ref['kind']} {ref['name']}, which is gone, and "
            "is not kept in the incident's status (use webhook.urlSecretRef)"
        )
    return kept


def as_sent(ctx: ActionContext, kept: dict[str, Any]) -> ActionContext:
    """CTX for the "resolved" page of an entry whose policy is gone: the channels as KEPT
    (`sent_to`), under the egress rules of the policy that defined them."""
    status = {**(ctx.incident.get("status") or {}), "policyRef": kept.get("policyRef")}
    return dataclasses.replace(
        ctx,
        spec={"type": Notify.type, "channels": list(kept.get("channels") or [])},
        policy={"notifications": {"channels": list(kept.get("definitions") or [])}},
        incident={**ctx.incident, "status": status},
    )
