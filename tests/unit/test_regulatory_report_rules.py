"""The EU AI Act clock, the evidence freeze and the regulatory report, without a cluster.

The clock and the freeze run in `engine.reconcile` on a FakeCluster; the digest and
the report builder are pure.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator import engine, ledger, regulatory_report
from ai_incident_operator.conditions import now_iso
from ai_incident_operator.engine import regulatory
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

NS = "prod"
T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
Body = dict[str, Any]


def policy(actions: list[Body], dry_run: bool = False, **regulatory_spec: Any) -> Body:
    spec: Body = {
        "targetSelector": {"matchLabels": {"app": "chat"}},
        "responses": [{"severity": 1, "actions": actions}],
    }
    if regulatory_spec:
        spec["regulatory"] = regulatory_spec
    if dry_run:
        spec["safety"] = {"dryRun": True}
    return {
        "apiVersion": "aiincident.io/v1alpha1", "kind": "MitigationPolicy",
        "metadata": {"name": "chat", "namespace": NS, "generation": 1},
        "spec": spec,
        "status": {"observedGeneration": 1,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
    }  # fmt: skip


def scene(**spec: Any) -> FakeCluster:
    fake = FakeCluster()
    fake.add({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "chat", "namespace": NS,
                     "labels": {"app": "chat", "app.kubernetes.io/part-of": "support-bot",
                                "app.kubernetes.io/version": "v42"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "chat"}},
                 "template": {"metadata": {"labels": {"app": "chat"}},
                              "spec": {"containers": [{"name": "llm", "image": "llm:v42"}]}}},
    })  # fmt: skip
    fake.add({
        "apiVersion": "aiincident.io/v1alpha1", "kind": "AIIncident",
        "metadata": {"name": "leak", "namespace": NS},
        "spec": {"category": "HarmfulOutput", "severity": 1, "target": {"name": "chat"}, **spec},
    })  # fmt: skip
    return fake


def run(fake: FakeCluster, policies: list[Body], at: timedelta = timedelta(0)) -> None:
    world = engine.World(policies=policies, write_review=lambda ctx: None)
    engine.reconcile(NS, "leak", world, api=fake, now=T0 + at)


def status(fake: FakeCluster) -> Body:
    return fake.obj("AIIncident", NS, "leak")["status"]


# --- the clock ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "within", "days"),
    [
        ({"regulatory": {"regime": "EUAIAct", "harm": "Death"}}, None, 10),
        ({"regulatory": {"regime": "EUAIAct", "harm": "CriticalInfrastructure"}}, None, 2),
        ({"regulatory": {"regime": "EUAIAct", "harm": "Widespread"}}, None, 2),
        ({"regulatory": {"regime": "EUAIAct", "harm": "Other"}}, None, 15),
        ({"regulatory": {"regime": "EUAIAct"}}, None, 15),
        ({"regulatoryExposure": True}, None, 15),
        # A policy may ask for less time, never more than the law allows.
        ({"regulatory": {"regime": "EUAIAct", "harm": "Death"}}, "30d", 10),
        ({"regulatoryExposure": True}, "30d", 15),
        ({"regulatory": {"regime": "EUAIAct", "harm": "Death"}}, "24h", 1),
    ],
)
def test_the_report_deadline_is_the_law_s_for_the_harm_or_the_policy_s_if_shorter(
    spec: Body, within: str | None, days: int
) -> None:
    fake = scene(**spec)
    extra = {"reportWithin": within} if within else {}
    run(fake, [policy([{"type": "IncreaseMonitoring"}], **extra)])
    assert status(fake)["regulatoryReportDueBy"] == now_iso(T0 + timedelta(days=days))


def test_no_exposure_no_clock() -> None:
    fake = scene()
    run(fake, [policy([{"type": "IncreaseMonitoring"}])])
    assert "regulatoryReportDueBy" not in status(fake)


def test_a_graver_harm_set_later_shortens_the_deadline_without_a_policy() -> None:
    fake = scene(regulatoryExposure=True)
    run(fake, [])
    assert status(fake)["regulatoryReportDueBy"] == now_iso(T0 + timedelta(days=15))
    body = fake.obj("AIIncident", NS, "leak")
    body["spec"]["regulatory"] = {"regime": "EUAIAct", "harm": "CriticalInfrastructure"}
    fake.replace(Ref("AIIncident", NS, "leak"), body)
    run(fake, [], timedelta(hours=1))
    assert status(fake)["regulatoryReportDueBy"] == now_iso(T0 + timedelta(days=2))
    assert any(e[2] == "RegulatoryDeadlineChanged" for e in fake.events)


@given(
    harm=st.sampled_from(sorted(regulatory.LEGAL_PERIODS)),
    within=st.one_of(st.none(), st.sampled_from(["1h", "36h", "3d", "12d", "20d"])),
    stored=st.one_of(st.none(), st.sampled_from(["2025-03-02T09:00:00Z", "2025-04-01T09:00:00Z"])),
    governed=st.booleans(),
)
def test_the_deadline_is_never_later_than_the_law_allows(
    harm: str, within: str | None, stored: str | None, governed: bool
) -> None:
    legal = regulatory.LEGAL_PERIODS[harm]
    body = {"spec": {"regulatory": {"reportWithin": within}} if within else {}}
    kept = regulatory.deadline(stored, T0, body if governed else None, legal)
    assert datetime.fromisoformat(kept.replace("Z", "+00:00")) <= T0 + legal


# --- the digest -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)  # fmt: skip


def shuffled(value: Any, rng: random.Random) -> Any:
    """VALUE with every mapping's keys in another order (lists keep theirs: they mean it)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@given(content=st.dictionaries(st.text(max_size=6), JSON, max_size=6), seed=st.integers())
