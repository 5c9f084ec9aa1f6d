"""StatusPage and Ticket (issue 15 items 3 and 5): the exact bodies, what is kept, validation."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator import policy as policies
from ai_incident_operator.actions import registry
from ai_incident_operator.actions import statuspage as sp
from ai_incident_operator.actions import ticket as tk

PAGE = {
    "format": "Statuspage",
    "urlSecretRef": {"name": "sp", "key": "url"},
    "tokenSecretRef": {"name": "sp", "key": "token"},
}
TRACKER = {
    "format": "GitHub",
    "urlSecretRef": {"name": "gh", "key": "url"},
    "tokenSecretRef": {"name": "gh", "key": "token"},
    "project": "o/r",
}


def incident(phase: str = "Triaged", **spec) -> dict:
    return {
        "metadata": {"name": "inc", "namespace": "prod", "uid": "u-1"},
        "spec": {"category": "CostAnomaly", "title": "Token bill", **spec},
        "status": {
            "phase": phase,
            "severity": 3,
            "severityReason": "rule cost",
            "targets": [{"kind": "Deployment", "namespace": "prod", "name": "chat-llm"}],
        },
    }


# --- StatusPage ---------------------------------------------------------------------------


def test_the_statuspage_incident_is_opened_with_the_policys_words():
    spec = {"type": "StatusPage", "page": PAGE, "message": "Some answers may be unavailable."}
    assert sp.statuspage_open(spec, "investigating", 1) == {
        "incident": {
            "name": "Degraded service",
            "status": "investigating",
            "body": "Some answers may be unavailable.",
            "impact_override": "major",
        }
    }


def test_components_are_marked_by_severity_and_operational_on_resolve():
    spec = {"page": {**PAGE, "componentIds": ["c1"]}, "title": "Chat assistant"}
    opened = sp.statuspage_open(spec, "investigating", 2)["incident"]
    assert opened["name"] == "Chat assistant"
    assert opened["component_ids"] == ["c1"]
    assert opened["components"] == {"c1": "partial_outage"}
    assert sp.statuspage_update(spec, "resolved") == {
        "incident": {
            "status": "resolved",
            "body": sp.DEFAULT_MESSAGES["resolved"],
            "components": {"c1": "operational"},
        }
    }


def test_updates_follow_the_phase_with_the_message_per_phase():
    spec = {"page": PAGE, "messages": {"mitigated": "A safe fallback answers for now."}}
    assert sp.step_of(incident("Triaged")) == "investigating"
    assert sp.step_of(incident("Mitigating")) == "investigating"
    assert sp.step_of(incident("Mitigated")) == "mitigated"
    assert sp.step_of(incident("Resolving")) == "verifying"
    assert sp.statuspage_update(spec, "mitigated") == {
        "incident": {"status": "identified", "body": "A safe fallback answers for now."}
    }
    assert sp.statuspage_update(spec, "verifying")["incident"]["status"] == "monitoring"


def test_the_generic_form_names_the_incident_by_a_key():
    spec = {"page": {**PAGE, "format": "Generic"}, "message": "Slow answers."}
    assert sp.generic(spec, "investigating", "u-1", 2) == {
        "event": "incident",
        "key": "u-1",
        "status": "investigating",
        "title": "Degraded service",
        "message": "Slow answers.",
        "severity": 2,
    }
    assert sp.generic(spec, "resolved", "u-1", 2)["event"] == "resolved"


@given(
    title=st.text(min_size=1, max_size=40),
    description=st.text(max_size=80),
    step=st.sampled_from(["investigating", "mitigated", "verifying", "resolved"]),
)
def test_what_users_read_comes_from_the_policy_only(title, description, step):
    """Nothing of the incident (title, description, workloads, namespace) reaches the page."""
    spec = {"page": PAGE, "message": "m", "messages": {"resolved": "r"}}
    body = (
        sp.statuspage_update(spec, step)
        if step == "resolved"
        else sp.statuspage_open(spec, step, 1)
    )
    words = body["incident"]["body"]
    assert words in ("m", "r", *sp.DEFAULT_MESSAGES.values())
    assert body["incident"].get("name", sp.DEFAULT_TITLE) == sp.DEFAULT_TITLE


def test_only_an_id_shaped_answer_is_kept():
    assert sp.answered_id({"id": "p31zjtct2jer"}) == "p31zjtct2jer"
    assert sp.answered_id({"id": 42}) == "42"
    assert sp.answered_id({"id": "<script>"}) == ""
    assert sp.answered_id({"name": "x"}) == ""
    assert sp._json(b"not json") == {} and sp.answered_id([1]) == ""


def test_statuspage_validation():
    action = registry()["StatusPage"]
    assert action.validate({"type": "StatusPage", "page": PAGE}, {}) == []
    assert action.validate({"type": "StatusPage"}, {}) == [
        "StatusPage: page is required ({format, urlSecretRef, tokenSecretRef})"
    ]
    no_token = {"format": "Statuspage", "urlSecretRef": {"name": "sp", "key": "url"}}
    assert action.validate({"page": no_token}, {}) == [
        "StatusPage: page.tokenSecretRef needs name and key (a Secret)"
    ]
    generic = {"format": "Generic", "urlSecretRef": {"name": "sp", "key": "url"}}
    assert action.validate({"page": generic}, {}) == []
    assert action.validate({"page": PAGE, "messages": {"fixed": "x"}}, {}) == [
        "StatusPage: messages has fixed; known: investigating, mitigated, resolved"
    ]
    assert action.key({"page": PAGE}) == "StatusPage:sp/url"


def test_the_entry_keeps_secret_references_never_values():
    assert sp._refs({**PAGE, "componentIds": ["c"]}) == {
        "format": "Statuspage",
        "urlSecretRef": {"name": "sp", "key": "url"},
        "tokenSecretRef": {"name": "sp", "key": "token"},
    }


# --- Ticket -------------------------------------------------------------------------------


def test_the_github_issue_has_the_summary_and_a_link_back():
    title, body = tk.text(incident(description="Token spend tripled overnight."))
    assert title == "[SEV3] prod/inc: Token bill"
    assert tk.github_issue(title, body, ["incident"]) == {
        "title": "[SEV3] prod/inc: Token bill",
        "body": body,
        "labels": ["incident"],
    }
    assert body.splitlines() == [
        "[SEV3] prod/inc CostAnomaly: Token bill (Triaged; Deployment/chat-llm)",
        "",
        "Incident: AIIncident prod/inc",
        "Severity: 3 (rule cost)",
        "Category: CostAnomaly",
        "Targets: Deployment/chat-llm",
        "",
        "Token spend tripled overnight.",
        "",
        "Schedule a fix within the normal development cycle.",
        "Details: `kubectl describe aiincident -n prod inc`",
    ]


def test_the_jira_issue_is_a_task_in_the_project():
    assert tk.jira_issue("AI", "t", "b", []) == {
        "fields": {
            "project": {"key": "AI"},
            "summary": "t",
            "description": "b",
            "issuetype": {"name": "Task"},
        }
    }
    assert tk.jira_issue("AI", "t", "b", ["x"])["fields"]["labels"] == ["x"]


def test_auth_headers():
    assert tk.auth_headers("GitHub", "ghp") == {
        "Authorization": "Bearer ghp",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    basic = base64.b64encode(b"me@x.io:tok").decode()
    assert tk.auth_headers("Jira", "me@x.io:tok") == {"Authorization": f"Basic {basic}"}
    assert tk.auth_headers("Jira", "pat") == {"Authorization": "Bearer pat"}


def test_the_issue_url_is_taken_from_the_answer_only_when_it_is_one():
    assert (
        tk.issue_url("GitHub", "", {"html_url": "https://github.com/o/r/issues/7"})
        == "https://github.com/o/r/issues/7"
    )
    assert tk.issue_url("GitHub", "", {"html_url": "javascript:alert(1)"}) == ""
    assert tk.issue_url("Jira", "https://j.example/", {"key": "AI-12", "self": "x"}) == (
        "https://j.example/browse/AI-12"
    )
    assert tk.issue_url("Jira", "https://j", {"self": "https://j/rest/api/2/issue/1"}) == (
        "https://j/rest/api/2/issue/1"
    )
    assert tk.issue_url("Jira", "https://j", {}) == ""


def test_tickets_land_in_status_once():
    status: dict = {}
    entries = [
        {"action": "Ticket", "ticket": {"url": "https://g/1"}},
        {"action": "Ticket", "ticket": {"intentAt": "2026-01-01T00:00:00Z"}},
        {"action": "Notify"},
    ]
    tk.sync_tickets(status, entries)
    tk.sync_tickets(status, entries)
    assert status["tickets"] == [{"url": "https://g/1", "for": "incident"}]
    assert tk.add_ticket(status, "https://g/2", "action item: add a canary") is True
    assert tk.add_ticket(status, "https://g/2", "action item: add a canary") is False


def test_ticket_validation_and_policy_readiness():
    action = registry()["Ticket"]
    assert action.validate({"tracker": TRACKER}, {}) == []
    assert action.validate({}, {}) == [
        "Ticket: tracker is required ({format, urlSecretRef, tokenSecretRef, project})"
    ]
    assert action.validate({"tracker": {**TRACKER, "project": "no-slash"}}, {}) == [
        "Ticket: tracker.project 'no-slash' is not OWNER/REPO"
    ]
    jira = {**TRACKER, "format": "Jira", "project": "AI"}
    assert action.validate({"tracker": jira}, {}) == []
    missing = {"format": "Jira", "project": "ai"}
    assert action.validate({"tracker": missing}, {}) == [
        "Ticket: tracker.urlSecretRef needs name and key (a Secret)",
        "Ticket: tracker.tokenSecretRef needs name and key (a Secret)",
        "Ticket: tracker.project 'ai' is not a Jira project key",
    ]
    # The policy's own check (Ready=False) says it, with where.
    spec = {"responses": [{"severity": 3, "actions": [{"type": "Ticket"}]}]}
    assert policies.validate(spec) == [
        "responses[0].actions[0] (Ticket): Ticket: tracker is required "
        "({format, urlSecretRef, tokenSecretRef, project})"
    ]


def test_an_unseen_open_takes_only_a_matching_newer_incident():
    listed = [
        {"id": "old", "name": "Degraded service", "created_at": "2026-01-01T09:00:00Z"},
        {"id": "other", "name": "Billing", "created_at": "2026-01-01T10:00:05Z"},
        {"id": "mine", "name": "Degraded service", "created_at": "2026-01-01T10:00:03Z"},
        {"id": "later", "name": "Degraded service", "created_at": "2026-01-01T10:05:00Z"},
    ]
    assert sp.adoptable(listed, "Degraded service", "2026-01-01T10:00:02Z") == "mine"
    assert sp.adoptable(listed, "Chat", "2026-01-01T10:00:02Z") == ""
    assert sp.adoptable({"error": "x"}, "Degraded service", "2026-01-01T10:00:02Z") == ""
