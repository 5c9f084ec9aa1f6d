"""readiness.ready: kubectl rollout status's rules (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator.readiness import ready


def _deployment(wanted: int, **status: int) -> dict:
    return {
        "kind": "Deployment",
        "metadata": {"name": "m", "generation": 2},
        "spec": {"replicas": wanted},
        "status": {"observedGeneration": 2, **status},
    }


def test_ready_when_every_wanted_replica_is_current_and_available() -> None:
    assert ready(_deployment(2, replicas=2, updatedReplicas=2, availableReplicas=2))[0]
    assert ready(_deployment(0))[0]


def test_not_ready_says_why() -> None:
    assert ready(_deployment(2, replicas=2, updatedReplicas=2, availableReplicas=0)) == (
        False,
        "Deployment/m: 0 of 2 replicas ready",
    )
    assert "old replica" in ready(_deployment(2, replicas=3, updatedReplicas=2))[1]
    stale = _deployment(2, replicas=2, updatedReplicas=2, availableReplicas=2)
    stale["status"]["observedGeneration"] = 1
    assert "not yet seen" in ready(stale)[1]


@given(st.integers(1, 20), st.integers(0, 20), st.integers(0, 20))
def test_never_ready_with_fewer_available_than_wanted(wanted: int, updated: int, available: int):
    obj = _deployment(
        wanted, replicas=updated, updatedReplicas=updated, availableReplicas=available
    )
    ok, _ = ready(obj)
    assert ok == (updated >= wanted and available >= wanted)