def test_the_digest_is_stable_under_key_order(content: Body, seed: int) -> None:
    again = shuffled(content, random.Random(seed))
    assert regulatory.canonical(again) == regulatory.canonical(content)
    assert regulatory.digest(regulatory.canonical(again)) == regulatory.digest(
        regulatory.canonical(content)
    )
    assert json.loads(regulatory.canonical(content)) == content


def test_the_digest_changes_with_any_value() -> None:
    a = regulatory.canonical({"spec": {"replicas": 3}})
    b = regulatory.canonical({"spec": {"replicas": 0}})
    assert regulatory.digest(a) != regulatory.digest(b)
    assert regulatory.digest(a).startswith("sha256:") and len(regulatory.digest(a)) == 71


def test_pre_mitigation_puts_the_ledger_s_originals_back() -> None:
    fake = scene()
    before = fake.obj("Deployment", NS, "chat")
    run(fake, [policy([{"type": "ScaleToZero"}])])
    after = fake.obj("Deployment", NS, "chat")
    assert after["spec"]["replicas"] == 0 and ledger.originals(after)
    assert regulatory.canonical(regulatory.pre_mitigation(after)) == regulatory.canonical(
        regulatory.pre_mitigation(before)
    )


# --- the freeze -----------------------------------------------------------------------------


def frozen(fake: FakeCluster) -> Body | None:
    return fake.obj("ConfigMap", NS, "leak-frozen")


def test_scale_to_zero_freezes_the_targets_before_it_changes_them() -> None:
    fake = scene(regulatory={"regime": "EUAIAct", "harm": "Death"})
    run(fake, [policy([{"type": "ScaleToZero"}])])
    got = status(fake)
    configmap = frozen(fake)
    assert configmap is not None and configmap["immutable"] is True
    assert configmap["metadata"]["ownerReferences"][0]["name"] == "leak"
    text = configmap["data"]["evidence.json"]
    assert got["evidenceDigest"] == regulatory.digest(text) == configmap["data"]["sha256"]
    assert got["frozenEvidenceRef"] == {"kind": "ConfigMap", "name": "leak-frozen",
                                        "key": "evidence.json"}  # fmt: skip
    assert got["evidenceFrozenAt"] == now_iso(T0)
    (target,) = json.loads(text)["targets"]
    assert target["ref"] == "Deployment/chat" and target["object"]["spec"]["replicas"] == 3
    assert fake.obj("Deployment", NS, "chat")["spec"]["replicas"] == 0
    # The freeze went before the change to the workload.
    writes = [w for w in fake.writes if w[0] != "status"]
    assert writes.index(("create", "ConfigMap/leak-frozen")) < writes.index(
        next(w for w in writes if w[1] == "Deployment/chat")
    )
    # Later passes, a de-escalation and a re-escalation never change it.
    run(fake, [policy([{"type": "ScaleToZero"}])], timedelta(minutes=1))
    run(fake, [policy([{"type": "IncreaseMonitoring"}])], timedelta(minutes=2))
    run(fake, [policy([{"type": "ScaleToZero"}])], timedelta(minutes=3))
    assert status(fake)["evidenceDigest"] == got["evidenceDigest"]
    assert frozen(fake)["data"]["evidence.json"] == text
    assert sum(1 for w in fake.writes if w[1] == "ConfigMap/leak-frozen") == 1


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(policy([{"type": "IncreaseMonitoring"}]), id="nothing-altering"),
        pytest.param(policy([{"type": "ScaleToZero"}], dry_run=True), id="dry-run"),
    ],
)
def test_nothing_is_frozen_without_a_change_to_the_ai_system(spec: Body) -> None:
    fake = scene()
    run(fake, [spec])
    assert "evidenceDigest" not in status(fake) and frozen(fake) is None


def test_a_frozen_configmap_left_by_a_crashed_pass_is_adopted_not_replaced() -> None:
    fake = scene()
    incident = fake.obj("AIIncident", NS, "leak")
    text = regulatory.canonical({"targets": [], "note": "written before a crash"})
    fake.add(regulatory.frozen_configmap(incident, text))
    run(fake, [policy([{"type": "ScaleToZero"}])])
    assert status(fake)["evidenceDigest"] == regulatory.digest(text)
    assert frozen(fake)["data"]["evidence.json"] == text


