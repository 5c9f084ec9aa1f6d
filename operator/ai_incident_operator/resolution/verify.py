"""Verification before undo: is production healthy, by the policy's checks, for the whole window?

The playbook: "verify resolution in production through monitoring". Each check of
`resolution.verification.checks` ({name, query, min?, max?}) is a PromQL range
query over the last `window`; every sample of every series must lie within
[min, max], the data must cover the window, and no data at all is not healthy.
`verify` asks Prometheus and returns (ok, message); `evaluate` is its pure core.
The engine calls `verify` before undoing mitigations and between traffic steps;
a False result keeps the incident `Resolving` with the message as the reason.

With `resolution.verification.examples: true` the incident's examples must also pass
on the fixed model: the scheduler sends them (`investigation.refresh`, off the pass)
when `status.reproduction.fix.requestedAt` asks, and records the outcome beside it;
`examples_verdict` (pure) reads that record and says when to ask again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import egress
from ..investigation import prometheus
from ..investigation.prometheus import PrometheusError, Series
from ..times import human, iso, parse_time

MIN_WINDOW = timedelta(seconds=1)
FIX_RECHECK = timedelta(seconds=20)  # a failing fix is tried again this long after
FIX_FRESH = timedelta(minutes=10)  # a passing outcome older than this is asked again
FIX_STALE = timedelta(minutes=5)  # a request unanswered this long is asked again


@dataclass
class CheckResult:
    name: str
    ok: bool
    message: str


def verify(
    checks: list[dict[str, Any]],
    prometheus_url: str,
    window: timedelta,
    now: datetime,
    *,
    namespaced: bool = True,
) -> tuple[bool, str]:
    """(healthy, why): every check held for WINDOW up to NOW, or what a person should look at.

    NAMESPACED: the URL is a namespaced MitigationPolicy's, so it must pass `egress.check`
    (False only for a ClusterMitigationPolicy's); a refused URL is never called.
    """
    if not checks:
        return True, "no resolution.verification.checks in the policy: nothing to verify"
    if not prometheus_url:
        return False, (
            "resolution.verification has checks but no prometheusURL: set it, or remove the "
            "checks to resolve without verification"
        )
    refused = egress.check(prometheus_url, namespaced)
    if refused:
        return False, f"not verified: prometheusURL refused: {refused}"
    window = max(window, MIN_WINDOW)
    start = now - window
    step = prometheus.step_for(start, now)
    results = []
    down = ""  # once Prometheus is unreachable, the other checks would wait for the same
    for check in checks:
        name = check.get("name") or check.get("query") or "?"
        if not check.get("query"):
            results.append(CheckResult(name, False, f"{name}: the check has no query"))
            continue
        if down:
            results.append(CheckResult(name, False, f"{name}: not run, Prometheus is unreachable"))
            continue
        try:
            series = prometheus.query_range(prometheus_url, check["query"], start, now, step)
        except PrometheusError as err:
            results.append(CheckResult(name, False, f"{name}: cannot verify: {err}"))
            if err.unreachable:
                down = str(err)
            continue
        results.append(evaluate(check, series, start, now, step))
    return summarise(results, window)


def examples_verdict(
    fix: dict[str, Any] | None, has_reproduction: bool, now: datetime, stepping: bool = False
) -> tuple[bool, str, str, bool]:
    """(ok, reason, words, ask again) from `status.reproduction.fix` (pure).

    STEPPING: traffic is coming back in steps; a pass then holds until the steps end (an
    old outcome asked again would send users back to the fallback meanwhile).
    """
    if not has_reproduction:
        return (
            False,
            "ExamplesNoReproduction",
            (
                "resolution.verification.examples is true but the policy has no reproduction "
                "(endpoints.current): add it, or set examples: false"
            ),
            False,
        )
    fix = fix or {}
    requested = parse_time(fix.get("requestedAt"))
    at = parse_time(fix.get("at"))
    if requested is None:
        return False, "ExamplesPending", "sending the examples to the fixed model", True
    if at is None:
        stale = now - requested > FIX_STALE
        return (
            False,
            "ExamplesPending",
            (f"waiting for the examples' outcome on the fixed model (asked at {iso(requested)})"),
            stale,
        )
    message = str(fix.get("message") or "")
    if fix.get("passed") is True:
        if now - at > FIX_FRESH and not stepping:
            return (
                False,
                "ExamplesPending",
                "the examples' outcome is old: sending them again",
                True,
            )
        return True, "ExamplesPassed", message or "the examples pass on the fixed model", False
    return (
        False,
        "ExamplesFailing",
        (f"{message or 'the examples do not pass on the fixed model'} (checked at {iso(at)})"),
        now - at >= FIX_RECHECK,
    )


def summarise(results: list[CheckResult], window: timedelta) -> tuple[bool, str]:
    failed = [r for r in results if not r.ok]
    if not failed:
        return True, f"healthy for {human(window)}: " + "; ".join(r.message for r in results)
    passed = [r.name for r in results if r.ok]
    message = "not healthy: " + "; ".join(r.message for r in failed)
    if passed:
        message += f" (passing: {', '.join(passed)})"
    return False, message


def evaluate(
    check: dict[str, Any], series: list[Series], start: datetime, end: datetime, step: timedelta
) -> CheckResult:
    """Whether SERIES (the check's range query over [START, END]) satisfies the check (pure)."""
    name = check.get("name") or check.get("query") or "?"
    query = check.get("query", "")
    low, high = check.get("min"), check.get("max")
    bounds = _bounds(low, high)
    window = end - start
    if not any(s.samples for s in series):
        return CheckResult(
            name,
            False,
            f"{name}: no data for `{query}` in the last {human(window)}; no data counts as not "
            "healthy: check that the metric exists and Prometheus scrapes it",
        )
    # How late the first sample (or how early the last) may be and still count as covering
    # the window: two seconds (a late scrape, the second the client rounds the range to),
    # or a step or two, never a large part of a longer window.
    slack = max(2.0, min(2 * step.total_seconds(), 0.1 * window.total_seconds()))
    total = bad = 0
    worst: tuple[float, float, Series] | None = None  # (distance outside, time, series)
    worst_value = math.nan
    first = min(s.samples[0][0] for s in series if s.samples)
    last = max(s.samples[-1][0] for s in series if s.samples)
    for s in series:
        for t, v in s.samples:
            total += 1
            distance = _outside(v, low, high)
            if distance > 0:
                bad += 1
                if worst is None or distance > worst[0]:
                    worst, worst_value = (distance, t, s), v
    if worst is not None:
        _, when, s = worst
        which = f" of {s.describe()}" if len(series) > 1 or s.labels else ""
        return CheckResult(
            name,
            False,
            f"{name}: {bad} of {total} samples in the last {human(window)} outside {bounds}; "
            f"worst {_fmt(worst_value)}{which} at {iso(prometheus.sample_time(when))} "
            f"(`{query}`)",
        )
    if first > start.timestamp() + slack:
        covered = end.timestamp() - first
        return CheckResult(
            name,
            False,
            f"{name}: data covers only the last {human(timedelta(seconds=covered))} of the "
            f"{human(window)} window (since {iso(prometheus.sample_time(first))}); healthy so "
            "far, not yet for the whole window",
        )
    if last < end.timestamp() - slack:
        return CheckResult(
            name,
            False,
            f"{name}: no data since {iso(prometheus.sample_time(last))}; the series stopped "
            "(is the target still scraped?)",
        )
    values = [v for s in series for _, v in s.samples]
    span = f"lowest {_fmt(min(values))}, highest {_fmt(max(values))}"
    return CheckResult(name, True, f"{name}: {total} samples within {bounds} ({span})")


def _outside(value: float, low: float | None, high: float | None) -> float:
    """How far VALUE lies outside [LOW, HIGH]; inf for NaN; 0 inside."""
    if math.isnan(value):
        return math.inf
    if low is not None and value < low:
        return low - value
    if high is not None and value > high:
        return value - high
    return 0.0


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"[{low:g}, {high:g}]"
    if low is not None:
        return f">= {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return "any value"


def _fmt(value: float) -> str:
    return "NaN" if math.isnan(value) else f"{value:.4g}"
