"""Ranking root-cause hypotheses from facts, and the RootCauseIdentified decision."""

from datetime import UTC, datetime, timedelta

from ai_incident_operator.investigation.hypotheses import (
    ConfigChange,
    Facts,
    MetricFact,
    PipelineRun,
    Replicas,
    Rollout,
    rank,
    root_cause_identified,
)

DETECTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
NOW = DETECTED + timedelta(minutes=5)


def facts(**kw) -> Facts:
    return Facts(detected_at=DETECTED, **kw)


def causes(ranked: list[dict]) -> list[str]:
    return [h["cause"] for h in ranked]


def rollout(minutes_before: float, **kw) -> Rollout:
    defaults = dict(
        target="Deployment/chat-llm",
        revision=2,
        time=DETECTED - timedelta(minutes=minutes_before),
        images=["llm:v43"],
        previous_images=["llm:v42"],
    )
    return Rollout(**{**defaults, **kw})


def test_nothing_known_means_no_hypothesis():
    assert rank(facts(), NOW) == []
    assert root_cause_identified([], {}) == (
        False,
        "NoHypothesis",
        "the evidence points at no cause in the catalogue; investigate and set "
        "spec.resolution.rootCause when it is known",
    )


def test_a_rollout_closer_to_detection_is_more_likely():
    near = rank(facts(rollouts=[rollout(5)]), NOW)[0]
    far = rank(facts(rollouts=[rollout(6 * 60)]), NOW)[0]
    assert near["cause"] == far["cause"] == "DeploymentChange"
    assert near["confidence"] > far["confidence"]
    assert near["confidence"] >= 0.8
    assert any("image changed llm:v42 -> llm:v43" in line for line in near["evidence"])
    assert any("revision 2" in line and "5m before detection" in line for line in near["evidence"])


def test_old_changes_and_changes_after_detection_are_not_causes():
    ranked = rank(
        facts(
            rollouts=[rollout(3 * 24 * 60)],
            configmaps=[
                ConfigChange("Deployment/chat-llm", "prompts", DETECTED + timedelta(minutes=2))
            ],
        ),
        NOW,
    )
    assert ranked == []


def test_the_wrong_model_version_is_named():
    ranked = rank(
        facts(rollouts=[rollout(10, model_version="v7", previous_model_version="v8")]), NOW
    )
    assert "model version changed v8 -> v7" in " ".join(ranked[0]["evidence"])


def test_an_edited_prompt_template_outranks_a_deployment_created_earlier():
    ranked = rank(
        facts(
            rollouts=[rollout(30, revision=1, previous_images=[], first=True)],
            configmaps=[
                ConfigChange(
                    "Deployment/chat-llm",
                    "chat-prompts",
                    DETECTED - timedelta(minutes=3),
                    created_at=DETECTED - timedelta(minutes=30),
                    how="volume prompts at llm:/etc/prompts",
                    manager="kubectl-edit",
                    keys=["system.txt"],
                )
            ],
        ),
        NOW,
    )
    assert causes(ranked) == ["PromptTemplateChange", "DeploymentChange"]
    assert "changed by kubectl-edit 3m before detection" in ranked[0]["evidence"][0]


def test_a_failed_pipeline_run_and_a_stale_one():
    failed = PipelineRun(
        "Job/features",
        failed=True,
        failed_at=DETECTED - timedelta(minutes=20),
        reason="BackoffLimitExceeded: Job has reached the specified backoff limit",
    )
    stale = PipelineRun("CronJob/nightly", stale=True, stale_reason="no successful run since ...")
    ranked = rank(facts(pipelines=[failed, stale]), NOW)
    assert causes(ranked) == ["DataPipelineFailure"]
    assert ranked[0]["confidence"] >= 0.8
    text = " ".join(ranked[0]["evidence"])
    assert "Job/features: latest run failed" in text and "CronJob/nightly: stale" in text
    only_stale = rank(facts(pipelines=[stale]), NOW)[0]
    assert only_stale["confidence"] == 0.6


def test_a_recovered_pipeline_is_a_weak_hint():
    ranked = rank(facts(pipelines=[PipelineRun("CronJob/nightly", earlier_failures=2)]), NOW)
    assert ranked[0]["confidence"] < 0.3


def test_drift_needs_its_threshold_and_upstream_errors_count_without_one():
    drift = MetricFact("input_drift", "psi", kind="Drift", threshold=0.2, peak=0.5, before=0.05)
    no_threshold = MetricFact("drift_score", "psi", peak=0.9)
    upstream = MetricFact("retrieval", "rate(x[5m])", kind="UpstreamErrors", peak=3.0)
    calm = MetricFact("upstream_errors", "rate(y[5m])", threshold=1.0, peak=0.5)
    ranked = rank(facts(metrics=[drift, no_threshold, upstream, calm]), NOW)
    assert set(causes(ranked)) == {"InputDrift", "UpstreamDependency"}
    by = {h["cause"]: h for h in ranked}
    assert "input_drift (psi) reached 0.5" in by["InputDrift"]["evidence"][0]
    assert len(by["InputDrift"]["evidence"]) == 1
    assert "retrieval" in by["UpstreamDependency"]["evidence"][0]


def test_a_failed_query_is_no_evidence_either_way():
    broken = MetricFact("input_drift", "psi", kind="Drift", threshold=0.2, error="unreachable")
    assert rank(facts(metrics=[broken]), NOW) == []


def test_unavailable_replicas_scale_the_confidence():
    all_down = rank(facts(replicas=[Replicas("Deployment/a", 3, 3, ["a-1: Pending"])]), NOW)[0]
    one_down = rank(facts(replicas=[Replicas("Deployment/a", 3, 1)]), NOW)[0]
    assert all_down["cause"] == "InfrastructureDegradation"
    assert all_down["confidence"] > one_down["confidence"]
    assert all_down["evidence"] == [
        "Deployment/a: 3 of 3 replicas unavailable",
        "Deployment/a: pod a-1: Pending",
    ]
    assert rank(facts(replicas=[Replicas("Deployment/a", 0, 0)]), NOW) == []


def test_ranking_is_sorted_bounded_and_rounded():
    ranked = rank(
        facts(
            rollouts=[rollout(1)],
            replicas=[Replicas("Deployment/chat-llm", 4, 1)],
            pipelines=[PipelineRun("Job/x", failed=True, reason="r")],
        ),
        NOW,
    )
    confidences = [h["confidence"] for h in ranked]
    assert confidences == sorted(confidences, reverse=True)
    assert all(0 < c <= 0.95 and round(c, 2) == c for c in confidences)
    assert set(ranked[0]) == {"cause", "confidence", "evidence"}


def test_root_cause_identified_from_a_hypothesis_or_a_person():
    strong = [{"cause": "DeploymentChange", "confidence": 0.85, "evidence": ["rolled out"]}]
    weak = [{"cause": "InputDrift", "confidence": 0.4, "evidence": []}]
    assert root_cause_identified(strong, {}) == (
        True,
        "HypothesisAboveThreshold",
        "DeploymentChange (confidence 0.85): rolled out",
    )
    ok, reason, message = root_cause_identified(weak, {})
    assert (ok, reason) == (False, "LowConfidence")
    assert "spec.resolution.rootCause" in message
    assert root_cause_identified(weak, {}, threshold=0.3)[0]
    stated = {"resolution": {"rootCause": "prompt template v42 dropped the safety preamble"}}
    assert root_cause_identified(weak, stated) == (
        True,
        "StatedInSpec",
        "spec.resolution.rootCause: prompt template v42 dropped the safety preamble",
    )
