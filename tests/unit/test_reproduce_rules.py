"""The reproduction's pure rules: endpoints, what is sent, what the outcomes mean.

`reproduce.run` (the calls) is exercised against the test model in
tests/integration/test_reproduction.py; here the decisions around it: the Reproduced
condition, the regression that ranks a change first, the records kept in the status
(nothing of the answers), and when fix validation asks again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from ai_incident_operator.investigation import hypotheses, reproduce
from ai_incident_operator.investigation.examples import Example
from ai_incident_operator.investigation.reproduce import Endpoint, Outcome, Run
from ai_incident_operator.resolution.verify import FIX_FRESH, FIX_RECHECK, examples_verdict
from ai_incident_operator.times import iso

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLES = [
    Example(input=f"how much ibuprofen, case {i}?", category="harmful-advice") for i in range(3)
]


def _run(current: list[bool | None], previous: list[bool | None] | None = None) -> Run:
    result = Run(EXAMPLES[: len(current)])
    for which, oks in (("current", current), ("previous", previous)):
        if oks is None:
            continue
        result.endpoints[which] = Endpoint(which, f"http://127.0.0.1:1/{which}")
        for example, ok in zip(result.examples, oks, strict=True):
            reason = "" if ok is not None else "Timeout"
            words = {True: "lacks 'mg every hour'", False: "contains 'mg every hour'",
                     None: "no answer within 2s"}[ok]  # fmt: skip
            result.outcomes.append(Outcome(example.id, which, ok, [words], reason, "an answer"))
    return result


def test_service_endpoints_resolve_in_the_incidents_namespace():
    spec = {"service": {"name": "chat-v1", "port": 8080, "path": "/v1/chat/completions"}}
    assert reproduce.endpoint(spec, "prod", "previous", {}) == Endpoint(
        "previous", "http://chat-v1.prod.svc:8080/v1/chat/completions", "OpenAIChat"
    )
    local = {reproduce.SERVICE_TEMPLATE_ENV: "http://127.0.0.1:{port}{path}"}
    assert reproduce.endpoint(spec, "prod", "previous", local).url == (
        "http://127.0.0.1:8080/v1/chat/completions"
    )
    assert reproduce.endpoint({"url": "http://a/", "format": "JSON"}, "p", "current", {}) == (
        Endpoint("current", "http://a/", "JSON")
    )
    assert "exactly one" in reproduce.endpoint({}, "p", "current", {}).problem
    broken = {reproduce.SERVICE_TEMPLATE_ENV: "http://{host}/"}
    assert "not a usable template" in reproduce.endpoint(spec, "p", "current", broken).problem


@given(st.text(min_size=1, max_size=50))
def test_a_prompt_is_sent_as_the_formats_body_and_a_json_input_as_is(prompt):
    assert reproduce.request_body(prompt, "OpenAIChat") == {
        "messages": [{"role": "user", "content": prompt}]
    }
    assert reproduce.request_body(prompt, "JSON") == {"input": prompt}
    body = {"model": "m", "messages": [{"role": "system", "content": prompt}]}
    assert reproduce.request_body(body, "OpenAIChat") is body


def test_reproduced_when_examples_fail_on_current():
    state, reason, message = reproduce.verdict(_run([False, False, True], [True, True, True]))
    assert (state, reason) == ("True", "FailsOnCurrent")
    assert message.startswith("2 of 3 examples fail on the current version (example ")
    assert message.endswith("3 of 3 pass on the previous version")


def test_not_reproduced_when_all_pass_on_current():
    assert reproduce.verdict(_run([True, True], None)) == (
        "False",
        "PassesOnCurrent",
        "all 2 examples pass on the current version; no endpoints.previous to compare with",
    )


def test_unknown_when_nothing_could_be_checked_says_why():
    state, reason, message = reproduce.verdict(_run([None, True]))
    assert (state, reason) == ("Unknown", "Timeout")
    assert "1 of 2 examples could not be checked" in message and "no answer within 2s" in message
    assert reproduce.verdict(Run([]))[:2] == ("Unknown", "NoExamples")
    state, reason, message = reproduce.verdict(Run([]), ["ConfigMap x not found"])
    assert reason == "NoExamples" and "ConfigMap x not found" in message


@given(st.lists(st.sampled_from([True, False, None]), min_size=1, max_size=3))
def test_the_verdict_follows_the_current_outcomes(oks):
    state, _, _ = reproduce.verdict(_run(oks))
    if False in oks:
        assert state == "True"
    elif None in oks:
        assert state == "Unknown"
    else:
        assert state == "False"


def test_a_regression_needs_a_failure_now_and_a_pass_before():
    assert reproduce.regression(_run([False, False, True], [True, False, True])) == (2, 1, 3)
    assert reproduce.regression(_run([False], [False])) is None
    assert reproduce.regression(_run([False], None)) is None
    assert reproduce.regression(_run([True], [True])) is None


def test_the_status_keeps_counts_and_ids_never_the_answers():
    result = _run([False, True, None], [True, True, True])
    record = reproduce.status_record(result, "abc", NOW, iso)
    assert record["current"] == {
        "total": 3, "passed": 1, "failed": 1, "unknown": 1, "reason": "Timeout",
        "message": f"{EXAMPLES[2].id}: no answer within 2s",
    }  # fmt: skip
    assert record["failing"] == [EXAMPLES[0].id] and record["examples"] == "abc"
    assert "an answer" not in str(record)
    md = reproduce.report(result, "Reproduction", iso(NOW))
    assert "| current | FAIL |" in md and "an answer" in md and "harmful-advice" in md


def test_fix_record_names_the_example_that_still_fails():
    failing = reproduce.fix_record(_run([True, False, True]), iso(NOW), NOW, iso)
    assert failing["passed"] is False and failing["failing"] == [EXAMPLES[1].id]
    assert f"example {EXAMPLES[1].id} fails: contains 'mg every hour'" in failing["message"]
    passing = reproduce.fix_record(_run([True, True]), iso(NOW), NOW, iso)
    assert passing["passed"] is True and passing["message"] == (
        "all 2 examples pass on the fixed model"
    )
    unsure = reproduce.fix_record(_run([True, None]), iso(NOW), NOW, iso)
    assert unsure["passed"] is False and "could not be checked (Timeout)" in unsure["message"]
    assert reproduce.fix_record(Run([]), iso(NOW), NOW, iso)["passed"] is False


def test_digest_changes_with_the_examples_and_the_spec():
    spec = {"endpoints": {"current": {"url": "http://a/"}}}
    same = reproduce.digest(EXAMPLES, spec)
    assert same == reproduce.digest(list(EXAMPLES), dict(spec))
    assert same != reproduce.digest(EXAMPLES[:2], spec)
    assert same != reproduce.digest(EXAMPLES, {**spec, "checks": [{"contains": "x"}]})


# --- Fix validation: when to ask, when it passes --------------------------------------


def test_fix_validation_asks_then_waits_then_passes():
    assert examples_verdict(None, True, NOW) == (
        False, "ExamplesPending", "sending the examples to the fixed model", True
    )  # fmt: skip
    asked = {"requestedAt": iso(NOW)}
    ok, reason, _, ask = examples_verdict(asked, True, NOW + timedelta(seconds=5))
    assert (ok, reason, ask) == (False, "ExamplesPending", False)
    done = {**asked, "at": iso(NOW), "passed": True, "message": "all 3 examples pass"}
    assert examples_verdict(done, True, NOW)[:2] == (True, "ExamplesPassed")
    assert examples_verdict(done, True, NOW + FIX_FRESH + timedelta(seconds=1))[3] is True


def test_a_failing_fix_is_named_and_tried_again_later():
    failed = {"requestedAt": iso(NOW), "at": iso(NOW), "passed": False,
              "message": "1 of 3 examples do not pass on the fixed model: example abc fails"}  # fmt: skip
    ok, reason, words, ask = examples_verdict(failed, True, NOW + timedelta(seconds=1))
    assert (ok, reason, ask) == (False, "ExamplesFailing", False) and "example abc" in words
    assert examples_verdict(failed, True, NOW + FIX_RECHECK)[3] is True


def test_examples_verification_without_a_reproduction_says_so():
    ok, reason, words, ask = examples_verdict(None, False, NOW)
    assert (ok, reason, ask) == (False, "ExamplesNoReproduction", False)
    assert "no reproduction" in words


# --- The hypotheses ---------------------------------------------------------------------


def test_a_reproduced_regression_ranks_the_deployment_first():
    ranked = [
        {"cause": "InfrastructureDegradation", "confidence": 0.7, "evidence": ["2 of 2 down"]},
        {"cause": "DeploymentChange", "confidence": 0.5,
         "evidence": ["Deployment/chat rolled out revision 2 1h before detection",
                      "Deployment/chat image changed chat:v1 -> chat:v2"]},
    ]  # fmt: skip
    template, image = hypotheses.changed_in(ranked)
    assert (template, image) == (False, True)
    fact = hypotheses.Reproduction(3, 3, 3, template, image)
    out = hypotheses.with_reproduction(ranked, fact, NOW)
    assert out[0]["cause"] == "DeploymentChange" and out[0]["confidence"] == hypotheses.REPRODUCED
    assert out[0]["evidence"][0] == (
        "reproduced: 3 of 3 examples fail on the current version and 3 of them pass on the "
        "previous version"
    )
    assert out[0]["evidence"][1:] == ranked[1]["evidence"]
    assert hypotheses.with_reproduction(out, fact, NOW) == out  # once, however often


def test_a_changed_template_with_the_same_image_points_at_the_template():
    ranked = [{"cause": "PromptTemplateChange", "confidence": 0.6,
               "evidence": ["ConfigMap prompts (volume of Deployment/chat) changed 5m before detection"]}]  # fmt: skip
    fact = hypotheses.Reproduction(2, 2, 2, *hypotheses.changed_in(ranked))
    assert hypotheses.with_reproduction(ranked, fact, NOW)[0]["cause"] == "PromptTemplateChange"


def test_no_regression_changes_nothing():
    ranked = [{"cause": "InputDrift", "confidence": 0.6, "evidence": []}]
    assert hypotheses.with_reproduction(ranked, hypotheses.Reproduction(2, 0, 2), NOW) == ranked


def test_rank_uses_the_reproduction_fact():
    facts = hypotheses.Facts(detected_at=NOW, reproduction=hypotheses.Reproduction(1, 1, 1))
    top = hypotheses.rank(facts, NOW)[0]
    assert top["cause"] == "DeploymentChange" and top["confidence"] == hypotheses.REPRODUCED
