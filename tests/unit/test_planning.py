"""Planning: which steps a response makes over targets, and when an incident resolves (pure)."""

from ai_incident_operator.engine import plan, resolution_reason

INCIDENT = {"metadata": {"name": "harm", "namespace": "prod"}}
TARGETS = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]
RESPONSE = {
    "actions": [
        {
            "type": "TrafficShift",
            "router": {"kind": "Service", "name": "chat"},
            "fallback": {"service": "fb"},
        },
        {"type": "ScaleToZero"},
        {"type": "Notify", "channels": ["oncall"]},
    ]
}


def test_per_target_actions_run_on_every_target_and_per_incident_ones_once():
    steps = plan(INCIDENT, RESPONSE, TARGETS)
    assert [s.id for s in steps] == [
        ("TrafficShift:Service/chat", "Deployment/a"),
        ("TrafficShift:Service/chat", "Deployment/b"),
        ("ScaleToZero", "Deployment/a"),
        ("ScaleToZero", "Deployment/b"),
        ("Notify:oncall", "AIIncident/harm"),
    ]


def test_calls_to_outside_services_come_after_every_change_to_an_object():
    # A webhook that takes its timeouts to fail must not hold the ScaleToZero back.
    response = {"actions": [{"type": "Notify", "channels": ["oncall"]}, {"type": "ScaleToZero"},
                            {"type": "Ticket", "tracker": {}}, {"type": "IncreaseMonitoring"}]}  # fmt: skip
    steps = plan(INCIDENT, response, TARGETS[:1])
    assert [s.action.type for s in steps] == ["ScaleToZero", "IncreaseMonitoring", "Notify",
                                              "Ticket"]  # fmt: skip


def test_empty_response_plans_nothing():
    assert plan(INCIDENT, {}, TARGETS) == []


def test_resolution_reasons():
    assert resolution_reason({"resolution": {"requested": True, "fix": "v43"}}, {}) == (
        "ResolutionRequested",
        "v43",
    )
    auto = {"resolution": {"autoResolveWhenAlertsResolve": True}}
    resolved = {
        "alerts": [
            {"fingerprint": "1", "status": "resolved"},
            {"fingerprint": "2", "status": "resolved"},
        ]
    }
    assert resolution_reason(resolved, auto)[0] == "AlertsResolved"
    assert resolution_reason(resolved, {}) is None  # the policy did not ask for it
    assert (
        resolution_reason(
            {
                "alerts": [
                    {"fingerprint": "1", "status": "resolved"},
                    {"fingerprint": "2", "status": "firing"},
                ]
            },
            auto,
        )
        is None
    )
    assert (
        resolution_reason({"alerts": []}, auto) is None
    )  # a person's report never resolves itself
