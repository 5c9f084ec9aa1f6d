"""The intake's bounds (issue 11, findings 7, 8, 9 and 11), without a cluster.

`intake.limits` is pure (reach, token files, the per-minute budget); `intake.store` runs
against the in-memory FakeCluster for the unmapped cap and the apiserver's 403.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator.errors import Conflict
from ai_incident_operator.errors import Forbidden as APIForbidden
from ai_incident_operator.intake import limits, mapping, store
from ai_incident_operator.intake.limits import Bucket, Reach
from ai_incident_operator.resources import Ref

from fakecluster import FakeCluster

OPS = "aiincident-system"
NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


def alert(**labels: str) -> dict:
    labels = {"alertname": "QualityDrop", **labels}
    return {"status": "firing", "labels": labels, "startsAt": "2024-05-01T10:00:00Z"}


def parsed(*alerts: dict) -> mapping.Payload:
    return mapping.parse({"version": "4", "receiver": "am", "alerts": list(alerts)})


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    cluster = FakeCluster()
    monkeypatch.setattr(store, "kube", cluster)
    return cluster


# --- 7. reach ----------------------------------------------------------------------------------


@given(NAMES, st.lists(NAMES, max_size=4), st.lists(NAMES, max_size=4))
def test_a_namespace_is_reached_only_when_every_bound_allows_it(ns, one, two):
    reach = Reach().within("a", one).within("b", two)
    assert (reach.refuses(ns) is None) == (ns in one and ns in two)
    assert Reach().within("a", None).refuses(ns) is None  # no bound given: anywhere


def test_patterns_and_the_reason_name_the_bound():
    reach = Reach().within("--webhook-namespaces", ("team-*",)).within("the token", ("team-a",))
    assert reach.refuses("team-a") is None
    assert "the token allows only team-a" in reach.refuses("team-b")
    assert "--webhook-namespaces allows only team-*" in reach.refuses("prod")


def test_namespace_flags_take_comma_lists_and_refuse_nonsense():
    assert limits.namespace_list(["a,b", " c ", "a"], "--x") == ("a", "b", "c")
    assert limits.namespace_list([], "--x") is None
    with pytest.raises(ValueError, match="--x 'Prod' is not a namespace"):
        limits.namespace_list(["Prod"], "--x")


def test_token_files_keep_the_plain_form_and_take_namespaces_per_token():
    assert limits.parse_tokens("s3cret\n") == [limits.Token("s3cret")]
    text = "# senders\nadmin\nteam-a-token team-a,team-a-*\n\n"
    assert limits.parse_tokens(text) == [
        limits.Token("admin"),
        limits.Token("team-a-token", ("team-a", "team-a-*")),
    ]
    with pytest.raises(limits.TokenFileError, match="line 1"):
        limits.parse_tokens("t BAD_NS")
    with pytest.raises(limits.TokenFileError, match="twice"):
        limits.parse_tokens("t\nt a")


# --- 8. per-minute budget and the unmapped cap ---------------------------------------------------


@given(st.integers(1, 50), st.lists(st.floats(0, 30), max_size=60))
def test_the_bucket_never_gives_more_than_its_rate_per_minute(rate, gaps):
    now = [0.0]
    bucket = Bucket(rate, clock=lambda: now[0])
    taken, elapsed = 0, 0.0
    for gap in gaps:
        now[0] += gap
        elapsed += gap
        wait = bucket.take()
        if wait == 0:
            taken += 1
        else:
            assert 0 < wait <= 60 / rate + 1e-9
    # A full burst at the start, then the refill: never more.
    assert taken <= rate + elapsed * rate / 60 + 1e-9


def test_a_token_given_back_is_there_again():
    bucket = Bucket(1, clock=lambda: 0.0)
    assert bucket.take() == 0 and bucket.take() == pytest.approx(60)
    bucket.give_back()
    assert bucket.take() == 0
    assert limits.retry_after(0.2) == "1" and limits.retry_after(20.1) == "21"


def test_limits_must_be_sane():
    assert limits.Limits().problems() == []
    wrong = limits.Limits(max_alerts=0, read_timeout=0, max_unmapped=-1).problems()
    assert len(wrong) == 3


def _deliver(admission: store.Admission, *alerts: dict) -> list[store.Delivery]:
    payload = parsed(*alerts)
    return [store.deliver(g, payload, OPS, admission) for g in mapping.group(payload, OPS)]


def test_unmapped_alerts_beyond_the_cap_fold_into_one_record_that_counts_them(fake):
    admission = store.Admission(max_unmapped=2)
    strays = [alert(namespace=f"stray-{i}") for i in range(5)]  # no target: unmapped
    done = _deliver(admission, *strays)
    assert [d.result for d in done] == ["created"] * 3 + ["updated"] * 2
    assert len({d.name for d in done}) == 3
    more = fake.get(Ref("AIIncident", OPS, done[-1].name))
    assert more["metadata"]["annotations"][mapping.MORE_ANNOTATION] == "3"
    assert "target" not in more["spec"] and len(more["spec"]["alerts"]) == 3
    # A resend counts nothing twice; a new stray counts once.
    assert {d.result for d in _deliver(admission, *strays)} == {"unchanged"}
    _deliver(admission, alert(namespace="stray-9"))
    more = fake.get(Ref("AIIncident", OPS, done[-1].name))
    assert more["metadata"]["annotations"][mapping.MORE_ANNOTATION] == "4"


def test_a_flood_beyond_the_cap_is_group_committed_and_loses_no_alert(fake, monkeypatch):
    """Concurrent deliveries to the overflow record share writes (one writer takes every
    waiting delivery along), and each is answered only once its alerts are written."""
    admission = store.Admission(max_unmapped=1)
    _deliver(admission, alert(namespace="stray-first"))
    record = Ref("AIIncident", OPS, store.deliver(
        mapping.group(parsed(alert(namespace="stray-0")), OPS)[0], parsed(alert(namespace="stray-0")), OPS, admission,
    ).name)  # fmt: skip
    writes = []
    original_patch = fake.json_patch

    def slow_patch(ref: Ref, body: list[dict]) -> dict:
        if ref == record:
            writes.append(ref)
            # The first write lasts until every other delivery waits (a slow apiserver):
            # the next writer must then take them all along.
            deadline = time.monotonic() + 10
            while len(writes) == 1 and len(admission.overflow_queue) < len(strays) - 1:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        return original_patch(ref, body)

    monkeypatch.setattr(fake, "json_patch", slow_patch)
    strays = [alert(namespace=f"stray-{i}") for i in range(1, 41)]
    with ThreadPoolExecutor(len(strays)) as pool:  # all at once, as a flood comes
        done = list(pool.map(lambda a: _deliver(admission, a)[0], strays))
    assert {d.name for d in done} == {record.name}
    assert all(d.alerts == 1 for d in done)
    assert len(writes) == 2, len(writes)  # the first delivery's, then everyone else's
    more = fake.get(record)
    assert more["metadata"]["annotations"][mapping.MORE_ANNOTATION] == str(len(strays) + 1)


def test_folding_never_needs_the_budget_creating_does(fake):
    admission = store.Admission(bucket=Bucket(1, clock=lambda: 0.0))
    (first,) = _deliver(admission, alert(namespace="prod", deployment="a"))
    assert first.result == "created"
    with pytest.raises(store.Limited) as limited:
        _deliver(admission, alert(namespace="prod", deployment="b"))
    assert limited.value.wait == pytest.approx(60)
    (again,) = _deliver(admission, alert(namespace="prod", deployment="a", pod="p2"))
    assert (again.name, again.result) == (first.name, "updated")
    assert len(fake.list("AIIncident", "prod")) == 1


# --- 11. the apiserver's 403 ---------------------------------------------------------------------


def test_a_forbidden_write_is_forbidden_not_unavailable(fake, monkeypatch):
    def forbid(kind, namespace, body):
        raise APIForbidden(403, 'User "system:serviceaccount:x:y" cannot create', "Forbidden")

    monkeypatch.setattr(fake, "create", forbid)
    with pytest.raises(store.Forbidden) as err:
        _deliver(store.Admission(), alert(namespace="team-b", deployment="a"))
    assert err.value.namespace == "team-b"
    assert "grant its Role there or add team-b to watchNamespaces" in str(err.value)
    assert "serviceaccount" not in str(err.value)


def test_kopf_exclusions_in_namespace_flags_exclude():
    reach = Reach().within("--namespace", limits.namespace_list(["*,!kube-*"], "--namespace"))
    assert reach.refuses("team-a") is None
    assert reach.refuses("kube-system") is not None
    assert limits.allows(("!secret",), "team-a") and not limits.allows(("!secret",), "secret")


def test_status_writes_between_read_and_write_never_conflict_spec_changes_do(fake):
    """The alerts' write holds on the spec's generation, not the resourceVersion."""
    admission = store.Admission()
    first = _deliver(admission, alert(namespace="team-a", deployment="chat"))[0]
    ref = Ref("AIIncident", first.namespace, first.name)
    read = fake.get(ref)
    fake.patch_status(ref, {"phase": "Mitigated"})  # the engine, meanwhile
    store._write(ref, read, [{"fingerprint": "a1"}])
    assert fake.get(ref)["spec"]["alerts"] == [{"fingerprint": "a1"}]
    with pytest.raises(Conflict):
        store._write(ref, read, [{"fingerprint": "b2"}])
