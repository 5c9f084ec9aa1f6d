"""A thin client of Prometheus's HTTP API: instant and range queries as plain series.

Used by `investigation.evidence` (the policy's evidence queries) and
`resolution.verify` (the verification checks). Every request has a timeout and
at most one quick retry, and every failure becomes one `PrometheusError` whose
message a person can act on: an unreachable Prometheus is a line in the
evidence or a reason not to undo, never a crash of the reconcile loop.
Redirects are not followed, answers are bounded (MAX_BODY), and no body is ever
copied into a message: the URL may be a tenant's, the answer an internal service's.
Synchronous (requests): call it from kopf's threads or `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import egress

DEFAULT_TIMEOUT = 10.0  # seconds per request; a reconcile must not hang on a slow Prometheus
MAX_POINTS = 300  # samples per series a range query asks for; Prometheus caps at 11000
MAX_BODY = 32 * 1024 * 1024  # bytes of an answer read; more is refused, not buffered
ERROR_LIMIT = 200  # characters of Prometheus's own `error` kept in a message


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query; the message says where and why.

    `unreachable`: no answer at all (refused, timed out), so other queries would fail too.
    The message never holds the body of an answer: only a status code, or the `error`
    field of Prometheus's JSON answer, sanitised and cut to ERROR_LIMIT characters.
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


def session() -> requests.Session:
    """A session with one quick retry and no redirects: a 3xx is an answer, not followed."""
    s = requests.Session()
    # One retry, quickly: three retries with a 1s backoff would hold a reconcile for many
    # seconds per query while Prometheus is down.
    retry = Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504],
                  redirect=0, raise_on_redirect=False, raise_on_status=False)  # fmt: skip
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.mount("https://", HTTPAdapter(max_retries=retry))
    s.trust_env = False  # no proxy or netrc from the environment: the URL is what is called
    return s


def query(
    url: str, promql: str, at: datetime | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[Series]:
    """The instant value of PROMQL (at AT, else now): one sample per series."""
    params = {"query": promql}
    if at:
        params["time"] = f"{at.timestamp():.3f}"
    return _series(_ask(url, promql, lambda: _get(url, "query", params, timeout)))


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
    params = {
        "query": promql,
        # Whole seconds, as prometheus-api-client sent them: the evaluation grid stays on the
        # seconds the scrapes and `verify`'s coverage slack assume.
        "start": str(round(start.timestamp())),
        "end": str(round(end.timestamp())),
        "step": f"{step.total_seconds():g}s",
    }
    return _series(_ask(url, promql, lambda: _get(url, "query_range", params, timeout)))


def step_for(start: datetime, end: datetime, points: int = MAX_POINTS) -> timedelta:
    """A step giving about POINTS samples over [START, END], never under one second."""
    seconds = max(1, math.ceil((end - start).total_seconds() / points))
    return timedelta(seconds=seconds)


class _Answer(Exception):
    """An HTTP answer that is not a success; CODE and Prometheus's `error`, if it gave one."""

    def __init__(self, code: int, error: str = "") -> None:
        super().__init__(code)
        self.code = code
        self.error = error


def _get(url: str, endpoint: str, params: dict[str, str], timeout: float) -> Any:
    """GET URL/api/v1/ENDPOINT; the `data.result` of a success, else raises _Answer."""
    with session() as s:
        resp = s.get(f"{url.rstrip('/')}/api/v1/{endpoint}", params=params, timeout=timeout,
                     allow_redirects=False, stream=True)  # fmt: skip
        with resp:
            raw = resp.raw.read(MAX_BODY + 1, decode_content=True)
            code = resp.status_code
    if len(raw) > MAX_BODY:
        raise _Answer(code, f"the answer is larger than {MAX_BODY // 2**20} MiB")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        if 200 <= code < 300:
            raise ValueError("not JSON")
        raise _Answer(code)
    if body.get("status") == "success" and 200 <= code < 300:
        return (body.get("data") or {})["result"]
    error = body.get("error")
    if isinstance(error, str) and error:
        kind = body.get("errorType")
        kind = kind if isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,40}", kind) else "error"
        raise _Answer(code, f"{kind}: {egress.sanitise(error, ERROR_LIMIT)}")
    if 200 <= code < 300:
        raise ValueError("not Prometheus's shape")
    raise _Answer(code)


def _ask(url: str, promql: str, call: Callable[[], Any]) -> Any:
    where = egress.display(url)
    try:
        return call()
    except _Answer as answer:
        if answer.error:
            raise PrometheusError(
                f"Prometheus at {where} rejected {promql!r}: {answer.error}"
            ) from None
        if 300 <= answer.code < 400:
            raise PrometheusError(
                f"HTTP {answer.code} from Prometheus at {where}: a redirect, not followed; "
                "set prometheusURL to where Prometheus answers"
            ) from None
        raise PrometheusError(
            f"HTTP {answer.code} from Prometheus at {where}; is prometheusURL right?"
        ) from None
    except requests.exceptions.Timeout:
        raise PrometheusError(
            f"Prometheus at {where} did not answer {promql!r} in time; is it overloaded?",
            unreachable=True,
        ) from None
    except requests.exceptions.ConnectionError as err:
        raise PrometheusError(
            f"Prometheus at {where} is unreachable ({_root_cause(err)}); check the policy's "
            "prometheusURL and that Prometheus runs",
            unreachable=True,
        ) from None
    except requests.exceptions.RequestException as err:
        raise PrometheusError(f"Prometheus at {where} failed: {_root_cause(err)}") from None
    except (ValueError, KeyError, TypeError):  # not JSON, or not Prometheus's shape
        raise PrometheusError(
            f"{where} did not answer like Prometheus's HTTP API; is prometheusURL right?"
        ) from None


def _root_cause(err: Exception) -> str:
    """The innermost reason of a requests error, without urllib3's object reprs or hosts."""
    text = str(err.args[0] if err.args else err)
    for marker in ("Caused by ", "NewConnectionError("):
        if marker in text:
            text = text.split(marker, 1)[1]
    text = text.split(": ", 1)[-1] if "object at 0x" in text else text
    return egress.sanitise(text.strip("()'\" "), ERROR_LIMIT)


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
