"""Readiness before traffic returns, per workload kind (issue 13): the rules resolution
asks each adapter (`workloads.adapter(kind).ready`), for the states a canary rollout
or an abort leaves behind."""

from __future__ import annotations

import pytest

from ai_incident_operator import workloads

ROLLOUT = {"kind": "Rollout", "metadata": {"name": "m", "generation": 3}, "spec": {"replicas": 4},
           "status": {"observedGeneration": "3", "availableReplicas": 5}}  # fmt: skip


@pytest.mark.parametrize(
    ("status", "ready"),
    [({"phase": "Healthy"}, True),
     ({"phase": "Paused", "message": "CanaryPauseStep"}, True),  # a canary step serves
     ({"phase": "Degraded", "message": "RolloutAborted: aborted update", "abort": True}, True),
     ({"phase": "Degraded", "message": "ProgressDeadlineExceeded"}, False),
     ({"phase": "Progressing", "availableReplicas": 2}, False),
     ({"phase": "Healthy", "observedGeneration": "2"}, False)],
)  # fmt: skip
def test_a_rollout_serves_at_a_canary_step_and_when_aborted(status, ready):
    obj = {**ROLLOUT, "status": {**ROLLOUT["status"], **status}}
    ok, words = workloads.adapter("Rollout").ready(obj)
    assert ok is ready, words
    assert words.startswith("Rollout/m: ")


@pytest.mark.parametrize("kind", ["InferenceService", "LLMInferenceService"])
def test_kserve_is_ready_only_for_the_generation_it_has_seen_and_never_while_stopped(kind):
    adapter = workloads.adapter(kind)
    obj = {"kind": kind, "metadata": {"name": "llama", "generation": 2},
           "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
    assert adapter.ready(obj) == (True, f"{kind}/llama: Ready")
    stale = {**obj, "metadata": {**obj["metadata"], "generation": 3}}
    assert adapter.ready(stale) == (False, f"{kind}/llama: KServe has not yet seen the latest change")  # fmt: skip
    stopped = {**obj, "metadata": {**obj["metadata"], "annotations": {"serving.kserve.io/stop": "true"}}}  # fmt: skip
    assert adapter.ready(stopped)[0] is False
    loading = {**obj, "status": {"observedGeneration": 2, "conditions": [
        {"type": "Ready", "status": "False", "reason": "PredictorNotReady"}]}}  # fmt: skip
    assert adapter.ready(loading) == (False, f"{kind}/llama: Ready=False: PredictorNotReady")


def test_every_kind_answers_for_an_object_read_without_its_kind():
    """A built-in kind read by name comes without `kind`: the rule is the adapter's, by
    the entry's kind, and its words name that kind."""
    for kind, adapter in workloads.ADAPTERS.items():
        ok, words = adapter.ready({"metadata": {"name": "x", "generation": 1},
                                   "spec": {"replicas": 0}, "status": {"observedGeneration": 1}})  # fmt: skip
        assert words.startswith(f"{kind}/x: "), (kind, words)
        assert isinstance(ok, bool)
