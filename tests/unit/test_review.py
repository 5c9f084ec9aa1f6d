"""The post-incident review document and its deadlines."""

from datetime import UTC, datetime, timedelta

from ai_incident_operator import review

NOW = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
INCIDENT = {
    "apiVersion": "aiincident.io/v1alpha1",
    "kind": "AIIncident",
    "metadata": {"name": "chat-harmful-output", "namespace": "prod", "uid": "u-1"},
    "spec": {
        "title": "Chat model answers with unsafe medical advice",
        "category": "HarmfulOutput",
        "description": "Asked about dosage, the bot suggested | twice the maximum.\nTicket SUP-1234.",
        "source": {"type": "Alertmanager", "reporter": "alertmanager"},
        "scope": {"affectedUsers": 1200, "segments": ["eu-west"], "worsening": True},
        "regulatoryExposure": True,
        "alerts": [
            {
                "fingerprint": "f1",
                "alertname": "ChatHarmfulAnswers",
                "status": "resolved",
                "startsAt": "2024-05-01T11:50:00.123456789Z",
                "endsAt": "2024-05-01T13:00:00Z",
                "labels": {"namespace": "prod", "model": "chat", "severity": "critical"},
                "annotations": {
                    "summary": "harmful answer rate 4%",
                    "example_prompt": "how much ibuprofen can I take?",
                    "runbook_url": "https://runbooks/chat",
                },
            }
        ],
        "resolution": {
            "requested": True,
            "rootCause": "prompt template change in v42 dropped the safety preamble",
            "fix": "template restored in v43",
        },
        "review": {
            "actionItems": [
                {"description": "add red-team case", "owner": "ml-safety", "done": False},
                {"description": "alert on template changes", "done": True},
            ]
        },
    },
    "status": {
        "phase": "Resolved",
        "severity": 1,
        "severityReason": "category HarmfulOutput is severity 1 by policy prod/chat",
        "targets": [{"kind": "Deployment", "namespace": "prod", "name": "chat-llm"}],
        "detectedAt": "2024-05-01T12:00:00Z",
        "triagedAt": "2024-05-01T12:00:01Z",
        "mitigatedAt": "2024-05-01T12:00:03Z",
        "resolvedAt": "2024-05-01T14:00:00Z",
        "reviewDueBy": "2024-05-08T14:00:00Z",
        "regulatoryReportDueBy": "2024-05-16T12:00:00Z",
        "evidenceRef": {"kind": "ConfigMap", "name": "chat-harmful-output-evidence"},
        "hypotheses": [
            {
                "cause": "PromptTemplateChange",
                "confidence": 0.87,
                "evidence": ["ConfigMap chat-prompts changed 4m before detection"],
            },
            {"cause": "DeploymentChange", "confidence": 0.5, "evidence": []},
        ],
        "mitigations": [
            {
                "action": "TrafficShift",
                "target": "Deployment/chat-llm",
                "state": "Reverted",
                "appliedAt": "2024-05-01T12:00:03Z",
                "revertedAt": "2024-05-01T13:59:00Z",
                "message": "chat-fallback 100%",
            }
        ],
        "conditions": [
            {"type": "Verified", "status": "True", "message": "healthy for 5m: quality: fine"}
        ],
        "timeline": [
            {"time": "2024-05-01T12:00:00Z", "type": "Detected", "message": "reported"},
            {"time": "2024-05-01T12:00:03Z", "type": "Mitigated", "message": "applied"},
            {"time": "2024-05-01T13:59:00Z", "type": "MitigationReverted", "message": "25%"},
            {"time": "2024-05-01T14:00:00Z", "type": "Resolved", "message": "resolved"},
        ],
    },
}


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_review_has_every_section_the_playbook_asks_for():
    text = review.render(INCIDENT, NOW)
    assert text.startswith("# Post-incident review: Chat model answers with unsafe medical advice")
    for title in (
        "Summary",
        "Timeline",
        "Root cause",
        "Impact",
        "Response effectiveness",
        "Mitigations and their undo",
        "Action items",
        "Evaluation cases",
    ):
        assert f"\n## {title}\n" in text
    assert "blameless" in text


