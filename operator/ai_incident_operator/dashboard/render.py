"""The dashboard's pages as HTML (pure: objects in, text out; no I/O).

Everything shown comes from the cluster, where anyone who may write an alert or an
incident writes it: every value is escaped (`esc`), and nothing is ever inserted as
markup. Pages read without JavaScript; the script only swaps in the live regions the
server renders here (`incident_rows`, `incident_live`) as the watch sends them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

from ..fieldpath import ABSENT
from ..reports import age, target_text

Body = dict[str, Any]
DONE_PHASES = ("Resolved", "Closed")
SEVERITY_NAMES = {1: "SEV1", 2: "SEV2", 3: "SEV3"}


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def incident_path(namespace: str, name: str) -> str:
    return f"/incidents/{quote(namespace, safe='')}/{quote(name, safe='')}"


@dataclass
class Field:
    """One field a mitigation changed: its original (the ledger's) and its value now."""

    path: str
    before: Any
    now: Any = ABSENT


@dataclass
class Page:
    """What every page needs besides its content."""

    title: str
    scope: str  # "namespace prod", "all namespaces"
    user: str
    csrf: str = ""  # empty: read-only, no forms
    ask_identity: bool = False  # served by the operator: a write needs the token and a name
    notice: tuple[bool, str] | None = None  # (ok, message) of the last action
    watch_error: str = ""  # why the live view may be stale


@dataclass
class IncidentDetails:
    """An incident and what its page shows beside it, read by the server."""

    incident: Body
    fields: dict[str, list[Field]] = field(default_factory=dict)  # object -> changed fields
    evidence: Mapping[str, str] = field(default_factory=dict)  # evidence ConfigMap data
    review: str = ""  # the review draft (review.md)
    problems: list[str] = field(default_factory=list)  # what could not be read, and why


# --- Layout --------------------------------------------------------------------------------


def layout(page: Page, main: str) -> str:
    notice = ""
    if page.notice is not None:
        ok, message = page.notice
        role = "status" if ok else "alert"
        notice = f'<p class="notice {"ok" if ok else "refused"}" role="{role}">{esc(message)}</p>'
    stale = (
        f'<p class="notice refused" role="alert">{esc(page.watch_error)}</p>'
        if page.watch_error
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(page.title)} · AI incidents</title>"
        '<link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head>'
        '<body><a class="skip" href="#main">Skip to content</a>'
        '<header><nav aria-label="Main"><a href="/">Incidents</a> <a href="/policies">Policies</a>'
        f"</nav><p>{esc(page.scope)} · signed in to the cluster as <b>{esc(page.user)}</b></p>"
        f'</header><main id="main">{notice}{stale}{main}</main></body></html>\n'
    )


def _badge(severity: Any) -> str:
    name = SEVERITY_NAMES.get(severity) if isinstance(severity, int) else None
    label = name or "SEV?"
    return f'<span class="sev sev{severity if name else "x"}">{label}</span>'


