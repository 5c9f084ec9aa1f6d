"""The dashboard's pages (pure rendering) and its host rules.

Whatever an alert or an incident says, it is text on the page, never markup; open
incidents come first, worst first; a mitigation shows each field it changed, before
and now; a read-only dashboard has no forms; only the loopback names reach it.
"""

from __future__ import annotations

import html.parser

from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator import incident_writes
from ai_incident_operator.dashboard import allowed_hosts, render, split_listen
from ai_incident_operator.fieldpath import ABSENT

PAGE = render.Page(title="t", scope="namespace prod", user="alice", csrf="tok")


def incident(name: str, severity=1, phase="Mitigated", **status) -> dict:
    return {
        "metadata": {"name": name, "namespace": "prod", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"category": "HarmfulOutput", "title": f"title of {name}", "target": {"name": "chat"}},
        "status": {"severity": severity, "phase": phase, **status},
    }  # fmt: skip


class _Elements(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)


def _tags(text: str) -> list[str]:
    parser = _Elements()
    parser.feed(text)
    return parser.tags


@given(st.text(max_size=80))
def test_what_the_cluster_says_is_text_never_markup(text):
    hostile = incident("x", phase=text, message=text, timeline=[{"type": text, "message": text}])
    hostile["spec"]["title"] = text
    page = render.incident_page(
        PAGE, render.IncidentDetails(hostile, review=text, evidence={text: text})
    )
    clean = render.incident_page(PAGE, render.IncidentDetails(incident("x")))
    assert "script" not in _tags(page)[_tags(page).index("main") :]
    assert _tags(page).count("script") == _tags(clean).count("script") == 1


def test_open_incidents_come_first_worst_first():
    rows = render.incident_rows(
        [incident("done", 1, "Resolved"), incident("minor", 3), incident("worst", 1, "AwaitingApproval")],
        show_namespace=False,
    )  # fmt: skip
    assert rows.index("worst") < rows.index("minor") < rows.index("done")
    assert "Open incidents (2)" in rows and "Resolved and closed (1)" in rows
    assert ">approval<" in rows  # what it waits for


def test_a_mitigation_shows_each_field_before_and_now():
    entry = {"action": "ScaleToZero", "target": "Deployment/chat", "state": "Applied",
             "objects": ["Deployment/chat"], "originals": {"Deployment/chat": {"/spec/replicas": 6}}}  # fmt: skip
    details = render.IncidentDetails(
        incident("x", mitigations=[entry]),
        fields={"Deployment/chat": [render.Field("/spec/replicas", 6, 0),
                                    render.Field("/metadata/annotations/x", ABSENT, "1")]},
    )  # fmt: skip
    live = render.incident_live(details)
    assert "<code>/spec/replicas</code></th><td><code>6</code></td><td><code>0</code>" in live
    assert "<i>absent</i>" in live


def test_actions_follow_the_phase_and_a_read_only_page_has_no_forms():
    waiting = render.IncidentDetails(
        incident("x", phase="AwaitingApproval", reviewRef={"name": "r"})
    )
    page = render.incident_page(PAGE, waiting)
    for action in ("approve", "acknowledge", "resolve", "review-complete"):
        assert f'action="/incidents/prod/x/{action}"' in page
    assert '<label for="root-cause">' in page and 'id="root-cause"' in page
    read_only = render.incident_page(render.Page("t", "all namespaces", "viewer"), waiting)
    assert "<form" not in read_only and "read-only" in read_only


def test_the_dashboards_writes_are_the_clis():
    assert incident_writes.resolve("bob", "a template", "rolled back", True) == {"spec": {"resolution": {
        "requested": True, "rootCause": "a template", "fix": "rolled back", "by": "bob",
        "skipVerification": True}}}  # fmt: skip
    assert incident_writes.approve("al") == {"spec": {"approved": True, "approvedBy": "al"}}


def test_only_the_loopback_names_reach_a_loopback_dashboard():
    hosts = allowed_hosts(*split_listen("127.0.0.1:3100"), [])
    assert hosts == {"127.0.0.1:3100", "localhost:3100", "[::1]:3100"}
    assert "dash.example:3100" in allowed_hosts("127.0.0.1", 3100, ["dash.example"])
    assert allowed_hosts("10.0.0.5", 80, []) == {"10.0.0.5:80"}