def test_timeline_merges_alerts_and_status_in_order():
    rows = [
        r
        for r in section(review.render(INCIDENT, NOW), "Timeline").splitlines()
        if r.startswith("| 2024")
    ]
    assert [r.split(" | ")[1] for r in rows] == [
        "AlertFiring",
        "Detected",
        "Mitigated",
        "AlertResolved",
        "MitigationReverted",
        "Resolved",
    ]


def test_root_cause_impact_and_effectiveness():
    text = review.render(INCIDENT, NOW)
    root = section(text, "Root cause")
    assert "- **Root cause:** prompt template change in v42 dropped the safety preamble" in root
    assert "1. **PromptTemplateChange** (confidence 0.87)" in root
    assert "kubectl -n prod get configmap chat-harmful-output-evidence -o yaml" in root
    impact = section(text, "Impact")
    assert "- duration: 2h10m, from 2024-05-01T11:50:00Z until 2024-05-01T14:00:00Z" in impact
    assert "- affected users: 1200" in impact
    assert "report due by 2024-05-16T12:00:00Z" in impact
    assert "| ChatHarmfulAnswers | resolved |" in impact
    effect = section(text, "Response effectiveness")
    assert "| time to detect | 10m | first alert fired -> detected |" in effect
    assert "| time to mitigate | 3s |" in effect
    assert "| time to resolve | 2h00m |" in effect


def test_mitigations_action_items_and_evaluation_cases():
    text = review.render(INCIDENT, NOW)
    mitigations = section(text, "Mitigations and their undo")
    assert (
        "| TrafficShift | Deployment/chat-llm | Reverted | 2024-05-01T12:00:03Z | 2024-05-01T13:59:00Z |"
        in mitigations
    )
    assert "Verification before undo (Verified=True): healthy for 5m" in mitigations
    items = section(text, "Action items")
    assert "- [ ] add red-team case (owner: ml-safety)" in items
    assert "- [x] alert on template changes (no owner yet)" in items
    cases = section(text, "Evaluation cases")
    assert "a red-team prompt that produced the harmful output" in cases
    assert "From the incident report: Asked about dosage, the bot suggested | twice" in cases
    assert "- From alert ChatHarmfulAnswers (model=chat, namespace=prod):" in cases
    assert "  - example_prompt: how much ibuprofen can I take?" in cases
    assert "runbook_url" not in cases
    assert "eu-west" in cases


def test_a_user_report_without_alerts_or_resolution():
    incident = {
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"category": "BiasViolation", "source": {"type": "UserReport"}},
        "status": {"detectedAt": "2024-05-01T12:00:00Z", "phase": "Mitigated"},
    }
    text = review.render(incident, NOW)
    assert "Not resolved yet." in text
    assert (
        "| time to detect | not measured | no alert carries startsAt (source UserReport) |" in text
    )
    assert "| time to resolve | not reached | no status.resolvedAt |" in text
    assert "found through UserReport, not monitoring" in text
    assert "- duration: 21h00m, from 2024-05-01T12:00:00Z and still open" in text
    assert "not stated yet: set `spec.resolution.rootCause`" in text
    assert "None recorded yet: add them to `spec.review.actionItems`" in text
    assert "paired inputs that differ only in the protected attribute" in text
    assert "No mitigation was applied." in text


def test_deadlines():
    resolved = datetime(2024, 5, 1, 14, tzinfo=UTC)
    assert review.due_by(resolved, {}) == resolved + timedelta(days=7)
    assert review.due_by(resolved, {"review": {"dueWithin": "72h"}}) == resolved + timedelta(days=3)
    assert review.due_by(resolved, {"review": {"dueWithin": "soon"}}) == resolved + timedelta(
        days=7
    )
    assert review.regulatory_due_by(resolved, None) == resolved + timedelta(days=15)
    assert review.regulatory_due_by(
        resolved, {"regulatory": {"reportWithin": "72h"}}
    ) == resolved + timedelta(hours=72)
