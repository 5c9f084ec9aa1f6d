"""Property: whatever is posted to the webhook, the answer is never a 5xx, the operator
does not crash, and every well-formed alert ends up in the incident of its (namespace,
target, category), one incident per key.

Thousands of generated bodies (Hypothesis), well-formed and malformed, go over real
HTTP to the real operator process on a real apiserver; the incidents are checked once
at the end. Few targets, label values and start times keep the incidents small.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_incident_operator import kube
from ai_incident_operator.intake.mapping import category_of, fingerprint

from alertkit import Webhook, am_alert, am_payload

pytestmark = pytest.mark.integration
EXAMPLES = 1000  # the property test of the intake; the 10,000-body fuzz is test_intake_fuzz
TARGETS = ("chat-llm", "embedder", "ranker")
CATEGORY_LABELS = ("AccuracyDegradation", "CostAnomaly", "harmful_output", "Hallucination")
STARTS = (
    "2026-01-01T10:00:00Z",
    "2026-01-01T10:00:00.123456789Z",
    "2026-01-01T12:00:00+02:00",
    "2026-01-02T08:30:00Z",
)
ODD = ("", "ü 😀", "x" * 300, "line\nbreak \x00")
TEXT = st.text(max_size=20)


def well_formed_alert(namespace: str, run: str) -> st.SearchStrategy[dict]:
    def build(
        status, starts, target, category, mapped, name, pod, odd, annotations, computed
    ) -> dict:
        labels = {"alertname": name, "pod": pod, "odd": odd, "ai_incident_category": category}
        if mapped:
            labels |= {"namespace": namespace, "deployment": target}
        else:  # no namespace label: filed in the operator's namespace
            labels |= {"deployment": target, "run": run}
        alert = am_alert(status, starts, annotations=annotations, **labels)
        if computed:  # a sender without fingerprints: the intake computes Alertmanager's
            del alert["fingerprint"]
        return alert

    return st.builds(
        build,
        st.sampled_from(("firing", "resolved")),
        st.sampled_from(STARTS),
        st.sampled_from(TARGETS),
        st.sampled_from(CATEGORY_LABELS),
        st.integers(0, 9).map(lambda n: n > 0),  # mostly mappable
        st.sampled_from(("ModelQualityLow", "ModelDrift", "TokenCost")),
        st.sampled_from(("p0", "p1")),
        st.sampled_from(ODD),
        st.dictionaries(TEXT, TEXT, max_size=2),
        st.booleans(),
    )


def payloads(namespace: str, run: str) -> st.SearchStrategy[dict]:
    return st.lists(well_formed_alert(namespace, run), min_size=1, max_size=4).map(
        lambda alerts: am_payload(*alerts)
    )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
NOT_A_STRING = st.one_of(st.integers(), st.booleans(), st.lists(TEXT, max_size=2), st.none())
NOT_A_TIME = TEXT.map(lambda t: "at " + t)


def broken(good: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    """A well-formed payload with one thing Alertmanager would never send."""

    def alert_field(payload: dict, key: str, value: object) -> dict:
        payload["alerts"][0][key] = value
        return payload

    def label(payload: dict, value: object) -> dict:
        payload["alerts"][0]["labels"]["namespace"] = value
        return payload

    def drop(payload: dict, key: str) -> dict:
        del payload["alerts"][0][key]
        return payload

    bad_status = TEXT.filter(lambda s: s not in ("firing", "resolved"))
    return st.one_of(
        st.builds(alert_field, good, st.just("status"), bad_status | NOT_A_STRING),
        st.builds(alert_field, good, st.just("labels"), st.integers() | st.lists(TEXT) | TEXT),
        st.builds(label, good, st.integers() | st.lists(TEXT, max_size=2) | st.booleans()),
        st.builds(alert_field, good, st.just("startsAt"), NOT_A_TIME | st.integers()),
        st.builds(alert_field, good, st.just("endsAt"), NOT_A_TIME),
        st.builds(alert_field, good, st.just("annotations"), st.lists(TEXT, max_size=2)),
        st.builds(alert_field, good, st.just("fingerprint"), st.just("") | st.integers()),
        st.builds(drop, good, st.sampled_from(("status", "labels"))),
        good.map(lambda p: p | {"alerts": p["alerts"][0]}),
        good.map(lambda p: p | {"alerts": [*p["alerts"], 42]}),
        good.map(lambda p: p | {"version": 4}),
    )


def bodies(namespace: str, run: str) -> st.SearchStrategy[tuple[str, bytes, str | None]]:
    """(kind, raw body, content type): the kind says what the webhook must answer."""
    good = payloads(namespace, run)

    def as_json(kind: str, content_type: str | None = "application/json"):
        return lambda value: (kind, json.dumps(value).encode(), content_type)

    def cut(payload: dict, where: float, junk: bool) -> tuple[str, bytes, str]:
        raw = json.dumps(payload)  # JSON text cut short, or with junk after it
        text = raw + "}x" if junk else raw[: max(1, int(len(raw) * where))]
        return "text", text.encode(), "application/json"

    def typed(payload: dict, content_type: str) -> tuple[str, bytes, str | None]:
        return "type", json.dumps(payload).encode(), content_type or None

    types = (
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-16",
        "",
    )
    kinds = {
        "good": good.map(as_json("good")),
        "broken": broken(good).map(as_json("broken")),
        "json": JSON.map(as_json("json")),
        "bytes": st.binary(max_size=200).map(lambda raw: ("bytes", raw, "application/json")),
        "text": st.builds(cut, good, st.floats(0, 0.99), st.booleans()),
        "type": st.builds(typed, good, st.sampled_from(types)),
    }
    # A kind first, then a body of it: one_of would weigh kinds by their number of branches.
    weights = ("good", "good", "broken", "broken", "json", "bytes", "text", "type")
    return st.sampled_from(weights).flatmap(kinds.__getitem__)


ALLOWED = {
    "good": {200},
    "broken": {200, 422},  # 200 when some of its alerts are good: those are taken
    "json": {200, 422},  # {"alerts": []} is a valid, empty payload
    "bytes": {400, 422},  # e.g. b"1" is JSON, but not a payload
    "text": {400},
    "type": {415},
}


def test_any_body_gets_an_answer_below_500_and_every_good_alert_lands(intake, intake_namespace):
    ns, home = intake_namespace, intake.env["AIINCIDENT_NAMESPACE"]
    hook = Webhook.of(intake)
    sent: list[dict] = []
    seen: dict[str, int] = defaultdict(int)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=bodies(ns, ns))  # the namespace also marks this run's unmappable alerts
    def post(body: tuple[str, bytes, str | None]) -> None:
        kind, raw, content_type = body
        reply = hook.post(raw=raw, content_type=content_type)
        seen[kind] += 1
        assert reply.status < 500, (kind, raw[:300], reply.body)
        assert reply.status in ALLOWED[kind], (kind, raw[:300], reply.body)
        if reply.status != 200:
            assert reply.body["field"] and reply.body["problem"], reply.body
        elif kind == "good":
            sent.extend(json.loads(raw)["alerts"])

    post()
    assert sum(seen.values()) >= EXAMPLES and seen["good"] > EXAMPLES / 8, dict(seen)
    assert intake.proc.poll() is None and hook.get("/healthz").status == 200
    assert "unexpected error" not in intake.log_tail(10_000_000)

    # Every good alert is in the incident of its key; one incident per key.
    mine = kube.list_objects("AIIncident", ns)
    per_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for incident in mine:
        per_key[(incident["spec"]["target"]["name"], incident["spec"]["category"])].append(incident)
    assert all(len(found) == 1 for found in per_key.values()), {
        k: len(v) for k, v in per_key.items()
    }
    unmapped = [
        i
        for i in kube.list_objects("AIIncident", home)
        if "unmapped" in i["metadata"]["annotations"].get("aiincident.io/intake-key", "")
    ]
    missing = []
    for alert in sent:
        labels = alert["labels"]
        key = (labels["deployment"], category_of(labels["ai_incident_category"]))
        print_ = alert.get("fingerprint") or fingerprint(labels)
        where = (
            per_key.get(key, [])
            if "namespace" in labels
            else [i for i in unmapped if i["spec"]["category"] == key[1]]
        )
        if not any(print_ in {a["fingerprint"] for a in i["spec"]["alerts"]} for i in where):
            missing.append((labels, print_))
    assert not missing, missing[:5]
