"""Verification checks over a window of samples (the pure core of resolution.verify)."""

from datetime import UTC, datetime, timedelta

from ai_incident_operator.investigation.prometheus import Series
from ai_incident_operator.resolution.verify import CheckResult, evaluate, summarise, verify

END = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=5)
START = END - WINDOW
STEP = timedelta(seconds=1)
QUALITY = {"name": "quality", "query": "min(chat_quality_score)", "min": 0.95}


def samples(values: list[float], start: datetime = START, every: float = 10) -> list:
    return [(start.timestamp() + i * every, v) for i, v in enumerate(values)]


def whole_window(value: float) -> list:
    return samples([value] * 31)  # every 10s from START to END


def test_every_sample_in_bounds_for_the_whole_window_is_healthy():
    result = evaluate(QUALITY, [Series({}, whole_window(0.97))], START, END, STEP)
    assert result == CheckResult(
        "quality", True, "quality: 31 samples within >= 0.95 (lowest 0.97, highest 0.97)"
    )


def test_one_bad_sample_fails_and_names_the_worst():
    values = whole_window(0.97)
    values[10] = (values[10][0], 0.81)
    values[11] = (values[11][0], 0.9)
    result = evaluate(QUALITY, [Series({}, values)], START, END, STEP)
    assert not result.ok
    assert result.message == (
        "quality: 2 of 31 samples in the last 5m outside >= 0.95; worst 0.81 at "
        "2024-05-01T11:56:40Z (`min(chat_quality_score)`)"
    )


def test_no_data_is_not_healthy_and_says_so():
    for series in ([], [Series({"pod": "a"}, [])]):
        result = evaluate(QUALITY, series, START, END, STEP)
        assert not result.ok
        assert "no data for `min(chat_quality_score)` in the last 5m" in result.message
        assert "no data counts as not healthy" in result.message


def test_data_that_does_not_cover_the_window_is_not_yet_healthy():
    late = samples([0.99] * 7, start=END - timedelta(seconds=60))
    result = evaluate(QUALITY, [Series({}, late)], START, END, STEP)
    assert not result.ok
    assert "data covers only the last 60s of the 5m window" in result.message


def test_a_series_that_stopped_is_not_healthy():
    stopped = samples([0.99] * 20)  # ends 110s before END
    result = evaluate(QUALITY, [Series({}, stopped)], START, END, STEP)
    assert not result.ok and "no data since 2024-05-01T11:58:10Z" in result.message


def test_max_bounds_nan_and_every_series():
    latency = {"name": "p99", "query": "histogram_quantile(...)", "max": 2.0}
    ok = Series({"pod": "a"}, whole_window(1.5))
    slow = Series({"pod": "b"}, whole_window(1.5))
    slow.samples[-1] = (slow.samples[-1][0], 2.5)
    result = evaluate(latency, [ok, slow], START, END, STEP)
    assert not result.ok and 'worst 2.5 of {pod="b"}' in result.message and "<= 2" in result.message
    nan = Series({}, whole_window(1.0))
    nan.samples[3] = (nan.samples[3][0], float("nan"))
    result = evaluate(latency, [nan], START, END, STEP)
    assert not result.ok and "worst NaN" in result.message
    both = {"name": "ratio", "query": "q", "min": 0.1, "max": 0.2}
    assert not evaluate(both, [Series({}, whole_window(0.3))], START, END, STEP).ok
    assert evaluate(both, [Series({}, whole_window(0.15))], START, END, STEP).ok


def test_summary_lists_failures_first_and_names_the_passing():
    ok, message = summarise(
        [CheckResult("quality", True, "quality: fine"), CheckResult("p99", False, "p99: slow")],
        WINDOW,
    )
    assert (ok, message) == (False, "not healthy: p99: slow (passing: quality)")
    ok, message = summarise([CheckResult("quality", True, "quality: fine")], WINDOW)
    assert (ok, message) == (True, "healthy for 5m: quality: fine")


def test_verify_without_checks_or_without_prometheus():
    assert verify([], "", WINDOW, END) == (
        True,
        "no resolution.verification.checks in the policy: nothing to verify",
    )
    ok, message = verify([QUALITY], "", WINDOW, END)
    assert not ok and "no prometheusURL" in message


def test_an_unreachable_prometheus_is_a_reason_not_a_crash():
    # Port 9 on loopback: nothing listens there; the connection is refused at once.
    ok, message = verify([QUALITY], "http://127.0.0.1:9", WINDOW, END)
    assert not ok
    assert message.startswith(
        "not healthy: quality: cannot verify: Prometheus at http://127.0.0.1:9 is unreachable"
    )
    ok, message = verify(
        [QUALITY, dict(QUALITY, name="latency")], "http://127.0.0.1:9", WINDOW, END
    )
    assert message.endswith("; latency: not run, Prometheus is unreachable")
