"""The regulatory deadline is the governing policy's, whatever order the watches deliver in.

kopf's watches of incidents and of policies are not ordered: the incident's first pass can
run while the index holds its policy unchecked (no status), or holds no policy at all.
`engine.reconcile` on a FakeCluster, with `World.policies` as the index held it each time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator import engine
from ai_incident_operator.conditions import now_iso
from ai_incident_operator.engine import regulatory

from fakecluster import FakeCluster

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]
POLICY: Body = {
    "apiVersion": "aiincident.io/v1alpha1",
    "kind": "MitigationPolicy",
    "metadata": {"name": "chat", "namespace": NS, "generation": 1},
    "spec": {
        "targetSelector": {"matchLabels": {"app": "chat"}},
        "responses": [{"severity": 1, "actions": [{"type": "ScaleToZero"}]}],
        "regulatory": {"reportWithin": "10s"},
    },
}
READY: Body = {
    **POLICY,
    "status": {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}],
    },
}


def scene() -> FakeCluster:
    fake = FakeCluster()
    fake.add({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": NS, "labels": {"app": "chat"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                 "template": {"metadata": {"labels": {"app": "chat"}},
                              "spec": {"containers": [{"name": "llm", "image": "llm:v1"}]}}},
    })  # fmt: skip
    fake.add({
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": "leak", "namespace": NS},
        "spec": {"category": "DataLeak", "regulatoryExposure": True, "target": {"name": "chat"}},
    })  # fmt: skip
    return fake


def run(fake: FakeCluster, policies: list[Body], at: timedelta) -> engine.Result:
    world = engine.World(policies=policies, write_review=lambda ctx: None)
    return engine.reconcile(NS, "leak", world, api=fake, now=T0 + at)


def due(fake: FakeCluster) -> str | None:
    return (fake.obj("AIIncident", NS, "leak") or {})["status"].get("regulatoryReportDueBy")


def timeline(fake: FakeCluster) -> list[str]:
    return [t["type"] for t in fake.obj("AIIncident", NS, "leak")["status"]["timeline"]]


def test_first_pass_before_the_policy_check_waits_for_it() -> None:
    fake = scene()
    result = run(fake, [POLICY], timedelta(0))  # indexed, not yet checked
    assert due(fake) is None and "RegulatoryClockStarted" not in timeline(fake)
    assert result.requeue_after is not None and result.requeue_after <= 5
    run(fake, [READY], timedelta(seconds=1))
    assert due(fake) == now_iso(T0 + timedelta(seconds=10))
    assert timeline(fake).count("RegulatoryClockStarted") == 1
    assert "RegulatoryDeadlineChanged" not in timeline(fake)


def test_a_policy_never_checked_does_not_stop_the_clock() -> None:
    fake = scene()
    run(fake, [POLICY], timedelta(0))
    run(fake, [POLICY], regulatory.POLICY_WAIT)
    assert due(fake) == now_iso(T0 + timedelta(days=15))  # the default, after the wait


def test_default_deadline_follows_the_policy_and_stays_when_it_goes() -> None:
    fake = scene()
    run(fake, [], timedelta(0))  # no policy at all yet
    assert due(fake) == now_iso(T0 + timedelta(days=15))
    run(fake, [READY], timedelta(seconds=1))
    assert due(fake) == now_iso(T0 + timedelta(seconds=10))
    assert "RegulatoryDeadlineChanged" in timeline(fake)
    run(fake, [], timedelta(seconds=2))  # the policy deleted: never back to the default
    assert due(fake) == now_iso(T0 + timedelta(seconds=10))


@given(
    stored=st.one_of(st.none(), st.sampled_from(["2025-03-02T09:00:00Z", "2025-03-16T09:00:00Z"])),
    within=st.one_of(st.none(), st.sampled_from(["10s", "1h", "3d"])),
    governed=st.booleans(),
)
def test_deadline_is_the_policy_s_else_the_one_set(
    stored: str | None, within: str | None, governed: bool
) -> None:
    spec = {"regulatory": {"reportWithin": within}} if within else {}
    policy = {"spec": spec} if governed else None
    kept = regulatory.deadline(stored, T0, policy)
    policy_due = now_iso(regulatory.review.regulatory_due_by(T0, spec))
    if governed:
        assert kept == policy_due
    elif stored:
        assert kept == stored
    else:
        assert kept == now_iso(T0 + timedelta(days=15))
