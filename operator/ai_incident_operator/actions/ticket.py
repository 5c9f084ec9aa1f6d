"""Ticket: schedule the fix, as an issue in GitHub or Jira (the playbook's severity 3).

GitHub: `POST {api}/repos/{owner}/{repo}/issues` {title, body, labels} with
`Authorization: Bearer <token>`; Jira: `POST {base}/rest/api/2/issue` {fields: {project:
{key}, summary, description, issuetype: {name: Task}}} with a bearer token, or basic
auth when the Secret holds `user:token`. The URL and token come from Secrets in the
operator's namespace under Notify's rules. The issue carries the incident's summary and
a link back (its namespace/name and the `kubectl describe` to run).

Never filed twice: one pass records the intent in the action's status entry (`ticket`:
when, and which operator process); the next files the issue and keeps its URL there and
in `status.tickets[]`. An intent found without a result that this process did not just
make (a crash after the POST, a restart) or a try that got no answer may have filed it:
nothing is sent again until a person says, with the annotation `aiincident.io/ticket`, the
issue's URL (recorded) or `refile`. Within a process a filed issue is remembered, so a pass
retried after a conflicting status write files nothing. Undo does nothing: a ticket
outlives the incident. Of an answer, only its status code and the issue's URL are kept.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
import uuid
from typing import Any

from .. import egress
from ..conditions import now_iso
from ..errors import Conflict
from ..resources import Ref
from .base import Action, ActionContext, Outcome
from .notify import _facts, summary
from .statuspage import PageError, call, secret_value, tenant_of

FORMATS = ("GitHub", "Jira")
TICKET = "ticket"  # the status entry's field
FOR_INCIDENT = "incident"  # status.tickets[].for of the Ticket action's issue
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
_ISSUE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*-\d+$")
_filed: dict[tuple[str, str], str] = {}  # (incident uid, what for) -> URL, in this process
_attempted: set[tuple[str, str]] = set()  # (incident uid, key) tried by this process
PROCESS = uuid.uuid4().hex[:12]  # whose intent an entry records
ANNOTATION = "aiincident.io/ticket"  # a person's word after an unseen outcome: URL or refile
REFILE = "refile"
INTENT_RECHECK = 0.2  # seconds: the pass after the intent's status write files the issue
_filed_lock = threading.Lock()


# --- What the issue says (pure) -----------------------------------------------------------


def describe_hint(incident: dict[str, Any]) -> str:
    meta = incident.get("metadata") or {}
    return f"kubectl describe aiincident -n {meta.get('namespace')} {meta.get('name')}"


def text(incident: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the issue for INCIDENT: its summary and a link back."""
    facts = _facts(incident)
    status = incident.get("status") or {}
    lines = [
        summary(facts),
        "",
        f"Incident: AIIncident {facts['namespace']}/{facts['incident']}",
        f"Severity: {facts['severity'] or '?'} ({status.get('severityReason') or 'not triaged'})",
        f"Category: {facts['category'] or '-'}",
        f"Targets: {', '.join(facts['targets']) or '-'}",
    ]
    if facts["description"]:
        lines += ["", facts["description"].strip()]
    lines += [
        "",
        "Schedule a fix within the normal development cycle.",
        f"Details: `{describe_hint(incident)}`",
    ]
    head = f"[SEV{facts['severity'] or '?'}] {facts['namespace']}/{facts['incident']}: {facts['title']}"
    return head[:250], "\n".join(lines)


def github_issue(title: str, body: str, labels: list[str]) -> dict[str, Any]:
    """GitHub's "create an issue" body."""
    return {"title": title, "body": body, "labels": labels}


def jira_issue(project: str, title: str, body: str, labels: list[str]) -> dict[str, Any]:
    """Jira's "create issue" (REST v2) body."""
    fields: dict[str, Any] = {
        "project": {"key": project},
        "summary": title,
        "description": body,
        "issuetype": {"name": "Task"},
    }
    if labels:
        fields["labels"] = labels
    return {"fields": fields}


