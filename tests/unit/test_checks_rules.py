"""The answer checks (`investigation.checks`): what a good answer must satisfy.

Pure rules, so the ones that must hold for any answer are checked with hypothesis:
contains and notContains are complements, a refused regex is never run, a path that
is there is found, a judge without a score never passes.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ai_incident_operator.investigation import checks as ck
from ai_incident_operator.investigation.checks import Answer

texts = st.text(max_size=200)
needles = st.text(min_size=1, max_size=20)


@given(texts, needles)
def test_contains_and_not_contains_are_complements(text, needle):
    answer = Answer(text)
    has, _ = ck.evaluate({"contains": needle}, answer)
    lacks, _ = ck.evaluate({"notContains": needle}, answer)
    assert has is (needle in text) and lacks is (not has)


@given(texts, needles, texts)
def test_a_needle_put_in_the_answer_is_found(before, needle, after):
    assert ck.evaluate({"contains": needle}, Answer(before + needle + after))[0] is True
    assert ck.evaluate({"notContains": needle}, Answer(before + needle + after))[0] is False


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?P<x>a)(?P=x)", "(?=a)b", "(?<!x)y", "a**"])
def test_what_re2_cannot_run_is_refused_with_the_reason(pattern):
    assert "RE2" in ck.regex_problem(pattern)
    ok, reason = ck.evaluate({"regex": pattern}, Answer("aab"))
    assert ok is None and "RE2" in reason


@pytest.mark.timeout(60)  # a hang, not a speed limit: Python's re takes minutes on these
@pytest.mark.parametrize(
    "pattern",
    ["(a+)+$", "(a*)*b", "(a|aa)+$", "(x+x+)+y", r"(\w+\s?)*$", ".*.*.*c", "((ab)*)+c",
     "(a{1,5})+", "a*a*a*a*c"],
)  # fmt: skip
def test_patterns_that_backtrack_in_python_run_in_linear_time(pattern):
    assert ck.regex_problem(pattern) == ""
    assert ck.evaluate({"regex": pattern}, Answer("ab" * 20000))[0] in (True, False)


@pytest.mark.parametrize(
    "pattern", [r"\d+ mg", "(every|each) hour", "[a-z]+@[a-z]+", "^Sure", r"(ab)c+", "x{2,3}",
                "(?i)consult"]
)  # fmt: skip
def test_plain_regexes_are_allowed(pattern):
    assert ck.regex_problem(pattern) == ""


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab()|*+?.\\", min_size=1, max_size=12), st.text("ab", max_size=8))
def test_a_regex_means_what_it_means_in_python(pattern, text):
    """RE2 is a change of engine, not of meaning: an allowed pattern finds what Python's
    re finds (short texts, where backtracking costs nothing)."""
    if ck.regex_problem(pattern):
        return
    try:
        expected = re.search(pattern, text) is not None
    except re.error:
        return  # Python refuses what RE2 accepts: nothing to compare
    assert ck.evaluate({"regex": pattern}, Answer(text))[0] is expected


def test_the_regex_text_is_bounded():
    answer = Answer("x" * (ck.MAX_REGEX_TEXT + 10) + "needle")
    assert ck.evaluate({"regex": "needle"}, answer)[0] is False
    assert ck.evaluate({"contains": "needle"}, answer)[0] is True


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-100, 100) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,4}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=10,
)


def _paths(doc, prefix="$"):
    yield prefix, doc
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, f"{prefix}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, f"{prefix}[{i}]")


@given(json_values.filter(lambda d: d is not None))  # a null answer is "not JSON"
def test_every_path_in_a_document_is_found_with_its_value(doc):
    for path, value in _paths(doc):
        ok, reason = ck.evaluate({"jsonPath": path, "equals": value}, Answer("", doc))
        assert ok is True, (path, reason)


def test_json_path_bounds():
    doc = {"scores": [{"safety": 0.2}], "label": "unsafe"}
    assert ck.evaluate({"jsonPath": "$.scores[0].safety", "min": 0.5}, Answer("", doc)) == (
        False,
        "$.scores[0].safety is 0.2, below 0.5",
    )
    assert ck.evaluate({"jsonPath": "$.scores[0].safety", "max": 0.5}, Answer("", doc))[0]
    assert not ck.evaluate({"jsonPath": "$.label", "equals": "safe"}, Answer("", doc))[0]
    assert ck.evaluate({"jsonPath": "$.missing"}, Answer("", doc)) == (
        False,
        "$.missing: not in the answer",
    )
    assert (
        ck.evaluate({"jsonPath": "$.a"}, Answer("plain words"))[1] == "$.a: the answer is not JSON"
    )
    assert ck.evaluate({"jsonPath": "$.label", "min": 1}, Answer("", doc))[0] is False


@given(st.floats(0, 100, allow_nan=False), st.integers(1, 100_000))
def test_latency_bound(latency, limit_ms):
    ok, _ = ck.evaluate({"maxLatency": f"{limit_ms}ms"}, Answer("x", latency=latency))
    assert ok is (latency <= limit_ms / 1000)


@given(st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False))
def test_judge_compares_its_score(score, minimum):
    check = {"judge": {"url": "http://127.0.0.1:1/judge", "minScore": minimum}}
    assert ck.evaluate(check, Answer("x"), score)[0] is (score >= minimum)


def test_a_judge_without_a_score_never_passes():
    check = {"judge": {"url": "http://127.0.0.1:1/judge", "minScore": 0.5}}
    ok, reason = ck.evaluate(check, Answer("x"), None, "no answer within 2s")
    assert ok is None and reason == "judge: no answer within 2s"


def test_evaluate_all_fails_before_it_is_unsure():
    judge = {"judge": {"url": "http://127.0.0.1:1/j", "minScore": 0.5}}
    answer = Answer("take 5000 mg every hour")
    assert ck.evaluate_all([{"notContains": "mg every"}, judge], answer)[0] is False
    assert ck.evaluate_all([{"notContains": "never"}, judge], answer)[0] is None
    assert ck.evaluate_all([{"notContains": "never"}, judge], answer, {1: (0.9, "")}) == (
        True,
        ["lacks 'never'", "judge score 0.9 (at least 0.5)"],
    )


@pytest.mark.parametrize(
    ("check", "words"),
    [
        ({}, "exactly one of"),
        ({"contains": "a", "regex": "b"}, "exactly one of"),
        ({"contains": ""}, "non-empty"),
        ({"regex": "("}, "not valid RE2 syntax"),
        ({"maxLatency": "soon"}, "maxLatency"),
        ({"jsonPath": "a.b"}, "is not a path"),
        ({"jsonPath": "$.a", "min": "1"}, "min must be a number"),
        ({"judge": {"minScore": 0.5}}, "exactly one of url and service"),
        ({"judge": {"url": "http://x/", "minScore": "high"}}, "minScore must be a number"),
        ({"judge": {"url": "http://x/", "minScore": 1, "format": "XML"}}, "format"),
    ],
)
def test_bad_checks_say_what_is_wrong(check, words):
    assert words in ck.check_problem(check)
    assert ck.evaluate(check, Answer("x"))[0] is None


def test_spec_problems():
    good = {
        "endpoints": {
            "current": {"url": "http://chat/v1/chat/completions"},
            "previous": {"service": {"name": "chat-v1", "port": 80, "path": "/v1/chat/completions"},
                         "format": "OpenAIChat"},
        },
        "checks": [{"notContains": "mg every hour"}],
        "examplesFrom": {"configMap": "red-team"},
        "timeout": "5s",
    }  # fmt: skip
    assert ck.spec_problems(good) == []
    assert ck.spec_problems(None) == []
    assert ck.spec_problems({"checks": []}) == [
        "reproduction.endpoints.current: required (where the serving model answers)"
    ]
    bad = {
        "endpoints": {"current": {"url": "http://a/", "service": {"name": "b", "port": 1}},
                      "previous": {"service": {"name": "b", "port": 0}}},
        "checks": [{"regex": "(a)\\1"}],
        "examplesFrom": "cm",
        "timeout": "later",
    }  # fmt: skip
    problems = ck.spec_problems(bad)
    assert any("current: give exactly one of url and service" in p for p in problems)
    assert any("previous.service.port" in p for p in problems)
    assert any(p.startswith("reproduction.checks[0]: regex") for p in problems)
    assert any(p.startswith("reproduction.examplesFrom") for p in problems)
    assert any(p.startswith("reproduction.timeout") for p in problems)
    urls = ck.urls_of({**good, "checks": [{"judge": {"url": "http://guard/", "minScore": 1}}]})
    assert urls == [
        ("reproduction.endpoints.current.url", "http://chat/v1/chat/completions"),
        ("reproduction.checks[0].judge.url", "http://guard/"),
    ]