def _table(caption: str, header: list[str], rows: Iterable[list[str]], empty: str) -> str:
    """A table of already escaped cells."""
    rows = list(rows)
    if not rows:
        return f'<p class="empty">{esc(empty)}</p>'
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><caption>{esc(caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- The list of incidents -----------------------------------------------------------------


def _open_first(incident: Body) -> tuple:
    status = incident.get("status") or {}
    severity = status.get("severity")
    return (
        status.get("phase") in DONE_PHASES,
        severity if isinstance(severity, int) else 9,
        incident["metadata"].get("creationTimestamp") or "",
        incident["metadata"].get("namespace", ""),
        incident["metadata"]["name"],
    )


def _acknowledged(spec: Body) -> str:
    ack = spec.get("acknowledged") or {}
    return f"by {esc(ack.get('by') or 'someone')}" if ack else '<span class="warn">no</span>'


def _waiting(status: Body) -> str:
    if status.get("phase") == "AwaitingApproval":
        return '<span class="warn">approval</span>'
    condition = next((c for c in status.get("conditions") or [] if c.get("type") == "Verified"), {})
    if status.get("phase") == "Resolving" and condition.get("status") == "False":
        return esc(condition.get("reason") or "verification")
    return ""


def incident_rows(incidents: Iterable[Body], show_namespace: bool) -> str:
    """The live region of the list: open incidents first, worst first, oldest first."""
    ordered = sorted(incidents, key=_open_first)
    open_, done = [], []
    for i in ordered:
        (done if (i.get("status") or {}).get("phase") in DONE_PHASES else open_).append(i)
    header = ["Severity", "Incident", "Phase", "Age", "Target", "Acknowledged", "Waiting for"]
    if show_namespace:
        header.insert(1, "Namespace")

    def row(incident: Body) -> list[str]:
        meta = incident["metadata"]
        spec, status = incident.get("spec") or {}, incident.get("status") or {}
        cells = [
            _badge(status.get("severity")),
            f'<a href="{incident_path(meta["namespace"], meta["name"])}">{esc(meta["name"])}</a>'
            f"<br><small>{esc(spec.get('category'))}: {esc(_title(spec))}</small>",
            f'<span class="phase">{esc(status.get("phase") or "Pending")}</span>',
            esc(age(meta.get("creationTimestamp"))),
            esc(target_text(spec)),
            _acknowledged(spec),
            _waiting(status),
        ]
        if show_namespace:
            cells.insert(1, esc(meta["namespace"]))
        return cells

    return _table(
        f"Open incidents ({len(open_)})", header, (row(i) for i in open_), "No open incidents."
    ) + _table(
        f"Resolved and closed ({len(done)})",
        header,
        (row(i) for i in done[:50]),
        "None resolved yet.",
    )


def incident_list(page: Page, incidents: Iterable[Body], show_namespace: bool) -> str:
    live = incident_rows(incidents, show_namespace)
    return layout(
        page,
        "<h1>Incidents</h1>"
        f'<div id="live" aria-live="polite" data-events="/events?view=list">{live}</div>',
    )


def _title(spec: Body) -> str:
    description = spec.get("description") or ""
    return spec.get("title") or description.strip().split("\n")[0] or "(no title)"


# --- One incident --------------------------------------------------------------------------


def _value(value: Any) -> str:
    if value is ABSENT:
        return "<i>absent</i>"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return f"<code>{esc(text)}</code>"


def _summary(incident: Body) -> str:
    meta = incident["metadata"]
    spec, status = incident.get("spec") or {}, incident.get("status") or {}
    policy = status.get("policyRef") or {}
    facts = [
        ("Severity", _badge(status.get("severity")) + f" {esc(status.get('severityReason'))}"),
        ("Phase", f'<span class="phase">{esc(status.get("phase") or "Pending")}</span>'),
        ("Category", esc(spec.get("category"))),
        ("Target", esc(_targets(status) or target_text(spec))),
        ("Age", esc(age(meta.get("creationTimestamp")))),
        ("Acknowledged", _acknowledged(spec)),
        ("Policy", esc(f"{policy.get('kind', '')} {policy.get('name', '')}".strip() or "none")),
        ("Message", esc(status.get("message"))),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in facts)
    return f'<dl class="facts">{items}</dl>'


def _targets(status: Body) -> str:
    return ", ".join(
        f"{t.get('kind', 'Deployment')}/{t.get('name')}" for t in status.get("targets") or []
    )


def _targets(status: Body) -> str:
    return ", ".join(
        f"{t.get('kind', 'Deployment')}/{t.get('name')}" for t in status.get("targets") or []
    )


def _conditions(status: Body) -> str:
    rows = [
        [esc(c.get("type")), f'<span class="cond {esc(c.get("status"))}">{esc(c.get("status"))}</span>',
         esc(c.get("reason")), esc(c.get("message")), esc(c.get("lastTransitionTime"))]
        for c in status.get("conditions") or []
    ]  # fmt: skip
    return _table("Conditions", ["Type", "Status", "Reason", "Message", "Since"], rows,
                  "No conditions yet.")  # fmt: skip


def _changed_fields(entry: Body, fields: Mapping[str, list[Field]]) -> str:
    parts = []
    for obj in entry.get("objects") or list((entry.get("originals") or {}).keys()):
        changed = fields.get(obj) or []
        if not changed:
            continue
        rows = "".join(
            f'<tr><th scope="row"><code>{esc(f.path)}</code></th><td>{_value(f.before)}</td>'
            f"<td>{_value(f.now)}</td></tr>"
            for f in changed
        )
        parts.append(
            f'<table class="diff"><caption>{esc(obj)}</caption><thead><tr><th scope="col">Field</th>'
            f'<th scope="col">Before</th><th scope="col">Now</th></tr></thead><tbody>{rows}</tbody></table>'
        )
    return "".join(parts)


def _mitigations(status: Body, fields: Mapping[str, list[Field]]) -> str:
    entries = status.get("mitigations") or []
    if not entries:
        return '<h2>Mitigations</h2><p class="empty">The operator changed nothing.</p>'
    out = ["<h2>Mitigations</h2>"]
    for entry in entries:
        out.append(
            '<section class="mitigation">'
            f"<h3>{esc(entry.get('action'))} on {esc(entry.get('target'))}: "
            f'<span class="state">{esc(entry.get("state"))}</span></h3>'
            f"<p>{esc(entry.get('message'))}</p>"
            f"<p><small>applied {esc(entry.get('appliedAt') or '-')}"
            f" · reverted {esc(entry.get('revertedAt') or '-')}</small></p>"
            f"{_changed_fields(entry, fields)}</section>"
        )
    return "".join(out)


def _hypotheses(status: Body) -> str:
    rows = [
        [esc(h.get("cause")), esc(h.get("confidence")),
         "<br>".join(esc(e) for e in h.get("evidence") or [])]
        for h in status.get("hypotheses") or []
    ]  # fmt: skip
    return _table("Hypotheses", ["Cause", "Confidence", "Evidence"], rows, "No hypotheses yet.")


def _reproduction(status: Body) -> str:
    repro = status.get("reproduction") or {}
    if not repro:
        return ""
    rows = []
    for version in ("current", "previous", "fix"):
        result = repro.get(version)
        if isinstance(result, dict):
            rows.append([esc(version), esc(json.dumps(result, sort_keys=True))])
    head = f"<p>{esc(repro.get('count', 0))} examples, {esc(repro.get('failing', 0))} failing, at {esc(repro.get('at'))}</p>"
    return (
        "<h2>Reproduction</h2>"
        + head
        + _table("Results by model version", ["Version", "Result"], rows, "")
    )


def _timeline(status: Body) -> str:
    rows = [
        [esc(t.get("time")), esc(t.get("type")), esc(t.get("message"))]
        for t in status.get("timeline") or []
    ]
    return _table("Timeline", ["Time", "What", "Detail"], rows, "Nothing happened yet.")


def incident_live(details: IncidentDetails) -> str:
    """The live region of an incident's page: everything the operator's status says."""
    status = details.incident.get("status") or {}
    return (
        _summary(details.incident)
        + _conditions(status)
        + _mitigations(status, details.fields)
        + _hypotheses(status)
        + _reproduction(status)
        + _timeline(status)
    )


def _form(action: str, page: Page, label: str, body: str = "", disabled: str = "") -> str:
    note = f'<p class="hint">{esc(disabled)}</p>' if disabled else ""
    slug = action.rsplit("/", 1)[-1]
    identity = (
        f'<label for="{slug}-by">Your name (recorded as who did it)</label>'
        f'<input id="{slug}-by" name="by" required autocomplete="name">'
        f'<label for="{slug}-token">Dashboard token</label>'
        f'<input id="{slug}-token" name="token" type="password" required>'
        if page.ask_identity
        else ""
    )
    return (
        f'<form method="post" action="{esc(action)}">'
        f'<input type="hidden" name="csrf" value="{esc(page.csrf)}">{body}{identity}'
        f'<button type="submit">{esc(label)}</button>{note}</form>'
    )


def _actions(details: IncidentDetails, page: Page) -> str:
    meta = details.incident["metadata"]
    spec, status = details.incident.get("spec") or {}, details.incident.get("status") or {}
    base = incident_path(meta["namespace"], meta["name"])
    phase = status.get("phase") or "Pending"
    resolution = spec.get("resolution") or {}
    forms = []
    if spec.get("approved"):
        forms.append(f"<p>Approved by {esc(spec.get('approvedBy') or 'someone')}.</p>")
    else:
        waiting = phase == "AwaitingApproval"
        hint = "" if waiting else f"Not awaiting approval (phase {phase})."
        forms.append(_form(f"{base}/approve", page, "Approve the response", disabled=hint))
    if not spec.get("acknowledged"):
        forms.append(_form(f"{base}/acknowledge", page, "Acknowledge: I have it"))
    if resolution.get("requested"):
        forms.append(f"<p>Resolution requested by {esc(resolution.get('by') or 'someone')}.</p>")
    else:
        fields = (
            '<label for="root-cause">Root cause</label>'
            '<textarea id="root-cause" name="rootCause" rows="2"></textarea>'
            '<label for="fix">Fix</label><textarea id="fix" name="fix" rows="2"></textarea>'
            '<label class="check"><input type="checkbox" name="skipVerification" value="true"> '
            "Give traffic back without waiting for readiness or verification</label>"
        )
        forms.append(_form(f"{base}/resolve", page, "Resolve: undo the mitigations", fields))
    if status.get("reviewRef") and not (spec.get("review") or {}).get("completed"):
        forms.append(_form(f"{base}/review-complete", page, "Mark the review complete"))
    if not page.csrf:
        forms = ["<p>This dashboard is read-only.</p>"]
    return (
        f'<section class="actions" aria-label="Actions"><h2>Actions</h2>{"".join(forms)}</section>'
    )


def _documents(details: IncidentDetails) -> str:
    out = ["<h2>Evidence</h2>"]
    if details.evidence:
        for key in sorted(details.evidence):
            out.append(
                f"<details><summary>{esc(key)}</summary><pre>{esc(details.evidence[key])}</pre></details>"
            )
    else:
        out.append('<p class="empty">No evidence collected yet.</p>')
    out.append("<h2>Review draft</h2>")
    out.append(
        f"<pre>{esc(details.review)}</pre>"
        if details.review
        else '<p class="empty">Written when the incident is resolved.</p>'
    )
    out.extend(f'<p class="notice refused" role="alert">{esc(p)}</p>' for p in details.problems)
    return "".join(out)


def incident_page(page: Page, details: IncidentDetails) -> str:
    meta = details.incident["metadata"]
    events = (
        f"/events?view=incident&namespace={quote(meta['namespace'])}&name={quote(meta['name'])}"
    )
    return layout(
        page,
        f"<h1>{esc(meta['name'])} <small>in {esc(meta['namespace'])}</small></h1>"
        f"<p>{esc(_title(details.incident.get('spec') or {}))}</p>"
        + _actions(details, page)
        + f'<div id="live" aria-live="polite" data-events="{esc(events)}">{incident_live(details)}</div>'
        + _documents(details),
    )


# --- Policies ------------------------------------------------------------------------------


def policy_page(page: Page, policies: Iterable[Body], problems: Iterable[str] = ()) -> str:
    rows = []
    for policy in sorted(
        policies,
        key=lambda p: (
            p.get("kind", ""),
            p["metadata"].get("namespace", ""),
            p["metadata"]["name"],
        ),
    ):
        meta = policy["metadata"]
        ready = next(
            (
                c
                for c in (policy.get("status") or {}).get("conditions") or []
                if c.get("type") == "Ready"
            ),
            {},
        )
        rows.append([
            esc(policy.get("kind")), esc(meta.get("namespace") or "(cluster)"), esc(meta["name"]),
            f'<span class="cond {esc(ready.get("status") or "Unknown")}">{esc(ready.get("status") or "Unknown")}</span>',
            esc(ready.get("reason")), esc(ready.get("message")),
        ])  # fmt: skip
    notes = "".join(f'<p class="notice refused" role="alert">{esc(p)}</p>' for p in problems)
    return layout(page, "<h1>Policies</h1>" + notes + _table(
        "Mitigation policies", ["Kind", "Namespace", "Name", "Ready", "Reason", "Message"], rows, "No policies."
    ))  # fmt: skip


def not_found(page: Page, what: str) -> str:
    return layout(page, f'<h1>Not found</h1><p>{esc(what)}</p><p><a href="/">All incidents</a></p>')