def test_a_freeze_that_cannot_be_written_does_not_hold_the_mitigation_back() -> None:
    fake = scene()
    fake.deny("create", "ConfigMap")
    run(fake, [policy([{"type": "ScaleToZero"}])])
    assert "evidenceDigest" not in status(fake)
    assert fake.obj("Deployment", NS, "chat")["spec"]["replicas"] == 0
    said = [e for e in fake.events if e[2] == "EvidenceNotFrozen"]
    assert len(said) == 1 and "forbidden" in said[0][3] and said[0][1] == "Warning"
    run(fake, [policy([{"type": "ScaleToZero"}])], timedelta(minutes=1))
    assert len([e for e in fake.events if e[2] == "EvidenceNotFrozen"]) == 1  # said once


# --- the report -----------------------------------------------------------------------------


def reported(fake: FakeCluster, policy_spec: Body | None = None) -> Body:
    incident = fake.obj("AIIncident", NS, "leak")
    check = regulatory_report.check_frozen(incident["status"], frozen(fake))
    return regulatory_report.build(incident, policy_spec, check, [], T0 + timedelta(hours=1))


def test_the_report_carries_every_field() -> None:
    fake = scene(regulatory={"regime": "EUAIAct", "harm": "Death"})
    spec = policy([{"type": "ScaleToZero"}], provider="Example AI GmbH", system="SupportBot 2")
    run(fake, [spec])
    report = reported(fake, spec["spec"])
    assert report["reportType"] == "initial" and report["harm"] == "Death"
    assert report["provider"] == {"name": "Example AI GmbH", "source": "policy regulatory.provider"}
    assert report["system"] == {"name": "SupportBot 2", "source": "policy regulatory.system"}
    assert report["seriousIncidentCategory"]["article"] == "Art. 3(49)(a)"
    assert report["deadline"]["dueBy"] == now_iso(T0 + timedelta(days=10))
    assert report["deadline"]["legalPeriodDays"] == 10 and not report["deadline"]["overdue"]
    (model,) = report["servingModel"]
    assert model["images"] == ["llm:v42"] and model["version"] == "v42"
    assert model["source"].startswith("frozen evidence")
    (action,) = report["correctiveActions"]
    assert action["action"] == "ScaleToZero" and action["appliedAt"] == now_iso(T0)
    checked = report["evidence"]["frozen"]
    assert checked["verified"] is True and checked["digest"] == checked["computedDigest"]
    assert set(report["causalLink"]) == {"rootCause", "rootCauseIdentified", "hypotheses",
                                         "reproduction", "reproduced"}  # fmt: skip
    text = regulatory_report.markdown(report)
    assert "Art. 3(49)(a)" in text and checked["digest"] in text and "verified: True" in text


def test_without_policy_identity_the_system_comes_from_the_labels() -> None:
    fake = scene(regulatoryExposure=True)
    run(fake, [policy([{"type": "ScaleToZero"}])])
    report = reported(fake)
    assert report["provider"]["name"] is None
    assert report["system"] == {"name": "support-bot",
                                "source": "target label app.kubernetes.io/part-of"}  # fmt: skip
    assert report["seriousIncidentCategory"]["basis"] == "category HarmfulOutput"


def test_a_frozen_configmap_that_no_longer_hashes_is_reported() -> None:
    fake = scene()
    run(fake, [policy([{"type": "ScaleToZero"}])])
    configmap = frozen(fake)
    configmap["data"]["evidence.json"] = configmap["data"]["evidence.json"].replace("3", "4", 1)
    check = regulatory_report.check_frozen(status(fake), configmap)
    assert check["verified"] is False and "does not hash" in check["problem"]
    assert regulatory_report.check_frozen(status(fake), None)["verified"] is False


def test_the_report_is_complete_once_the_incident_is_closed() -> None:
    incident = {"metadata": {"name": "x", "namespace": NS},
                "spec": {"regulatoryExposure": True}, "status": {"phase": "Closed"}}  # fmt: skip
    check = regulatory_report.check_frozen(incident["status"], None)
    report = regulatory_report.build(incident, None, check, [], T0)
    assert report["reportType"] == "complete" and check["verified"] is None


def test_spec_regulatory_counts_as_regulatory_exposure_in_triage_rules() -> None:
    from ai_incident_operator import triage

    rules = {"triage": {"defaultSeverity": 3,
                        "rules": [{"when": {"regulatoryExposure": True}, "severity": 1}]}}  # fmt: skip
    body = {"kind": "MitigationPolicy", "metadata": {"name": "p", "namespace": NS}, "spec": rules}
    harmed = {"category": "Other", "regulatory": {"regime": "EUAIAct", "harm": "Widespread"}}
    assert triage.triage(harmed, body)[0] == 1
    assert triage.triage({"category": "Other"}, body)[0] == 3