def auth_headers(fmt: str, token: str) -> dict[str, str]:
    if fmt == "GitHub":
        return {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
    if ":" in token:  # user:api-token, Jira Cloud's basic auth
        return {"Authorization": f"Basic {base64.b64encode(token.encode()).decode()}"}
    return {"Authorization": f"Bearer {token}"}


def issue_url(fmt: str, base: str, answer: Any) -> str:
    """The filed issue's URL from ANSWER ('' if it names none we can trust)."""
    if not isinstance(answer, dict):
        return ""
    if fmt == "GitHub":
        url = answer.get("html_url")
        return url if _web_url(url) else ""
    key = answer.get("key")
    if isinstance(key, str) and _ISSUE_KEY.match(key):
        return f"{base.rstrip('/')}/browse/{key}"
    url = answer.get("self")
    return url if _web_url(url) else ""


def _web_url(url: Any) -> bool:
    return (
        isinstance(url, str)
        and len(url) <= 500
        and urllib.parse.urlsplit(url).scheme in ("http", "https")
        and all(33 <= ord(c) < 127 for c in url)
    )


def tracker_problems(tracker: Any, where: str = "Ticket") -> list[str]:
    if not isinstance(tracker, dict):
        return [f"{where}: tracker is required ({{format, urlSecretRef, tokenSecretRef, project}})"]
    problems = []
    fmt = tracker.get("format")
    if fmt not in FORMATS:
        problems.append(f"{where}: tracker.format must be one of {', '.join(FORMATS)}")
    for field in ("urlSecretRef", "tokenSecretRef"):
        ref = tracker.get(field)
        if not isinstance(ref, dict) or not ref.get("name") or not ref.get("key"):
            problems.append(f"{where}: tracker.{field} needs name and key (a Secret)")
    project = tracker.get("project")
    if not isinstance(project, str) or not project:
        problems.append(f"{where}: tracker.project is required (OWNER/REPO or a Jira KEY)")
    elif fmt == "GitHub" and not _REPO.match(project):
        problems.append(f"{where}: tracker.project {project!r} is not OWNER/REPO")
    elif fmt == "Jira" and not _KEY.match(project):
        problems.append(f"{where}: tracker.project {project!r} is not a Jira project key")
    return problems


# --- Filing -------------------------------------------------------------------------------


def file_issue(api: Any, tracker: dict[str, Any], tenant: str | None, title: str, body: str) -> str:
    """File one issue; its URL. Raises PageError (words fit for a status)."""
    fmt = tracker.get("format")
    base = secret_value(api, tracker.get("urlSecretRef") or {}, tenant).rstrip("/")
    token = secret_value(api, tracker.get("tokenSecretRef") or {}, tenant)
    labels = [str(label) for label in tracker.get("labels") or []]
    if fmt == "GitHub":
        owner, _, repo = str(tracker["project"]).partition("/")
        path = f"/repos/{urllib.parse.quote(owner)}/{urllib.parse.quote(repo)}/issues"
        request = github_issue(title, body, labels)
    else:
        path = "/rest/api/2/issue"
        request = jira_issue(str(tracker["project"]), title, body, labels)
    _, answer = call("POST", base + path, request, auth_headers(fmt, token), idempotent=False)
    url = issue_url(fmt, base, answer)
    if not url:
        raise PageError(f"{fmt} answered without the issue's URL")
    return url


def remembered(uid: str, what: str) -> str:
    with _filed_lock:
        return _filed.get((uid, what), "")


def remember(uid: str, what: str, url: str) -> None:
    with _filed_lock:
        _filed[(uid, what)] = url


def add_ticket(status: dict[str, Any], url: str, what: str) -> bool:
    """Record URL in STATUS.tickets (once); whether it was new."""
    tickets = status.setdefault("tickets", [])
    if any(t.get("url") == url for t in tickets):
        return False
    tickets.append({"url": url, "for": what})
    return True


def sync_tickets(status: dict[str, Any], entries: list[dict[str, Any]]) -> None:
    """Every Ticket entry's issue in STATUS.tickets (the engine calls it as it writes)."""
    for entry in entries:
        url = (entry.get(TICKET) or {}).get("url")
        if entry.get("action") == Ticket.type and url:
            add_ticket(status, url, FOR_INCIDENT)


class Ticket(Action):
    type = "Ticket"
    per_incident = True  # one issue per incident, however many targets
    once = True  # never filed again while Applied
    outside = True

    def key(self, spec: dict[str, Any]) -> str:
        return f"Ticket:{(spec.get('tracker') or {}).get('project', '')}"

    def validate(self, spec: dict[str, Any], policy: dict[str, Any]) -> list[str]:
        return tracker_problems(spec.get("tracker"))

    def apply(self, ctx: ActionContext) -> Outcome:
        tracker = ctx.spec.get("tracker") or {}
        kept = dict(ctx.entry.get(TICKET) or {})
        uid = ctx.incident["metadata"].get("uid") or ctx.holder
        url = kept.get("url") or remembered(uid, ctx.key)
        if url:
            return Outcome("Applied", f"filed {url}", keep={TICKET: {**kept, "url": url}})
        where = f"{tracker.get('format')} {tracker.get('project')}"
        if ctx.dry_run:
            return Outcome("DryRun", f"would file an issue in {where}")
        said = ((ctx.incident["metadata"].get("annotations") or {}).get(ANNOTATION) or "").strip()
        attempt = (uid, ctx.key)
        if kept.get("intentAt") and (kept.get("by") != PROCESS or attempt in _attempted):
            # A try whose outcome nobody saw (a crash, no answer): it may have been filed.
            if _web_url(said):
                words = f"filed {said} (recorded as {ANNOTATION} says)"
                return Outcome("Applied", words, keep={TICKET: {**kept, "url": said}})
            if said != REFILE:
                return Outcome("Failed", self._unknown(ctx, where, kept), keep={TICKET: kept})
            kept = {}  # a person looked: nothing there, file again
        if not kept.get("intentAt"):
            # The intent goes to the status first, in this pass; the issue is filed in the
            # next, so a crash in between is seen for what it is and never files twice.
            kept = {"intentAt": now_iso(), "by": PROCESS}
            return Outcome(
                "Skipped", f"filing an issue in {where} (intent recorded)",
                keep={TICKET: kept}, recheck=INTENT_RECHECK,
            )  # fmt: skip
        with _filed_lock:
            _attempted.add(attempt)
        title, body = text(ctx.incident)
        try:
            url = file_issue(ctx.api, tracker, tenant_of(ctx), title, body)
        except PageError as err:
            words = f"no issue filed in {where}: {err}"
            ctx.api.event(ctx.incident, "TicketFailed", words, warning=True)
            if err.unknown:
                kept["unknownAt"] = now_iso()
                return Outcome(
                    "Failed", f"{words}; {self._unknown(ctx, where, kept)}", keep={TICKET: kept}
                )
            with _filed_lock:
                _attempted.discard(attempt)  # surely not filed: a new intent, a new try
            return Outcome("Failed", words, keep={TICKET: {}})
        remember(uid, ctx.key, url)
        ctx.api.event(ctx.incident, "TicketFiled", f"filed {url}")
        return Outcome("Applied", f"filed {url}", changed=True, keep={TICKET: {**kept, "url": url}})

    def _unknown(self, ctx: ActionContext, where: str, kept: dict[str, Any]) -> str:
        meta = ctx.incident["metadata"]
        return (
            f"an issue may have been filed in {where} (tried at {kept.get('intentAt')}, no answer "
            f"seen): look there, then `kubectl annotate aiincident -n {meta['namespace']} "
            f"{meta['name']} {ANNOTATION}=URL` to record it, or `{ANNOTATION}={REFILE}` to file "
            "it again"
        )

    def revert(self, ctx: ActionContext, objects: list[str]) -> Outcome:
        url = (ctx.entry.get(TICKET) or {}).get("url")
        return Outcome(
            "Reverted", f"{url or 'no issue'} kept: a ticket outlives the incident", objects
        )


# --- The review's action items (aiincident review --file-action-items) --------------------


def item_for(item: dict[str, Any]) -> str:
    """status.tickets[].for of an action item's issue."""
    return f"action item: {' '.join(str(item.get('description', '')).split())[:200]}"


def policy_tracker(policy_spec: dict[str, Any], severity: int | None) -> dict[str, Any] | None:
    """The tracker of the policy's Ticket action: the incident's severity's first, else any."""
    found = [
        (response.get("severity") == severity, action.get("tracker"))
        for response in policy_spec.get("responses") or []
        for action in response.get("actions") or []
        if action.get("type") == Ticket.type and isinstance(action.get("tracker"), dict)
    ]
    found.sort(key=lambda pair: not pair[0])  # stable: the severity's own first
    return found[0][1] if found else None


def item_text(incident: dict[str, Any], item: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of the issue for one action item of INCIDENT's review."""
    meta = incident.get("metadata") or {}
    what = " ".join(str(item.get("description", "")).split())
    lines = [
        what,
        "",
        f"Action item of the post-incident review of AIIncident {meta.get('namespace')}/"
        f"{meta.get('name')}.",
        f"Owner: {item.get('owner') or '(no owner yet)'}",
        "",
        f"Review: `aiincident review -n {meta.get('namespace')} {meta.get('name')}`",
        f"Details: `{describe_hint(incident)}`",
    ]
    return f"[{meta.get('namespace')}/{meta.get('name')}] {what}"[:250], "\n".join(lines)


def file_action_items(
    api: Any, incident: dict[str, Any], policy: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """File each open action item of INCIDENT's review not filed before, with POLICY's
    tracker; record them in status.tickets. Returns (what was filed, what failed), in words.
    """
    status = incident.get("status") or {}
    tracker = policy_tracker(policy.get("spec") or {}, status.get("severity"))
    if tracker is None or tracker_problems(tracker):
        meta = policy.get("metadata") or {}
        raise PageError(f"{policy.get('kind')} {meta.get('name')} has no valid Ticket tracker")
    meta = incident["metadata"]
    tenant = egress.scope_of_ref(status.get("policyRef"), meta["namespace"])
    known = {t.get("for") for t in status.get("tickets") or []}
    items = ((incident.get("spec") or {}).get("review") or {}).get("actionItems") or []
    filed: list[tuple[str, str]] = []
    failed: list[str] = []
    for item in items:
        what = item_for(item)
        if item.get("done") or what in known:
            continue
        known.add(what)
        try:
            url = file_issue(api, tracker, tenant, *item_text(incident, item))
        except PageError as err:
            failed.append(f"{what}: {err}")
            continue
        filed.append((url, what))
    ref = Ref("AIIncident", meta["namespace"], meta["name"])
    current = incident
    for _ in range(10):  # the operator writes the status too: merge, conditional, again
        latest = dict(current.get("status") or {})
        latest["tickets"] = list(latest.get("tickets") or [])
        if not any([add_ticket(latest, url, what) for url, what in filed]):
            break
        try:
            api.patch_status(
                ref, {"tickets": latest["tickets"]}, current["metadata"]["resourceVersion"]
            )
            break
        except Conflict:
            current = api.get(ref) or current
    return [f"{url} ({what})" for url, what in filed], failed


def file_for_review(api: Any, incident: dict[str, Any]) -> list[str]:
    """What `aiincident review --file-action-items` says it filed; PageError when it could
    not (no policy, no tracker, or an item that failed: the others are still recorded)."""
    ref = (incident.get("status") or {}).get("policyRef") or {}
    meta = incident["metadata"]
    if not ref.get("name"):
        raise PageError(f"AIIncident {meta['namespace']}/{meta['name']} has no policy (policyRef)")
    policy = api.get(Ref(ref.get("kind", "MitigationPolicy"), ref.get("namespace"), ref["name"]))
    if policy is None:
        raise PageError(f"{ref.get('kind', 'MitigationPolicy')} {ref['name']} not found")
    filed, failed = file_action_items(api, incident, policy)
    if failed:
        raise PageError("not filed: " + "; ".join(failed))
    return [f"filed {line}" for line in filed] or ["no open action items left to file"]
