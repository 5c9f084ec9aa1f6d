"""A model-metrics exporter for tests: /metrics in the Prometheus text format on 127.0.0.1.

It stands in for the model servers (and their evaluation job) that
deploy/prometheus/ai-incident-rules.yaml watches: for each (namespace, deployment) it
serves the quality and drift gauges, request counters by code, a latency histogram,
token and cost counters, and an optional budget gauge. Tests degrade and heal each
signal; counters advance with wall-clock time at the current request rate, so rate()
sees the change from the next scrape on. Used by the e2e fixtures (tests/e2e/conftest.py)
and by any test that wants real series in a real Prometheus (tests/promkit.py).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Upper bounds of the latency histogram's buckets, in seconds (+Inf is added).
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIGNALS = ("quality", "drift", "errors", "latency", "cost")


@dataclasses.dataclass
class Signals:
    """What one model does right now; the defaults are a healthy model."""

    quality: float = 0.95  # ai_model_quality_score
    drift: float = 0.05  # ai_model_drift_score
    requests_per_second: float = 20.0
    error_ratio: float = 0.0  # share of requests answered with a 500
    latency_seconds: float = 0.3  # every request takes this long
    tokens_per_request: float = 400.0  # 70% prompt, 30% completion
    dollars_per_1k_tokens: float = 0.002
    budget_dollars_per_hour: float | None = None  # ai_model_cost_budget_dollars_per_hour


# Which Signals fields each named signal covers, for heal().
_FIELDS = {
    "quality": ("quality",),
    "drift": ("drift",),
    "errors": ("error_ratio",),
    "latency": ("latency_seconds",),
    "cost": ("tokens_per_request", "dollars_per_1k_tokens"),
}


@dataclasses.dataclass
class _Counters:
    ok: float = 0.0
    failed: float = 0.0
    buckets: list[float] = dataclasses.field(default_factory=lambda: [0.0] * len(LATENCY_BUCKETS))
    duration_sum: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    dollars: float = 0.0


class ModelMetricsExporter:
    """Serves /metrics for some (namespace, deployment) models; start() it, stop() it."""

    def __init__(self, models: Iterable[tuple[str, str]] = ()) -> None:
        self._lock = threading.Lock()
        self._signals: dict[tuple[str, str], Signals] = {}
        self._counters: dict[tuple[str, str], _Counters] = {}
        self._healthy: dict[tuple[str, str], Signals] = {}
        self._last = time.monotonic()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.scrapes = 0
        for namespace, deployment in models:
            self.add_model(namespace, deployment)

    # --- serving ----------------------------------------------------------------------

    def start(self) -> ModelMetricsExporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # one line per scrape would drown the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="model-metrics-exporter", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the exporter first"
        return self._server.server_address[1]

    @property
    def target(self) -> str:
        """host:port, for a Prometheus scrape config."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    # --- the models -------------------------------------------------------------------

    def add_model(self, namespace: str, deployment: str, **signals: float | None) -> None:
        """Serve series for NAMESPACE/DEPLOYMENT, healthy unless SIGNALS say otherwise."""
        key = (namespace, deployment)
        with self._lock:
            self._advance()
            self._healthy[key] = Signals()
            self._signals[key] = dataclasses.replace(Signals(), **signals)
            self._counters.setdefault(key, _Counters())

    def remove_model(self, namespace: str, deployment: str) -> None:
        """Stop serving its series (Prometheus marks them stale)."""
        with self._lock:
            self._signals.pop((namespace, deployment), None)
            self._counters.pop((namespace, deployment), None)

    def signals(self, namespace: str, deployment: str) -> Signals:
        with self._lock:
            return dataclasses.replace(self._signals[(namespace, deployment)])

    def set(self, namespace: str, deployment: str, **signals: float | None) -> None:
        """Change Signals fields; counters accrue at the old values up to now."""
        key = (namespace, deployment)
        with self._lock:
            if key not in self._signals:
                raise KeyError(f"no model {namespace}/{deployment}; add_model() it first")
            self._advance()
            self._signals[key] = dataclasses.replace(self._signals[key], **signals)

    def degrade_quality(self, namespace: str, deployment: str, score: float = 0.5) -> None:
        self.set(namespace, deployment, quality=score)

    def degrade_drift(self, namespace: str, deployment: str, score: float = 0.5) -> None:
        self.set(namespace, deployment, drift=score)

    def degrade_errors(self, namespace: str, deployment: str, ratio: float = 0.5) -> None:
        self.set(namespace, deployment, error_ratio=ratio)

    def degrade_latency(self, namespace: str, deployment: str, seconds: float = 8.0) -> None:
        self.set(namespace, deployment, latency_seconds=seconds)

    def degrade_cost(self, namespace: str, deployment: str, factor: float = 10.0) -> None:
        """FACTOR times more tokens per request (a runaway prompt or agent loop)."""
        healthy = self._healthy[(namespace, deployment)]
        self.set(namespace, deployment, tokens_per_request=healthy.tokens_per_request * factor)

    def heal(self, namespace: str, deployment: str, *signals: str) -> None:
        """Back to healthy values for SIGNALS (quality, drift, errors, latency, cost); all if none."""
        unknown = set(signals) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown signals {sorted(unknown)}; known: {SIGNALS}")
        healthy = self._healthy[(namespace, deployment)]
        fields = [f for s in signals or SIGNALS for f in _FIELDS[s]]
        self.set(namespace, deployment, **{f: getattr(healthy, f) for f in fields})

    # --- the text format --------------------------------------------------------------

    def _advance(self) -> None:
        """Accrue counters from the last call to now at the current signals. Lock held."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        for key, sig in self._signals.items():
            c = self._counters[key]
            requests = sig.requests_per_second * elapsed
            c.failed += requests * sig.error_ratio
            c.ok += requests * (1 - sig.error_ratio)
            for i, bound in enumerate(LATENCY_BUCKETS):
                if sig.latency_seconds <= bound:
                    c.buckets[i] += requests
            c.duration_sum += requests * sig.latency_seconds
            tokens = requests * sig.tokens_per_request
            c.prompt_tokens += tokens * 0.7
            c.completion_tokens += tokens * 0.3
            c.dollars += tokens / 1000 * sig.dollars_per_1k_tokens

    def render(self) -> str:
        """The exposition text of every model, as of now."""
        with self._lock:
            self._advance()
            self.scrapes += 1
            models = sorted(self._signals.items())
            counters = {key: copy.deepcopy(self._counters[key]) for key, _ in models}
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        def sample(name: str, key: tuple[str, str], value: float, **extra: str) -> None:
            labels = {"namespace": key[0], "deployment": key[1], **extra}
            text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            out.append(f"{name}{{{text}}} {_number(value)}")

        family(
            "ai_model_quality_score", "gauge", "Online evaluation score, 0..1, higher is better."
        )
        for key, sig in models:
            sample("ai_model_quality_score", key, sig.quality)
        family("ai_model_drift_score", "gauge", "Input drift against the reference window, 0..1.")
        for key, sig in models:
            sample("ai_model_drift_score", key, sig.drift)
        family("ai_model_requests_total", "counter", "Inference requests by HTTP status code.")
        for key, _ in models:
            sample("ai_model_requests_total", key, counters[key].ok, code="200")
            sample("ai_model_requests_total", key, counters[key].failed, code="500")
        family("ai_model_request_duration_seconds", "histogram", "End-to-end inference latency.")
        for key, _ in models:
            c = counters[key]
            for bound, value in zip(LATENCY_BUCKETS, c.buckets, strict=True):
                sample(
                    "ai_model_request_duration_seconds_bucket", key, value, le=format(bound, "g")
                )
            total = c.ok + c.failed
            sample("ai_model_request_duration_seconds_bucket", key, total, le="+Inf")
            sample("ai_model_request_duration_seconds_sum", key, c.duration_sum)
            sample("ai_model_request_duration_seconds_count", key, total)
        family("ai_model_tokens_total", "counter", "Tokens processed, by type.")
        for key, _ in models:
            sample("ai_model_tokens_total", key, counters[key].prompt_tokens, type="prompt")
            sample("ai_model_tokens_total", key, counters[key].completion_tokens, type="completion")
        family("ai_model_cost_dollars_total", "counter", "What the tokens cost, in dollars.")
        for key, _ in models:
            sample("ai_model_cost_dollars_total", key, counters[key].dollars)
        budgets = [(key, sig) for key, sig in models if sig.budget_dollars_per_hour is not None]
        if budgets:
            family("ai_model_cost_budget_dollars_per_hour", "gauge", "Hourly spend budget.")
            for key, sig in budgets:
                assert sig.budget_dollars_per_hour is not None
                sample("ai_model_cost_budget_dollars_per_hour", key, sig.budget_dollars_per_hour)
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value))
