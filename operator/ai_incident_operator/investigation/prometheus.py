"""A thin client over prometheus-api-client: instant and range queries as plain series.

Used by `investigation.evidence` (the policy's evidence queries) and
`resolution.verify` (the verification checks). Every request has a timeout and
at most one quick retry, and every failure becomes one `PrometheusError` whose
message a person can act on: an unreachable Prometheus is a line in the
evidence or a reason not to undo, never a crash of the reconcile loop.
Synchronous (requests): call it from kopf's threads or `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = 10.0  # seconds per request; a reconcile must not hang on a slow Prometheus
MAX_POINTS = 300  # samples per series a range query asks for; Prometheus caps at 11000


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; the message says where and why.

    `unreachable`: no answer at all (refused, timed out), so other queries would fail too.
    """

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class Series:
    """One time series: its labels and its samples as (unix seconds, value), oldest first."""

    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)

    def describe(self) -> str:
        return describe_labels(self.labels)


def describe_labels(labels: dict[str, str]) -> str:
    """`name{a="b"}` as PromQL writes a series; `{}` for a series without labels."""
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def client(url: str, timeout: float = DEFAULT_TIMEOUT) -> PrometheusConnect:
    # One retry, quickly: the library's default (3 retries, 1s backoff) would hold a
    # reconcile for many seconds per query while Prometheus is down.
    retry = Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504])
    return PrometheusConnect(url=url.rstrip("/"), disable_ssl=True, retry=retry, timeout=timeout)


def query(
    url: str, promql: str, at: datetime | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[Series]:
    """The instant value of PROMQL (at AT, else now): one sample per series."""
    params = {"time": f"{at.timestamp():.3f}"} if at else None
    with client(url, timeout) as prom:
        result = _ask(url, promql, lambda: prom.custom_query(promql, params=params))
    return _series(result)


def query_range(
    url: str,
    promql: str,
    start: datetime,
    end: datetime,
    step: timedelta | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[Series]:
    """PROMQL evaluated every STEP from START to END (default: about MAX_POINTS samples)."""
    step = step or step_for(start, end)
    with client(url, timeout) as prom:
        result = _ask(
            url,
            promql,
            lambda: prom.custom_query_range(
                promql, start_time=start, end_time=end, step=f"{step.total_seconds():g}s"
            ),
        )
    return _series(result)


def step_for(start: datetime, end: datetime, points: int = MAX_POINTS) -> timedelta:
    """A step giving about POINTS samples over [START, END], never under one second."""
    seconds = max(1, math.ceil((end - start).total_seconds() / points))
    return timedelta(seconds=seconds)


def _ask(url: str, promql: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except requests.exceptions.Timeout:
        raise PrometheusError(
            f"Prometheus at {url} did not answer {promql!r} in time; is it overloaded?",
            unreachable=True,
        ) from None
    except requests.exceptions.ConnectionError as err:
        raise PrometheusError(
            f"Prometheus at {url} is unreachable ({_root_cause(err)}); check the policy's "
            "prometheusURL and that Prometheus runs",
            unreachable=True,
        ) from None
    except requests.exceptions.RequestException as err:
        raise PrometheusError(f"Prometheus at {url} failed: {_root_cause(err)}") from None
    except PrometheusApiClientException as err:
        raise PrometheusError(
            f"Prometheus at {url} rejected {promql!r}: {_api_error(str(err))}"
        ) from None
    except (ValueError, KeyError) as err:  # not JSON, or not Prometheus's shape
        raise PrometheusError(
            f"{url} did not answer like Prometheus's HTTP API ({err}); is prometheusURL right?"
        ) from None


def _root_cause(err: Exception) -> str:
    """The innermost reason of a requests error, without urllib3's object reprs."""
    text = str(err.args[0] if err.args else err)
    for marker in ("Caused by ", "NewConnectionError("):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.split(": ", 1)[-1] if "object at 0x" in text else text
    return text.strip("()'\" ")[:300]


def _api_error(text: str) -> str:
    """Prometheus's own error (`{"error": ...}` in the body) out of the library's message."""
    start = text.find("{")
    end = text.rfind("}")
    if start != -1 and end > start:
        raw = text[start : end + 1]
        for candidate in (raw, raw.encode().decode("unicode_escape", errors="ignore")):
            try:
                body = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(body, dict) and body.get("error"):
                return f"{body.get('errorType', 'error')}: {body['error']}"
    return text[:300]


def _value(raw: str | float) -> float:
    # Prometheus writes NaN, +Inf and -Inf as strings; float() reads all three.
    return float(raw)


def _series(result: Any) -> list[Series]:
    """The API's `result` (vector, matrix or scalar) as Series."""
    if not result:
        return []
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        # a scalar or string result: [time, value]
        return [Series({}, [(float(result[0]), _value(result[1]))])]
    out = []
    for item in result:
        labels = dict(item.get("metric") or {})
        if "values" in item:
            samples = [(float(t), _value(v)) for t, v in item["values"]]
        elif "value" in item:
            samples = [(float(item["value"][0]), _value(item["value"][1]))]
        else:
            samples = []
        out.append(Series(labels, samples))
    return out


def sample_time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
