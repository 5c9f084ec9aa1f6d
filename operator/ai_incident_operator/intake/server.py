"""The operator's HTTP server: Alertmanager's webhook, probes and metrics (aiohttp).

`cli._run` builds `WebhookSettings` from its flags (`settings_from`), then `start`s
the server on kopf's event loop before `kopf.operator` and `stop`s it on shutdown.
Routes: `POST /api/v1/alerts` (bearer token), `GET /healthz`, `GET /readyz` (ready
once the apiserver answered and `Intake.also_ready` holds: cli sets it to "kopf watches
every resource handled") and `GET /metrics` (prometheus_client).

Bad input gets a 4xx with a JSON body naming the field and the problem, never a
5xx; 503 only when the apiserver cannot take the alerts, so that Alertmanager
retries and nothing is lost. A payload with some bad alerts is taken without them:
200, the bad ones named under `problems` (and counted in `aiincident_alerts_invalid`),
since Alertmanager never sends a 4xx again and the good alerts would be lost.
Kubernetes calls are synchronous: they run in threads (`asyncio.to_thread`), never
on the loop.

Misuse bounds (issue 11; the chart README's "Security model" says why): alerts open
incidents only within the sender's reach (`limits.Reach`: `--webhook-namespaces`,
the token's namespaces, `--namespace`), refused ones are reported like bad ones
(all refused: 403); a payload has at most `max_alerts` alerts and `max_body` bytes
(413); new incidents are budgeted per minute (429 with Retry-After beyond, and the
alerts that folded into existing incidents are kept); unmapped incidents beyond
`max_unmapped` fold into one record that counts them. Connections have read deadlines
and a cap (`connections`). A 403 from the apiserver is answered 403 with what to grant,
never 503; readiness is the apiserver's, never one alert's. 503 bodies and /readyz do
not quote the apiserver's errors (they can name its URL or the ServiceAccount): the
log does. `/metrics` can move to its own address or require a token.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import json
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import prometheus_client
from aiohttp import web

from .. import kube, metrics
from ..policy import BUILTIN_PROTECTED_NAMESPACES
from ..resources import SA_NAMESPACE_FILE
from . import connections, limits, mapping, store
from .limits import Limits, Reach

log = logging.getLogger(__name__)
TOKEN_ENV = "AIINCIDENT_WEBHOOK_TOKEN"
ALERTS_PATH = "/api/v1/alerts"
DELIVERY_TIMEOUT = 30.0  # seconds for one group's writes before answering 503
PROBE_INTERVAL = 5.0
PROTECTED_ENV = "AIINCIDENT_PROTECTED_NAMESPACES"


class SettingsError(Exception):
    """The webhook cannot start as configured; the message says what to do."""


@dataclass
class WebhookSettings:
    host: str
    port: int
    token_file: Path | None = None
    token: str | None = None  # from the environment, when there is no file
    insecure: bool = False  # no authentication (--insecure-no-auth)
    operator_namespace: str = field(default_factory=kube.operator_namespace)
    # Where alerts never open incidents against workloads (besides the operator's namespace).
    protected_namespaces: frozenset[str] = field(default_factory=lambda: protected_namespaces())
    # Where alerts may open incidents (names or patterns; None: anywhere): the webhook's
    # own allowlist and the namespaces the operator watches.
    namespaces: tuple[str, ...] | None = None
    watch_namespaces: tuple[str, ...] | None = None
    limits: Limits = field(default_factory=Limits)
    metrics_listen: tuple[str, int] | None = None  # /metrics on its own address
    metrics_require_token: bool = False

    def reach(self) -> Reach:
        """The reach every sender has, before its token's own bound."""
        return (
            Reach()
            .within("--webhook-namespaces", self.namespaces)
            .within("--namespace (the namespaces the operator watches)", self.watch_namespaces)
        )


def protected_namespaces(environ: dict[str, str] | None = None) -> frozenset[str]:
    """kube-system, kube-public, kube-node-lease, AIINCIDENT_PROTECTED_NAMESPACES, and the
    namespace the operator's pod runs in (its ServiceAccount's, which AIINCIDENT_NAMESPACE
    may not be)."""
    environ = os.environ if environ is None else environ
    extra = {n.strip() for n in environ.get(PROTECTED_ENV, "").split(",") if n.strip()}
    try:
        own = SA_NAMESPACE_FILE.read_text().strip()
    except OSError:
        own = ""
    return BUILTIN_PROTECTED_NAMESPACES | extra | ({own} if own else set())


def parse_listen(text: str, flag: str = "--webhook-listen") -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets; an empty host means every interface)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"{flag} {text!r} is not HOST:PORT, e.g. 0.0.0.0:8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def settings_from(
    listen: str, token_file: str | None, insecure: bool, environ: dict[str, str] | None = None
) -> WebhookSettings | None:
    """The webhook's settings from the `run` flags; None when LISTEN is '' (no webhook)."""
    if not listen:
        return None
    host, port = parse_listen(listen)
    environ = os.environ if environ is None else environ
    settings = WebhookSettings(host, port, insecure=insecure)
    if token_file:
        settings.token_file = Path(token_file)
        _read_token(settings.token_file)  # fail now, not on the first alert
    elif environ.get(TOKEN_ENV, "").strip():
        settings.token = environ[TOKEN_ENV].strip()
    elif not insecure:
        raise SettingsError(
            "the webhook needs a bearer token: pass --webhook-token-file PATH or set "
            f"{TOKEN_ENV}; or run without authentication with --insecure-no-auth"
        )
    if insecure and (settings.token_file or settings.token):
        log.warning("--insecure-no-auth is ignored: a webhook token is configured")
        settings.insecure = False
    return settings


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The webhook's bounds as flags of `aiincident run` (the chart's webhook.* values)."""
    d = Limits()
    run.add_argument(
        "--webhook-namespaces",
        action="append",
        metavar="NS[,NS...]",
        help="alerts may open incidents only in these namespaces (names or patterns such as "
        "team-*; repeatable; default: any the operator watches). Others are refused",
    )
    numbers = [
        ("--webhook-max-alerts", "max_alerts", "alerts in one request (413 beyond)"),
        ("--webhook-max-body-bytes", "max_body", "bytes of one request's body (413 beyond)"),
        ("--webhook-incidents-per-minute", "incidents_per_minute",
         "new incidents per minute, all senders together (429 with Retry-After beyond)"),
        ("--webhook-max-unmapped", "max_unmapped",
         "open unmapped incidents kept; beyond, unmapped alerts fold into one record"),
        ("--webhook-max-connections", "max_connections",
         "open connections (a new one gets 503 beyond)"),
    ]  # fmt: skip
    for flag, name, what in numbers:
        run.add_argument(
            flag, type=int, default=getattr(d, name), metavar="N",
            help=f"at most N {what} (default: %(default)s)",
        )  # fmt: skip
    run.add_argument(
        "--webhook-read-timeout",
        type=float,
        default=d.read_timeout,
        metavar="SECONDS",
        help="seconds a client has to send a request's headers, and then its body "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default="",
        help="serve /metrics here instead of on the webhook's address",
    )
    run.add_argument(
        "--metrics-require-token",
        action="store_true",
        help="/metrics needs the webhook's bearer token too",
    )


def settings_from_args(args: argparse.Namespace) -> WebhookSettings | None:
    """`settings_from` with the bounds of `add_arguments` and the watched namespaces."""
    settings = settings_from(args.webhook_listen, args.webhook_token_file, args.insecure_no_auth)
    if settings is None:
        return None
    bounds = Limits(
        max_body=args.webhook_max_body_bytes,
        max_alerts=args.webhook_max_alerts,
        incidents_per_minute=args.webhook_incidents_per_minute,
        max_unmapped=args.webhook_max_unmapped,
        read_timeout=args.webhook_read_timeout,
        max_connections=args.webhook_max_connections,
    )
    if wrong := bounds.problems():
        raise SettingsError("webhook limits: " + "; ".join(wrong))
    try:
        settings.namespaces = limits.namespace_list(args.webhook_namespaces, "--webhook-namespaces")
        settings.watch_namespaces = limits.namespace_list(args.namespace, "--namespace")
    except ValueError as err:
        raise SettingsError(str(err)) from None
    settings.limits = bounds
    if args.metrics_listen:
        settings.metrics_listen = parse_listen(args.metrics_listen, "--metrics-listen")
    settings.metrics_require_token = args.metrics_require_token
    if settings.metrics_require_token and settings.insecure:
        raise SettingsError("--metrics-require-token needs a webhook token")
    return settings


def _read_token(path: Path) -> list[limits.Token]:
    try:
        text = path.read_text()
    except OSError as err:
        raise SettingsError(f"--webhook-token-file {path}: {err.strerror}") from None
    try:
        tokens = limits.parse_tokens(text)
    except limits.TokenFileError as err:
        raise SettingsError(f"--webhook-token-file {path}: {err}") from None
    if not tokens:
        raise SettingsError(f"--webhook-token-file {path} is empty")
    return tokens


class _Token:
    """The accepted tokens; a file is read again when it changes (a rotated Secret)."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.path = settings.token_file
        self.value: list[limits.Token] | None = (
            [limits.Token(settings.token)]
            if settings.token
            else (_read_token(self.path) if self.path else None)
        )
        self.mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def current(self) -> list[limits.Token] | None:
        mtime = self._mtime()
        if self.path and mtime != self.mtime:
            try:
                self.value, self.mtime = _read_token(self.path), mtime
            except SettingsError as err:  # keep the last good token
                log.warning("keeping the previous webhook token: %s", err)
        return self.value


def _problem(
    status: int, error: str, problems: list[mapping.Problem], **headers: str
) -> web.Response:
    body = {"error": error, **problems[0].as_dict(), "problems": [p.as_dict() for p in problems]}
    return web.json_response(body, status=status, headers=headers or None)


def _one(status: int, error: str, where: str, problem: str, **headers: str) -> web.Response:
    return _problem(status, error, [mapping.Problem(where, problem)], **headers)


UNAVAILABLE = (
    "the apiserver cannot take the alerts now; Alertmanager sends them again "
    "(the operator's log says why)"
)


class Intake:
    """The app's state: the token, readiness, the budgets, one lock per incident being written."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.token = _Token(settings)
        self.ready = False
        self.not_ready_because = "the apiserver has not answered yet"
        # What else must hold for /readyz (set by cli: kopf watches every resource handled).
        self.also_ready: Callable[[], str | None] = lambda: None
        self.reach = settings.reach()
        self.admission = store.Admission(
            limits.Bucket(settings.limits.incidents_per_minute), settings.limits.max_unmapped
        )
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # --- probes -------------------------------------------------------------------------

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        because = self.also_ready() if self.ready else self.not_ready_because
        if because is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": because}, status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        if self.settings.metrics_require_token:
            denied, _ = self._authenticate(request)
            if denied is not None:
                return denied
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
        response = web.Response(body=body)
        response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
        return response

    def _set_ready(self, ready: bool, because: str = "") -> None:
        if ready != self.ready:
            log.info("webhook %s", "ready" if ready else f"not ready: {because}")
        self.ready, self.not_ready_because = ready, because

    async def probe_forever(self) -> None:
        """Readiness: whether the apiserver answers (checked now and then; a write that
        succeeds says so too, one that fails for one alert's sake says nothing)."""
        while True:
            try:
                await asyncio.wait_for(asyncio.to_thread(_ask_apiserver), PROBE_INTERVAL * 2)
                self._set_ready(True)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self.ready:
                    log.warning("the apiserver does not answer: %s", err)
                # /readyz is unauthenticated: its reason does not quote the error (a URL).
                self._set_ready(False, "the apiserver does not answer; see the operator's log")
            await asyncio.sleep(PROBE_INTERVAL if self.ready else 1.0)

    # --- POST /api/v1/alerts ------------------------------------------------------------

    def _authenticate(
        self, request: web.Request
    ) -> tuple[web.Response | None, tuple[str, ...] | None]:
        """(a 401/403 answer or None, the namespaces the sender's token may reach)."""
        expected = self.token.current()
        if expected is None:  # --insecure-no-auth
            return None, None
        header = request.headers.get("Authorization")
        if not header:
            return _one(
                401,
                "unauthorized",
                "Authorization",
                "missing: send Authorization: Bearer <token>",
                **{"WWW-Authenticate": "Bearer"},
            ), None
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _one(
                401,
                "unauthorized",
                "Authorization",
                "must be 'Bearer <token>'",
                **{"WWW-Authenticate": "Bearer"},
            ), None
        offered = given.strip().encode("utf-8", "surrogateescape")
        found = None
        for token in expected:  # every one compared: the time says nothing about which
            if hmac.compare_digest(offered, token.value.encode()):
                found = token
        if found is None:
            return _one(
                403, "forbidden", "Authorization", "the bearer token is not the webhook's token"
            ), None
        return None, found.namespaces

    async def _body(self, request: web.Request) -> bytes | web.Response:
        if request.content_type != "application/json" and not request.content_type.endswith(
            "+json"
        ):
            return _one(
                415,
                "unsupported media type",
                "Content-Type",
                f"must be application/json, got {request.content_type[:100]!r}",
            )
        if request.charset and request.charset.lower().replace("-", "") != "utf8":
            return _one(
                415,
                "unsupported media type",
                "Content-Type",
                f"charset must be utf-8, got {request.charset[:40]!r}",
            )
        most = self.settings.limits.max_body
        too_large = _one(413, "payload too large", "body", f"must be at most {most} bytes")
        if request.content_length is not None and request.content_length > most:
            too_large.force_close()  # the rest of the body is not read
            return too_large
        data = bytearray()
        try:
            async with asyncio.timeout(self.settings.limits.read_timeout):
                async for chunk in request.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > most:
                        too_large.force_close()
                        return too_large
        except TimeoutError:
            metrics.CONNECTIONS_CLOSED.labels(reason="body_timeout").inc()
            late = _one(
                408,
                "request timeout",
                "body",
                f"did not arrive within {self.settings.limits.read_timeout:g}s",
            )
            late.force_close()
            return late
        return bytes(data)

    async def alerts(self, request: web.Request) -> web.Response:
        denied, reach = self._authenticate(request)
        if denied is not None:
            metrics.REQUESTS.labels(code=str(denied.status)).inc()
            return denied
        response = await self._alerts(request, self.reach.within("the sender's token", reach))
        metrics.REQUESTS.labels(code=str(response.status)).inc()
        return response

    def _refused(self, alert: mapping.Alert, reach: Reach) -> str | None:
        """Why ALERT is outside REACH, or None. Alerts that name no valid namespace, or a
        protected one, are unmapped as before (filed in the operator's namespace, with no
        target): the reach bounds where incidents about workloads are opened."""
        namespace = alert.labels.get("namespace", "")
        if not namespace or not mapping.is_namespace(namespace):
            return None
        settings = self.settings
        if mapping.protected_reason(
            namespace, settings.operator_namespace, settings.protected_namespaces
        ):
            return None
        return reach.refuses(namespace)

    async def _alerts(self, request: web.Request, reach: Reach) -> web.Response:
        body = await self._body(request)
        if isinstance(body, web.Response):
            metrics.ALERTS.labels(result="rejected").inc()
            return body
        try:
            data = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as err:
            metrics.ALERTS.labels(result="rejected").inc()
            return _one(
                400, "bad request", "body", f"is not UTF-8: {err.reason} at byte {err.start}"
            )
        except (ValueError, RecursionError) as err:
            metrics.ALERTS.labels(result="rejected").inc()
            return _one(400, "bad request", "body", f"is not JSON: {str(err)[:200]}")
        del body
        raw = data.get("alerts") if isinstance(data, dict) else None
        most = self.settings.limits.max_alerts
        if isinstance(raw, list) and len(raw) > most:
            metrics.ALERTS.labels(result="rejected").inc(len(raw))
            return _one(
                413,
                "payload too large",
                "alerts",
                f"at most {most} alerts per request, got {len(raw)}: set max_alerts: {most} "
                "in Alertmanager's webhook_config",
            )
        try:
            payload = mapping.parse(data)
        except mapping.PayloadError as err:
            metrics.ALERTS.labels(result="rejected").inc(len(raw) if isinstance(raw, list) else 1)
            _count_invalid(err.invalid)
            log.info("alerts rejected: %s", str(err)[:1000])
            return _problem(422, "not an Alertmanager webhook payload", err.problems)
        del data, raw
        if payload.invalid:
            metrics.ALERTS.labels(result="rejected").inc(len(payload.invalid))
            _count_invalid(payload.invalid)
            log.info(
                "%d alert(s) of %d left out, the others taken: %s",
                len(payload.invalid),
                len(payload.invalid) + len(payload.alerts),
                "; ".join(f"{p.field}: {p.problem}" for p in payload.problems())[:1000],
            )
        if payload.truncated_alerts:
            log.warning(
                "Alertmanager left %d alerts out of group %s (its max_alerts): they are not here",
                payload.truncated_alerts,
                payload.group_key[:200],
            )
        refusals = [(a, why) for a in payload.alerts if (why := self._refused(a, reach))]
        if refusals:
            metrics.ALERTS.labels(result="refused").inc(len(refusals))
            log.info("%d alert(s) refused: %s", len(refusals), refusals[0][1])
            refused_ids = {id(a) for a, _ in refusals}
            payload = dataclasses.replace(
                payload, alerts=[a for a in payload.alerts if id(a) not in refused_ids]
            )
        refused = [
            mapping.Problem(f"alerts[{a.index}].labels.namespace", why) for a, why in refusals
        ]
        if refused and not payload.alerts:
            problems = [*refused, *(p for bad in payload.invalid for p in bad.problems)]
            answer = _problem(403, "forbidden", problems[: mapping.MAX_PROBLEMS])
            return answer
        return await self._take(payload, refused)

    async def _take(self, payload: mapping.Payload, refused: list[mapping.Problem]) -> web.Response:
        groups = mapping.group(
            payload, self.settings.operator_namespace, self.settings.protected_namespaces
        )
        outcomes = await asyncio.gather(
            *(self._deliver(g, payload) for g in groups), return_exceptions=True
        )
        expected = (store.Unavailable, store.Rejected, store.Forbidden, store.Limited)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, expected):
                raise outcome
        deliveries = [o for o in outcomes if isinstance(o, store.Delivery)]
        if deliveries:
            self._set_ready(True)  # the apiserver took writes
        if any(isinstance(o, store.Unavailable) for o in outcomes):
            # Alertmanager sends the whole payload again: what was taken folds in unchanged.
            return _one(
                503, "service unavailable", "apiserver", UNAVAILABLE, **{"Retry-After": "5"}
            )
        limited = [o for o in outcomes if isinstance(o, store.Limited)]
        if limited:
            wait = max(o.wait for o in limited)
            metrics.ALERTS.labels(result="limited").inc(
                sum(len(g.alerts) for g, o in zip(groups, outcomes, strict=True) if o in limited)
            )
            problem = (
                f"more new incidents than the webhook opens per minute "
                f"({self.settings.limits.incidents_per_minute}): send again later; the alerts "
                "of existing incidents were taken"
            )
            answer = {
                "error": "too many requests",
                "field": "alerts",
                "problem": problem,
                "problems": [{"field": "alerts", "problem": problem}],
                "incidents": [d.as_dict() for d in deliveries],
            }
            return web.json_response(
                answer, status=429, headers={"Retry-After": limits.retry_after(wait)}
            )
        failed = [o for o in outcomes if isinstance(o, store.Rejected | store.Forbidden)]
        if failed and not deliveries:
            problems = [mapping.Problem("alerts", str(o)) for o in failed][: mapping.MAX_PROBLEMS]
            if all(isinstance(o, store.Forbidden) for o in failed):
                return _problem(403, "forbidden", [*problems, *refused][: mapping.MAX_PROBLEMS])
            return _problem(422, "the apiserver refused the incident", problems)
        body: dict[str, Any] = {"incidents": [d.as_dict() for d in deliveries]}
        left_out, problems = len(payload.invalid) + len(refused), [*refused, *payload.problems()]
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, store.Rejected | store.Forbidden):
                left_out += len(group.alerts)
                prints = ", ".join(a.fingerprint for a in group.alerts[:5])
                refusal = "refused" if isinstance(outcome, store.Rejected) else "forbade"
                problems.append(
                    mapping.Problem("alerts", f"the apiserver {refusal} alerts {prints}: {outcome}")
                )
        if left_out:
            # Taken without them: a 4xx would lose the good alerts too (Alertmanager does
            # not send it again), so the answer is 200 and says what was left out.
            body["rejected"] = left_out
            body["problems"] = [p.as_dict() for p in problems[: mapping.MAX_PROBLEMS]]
        return web.json_response(body)

    async def _deliver(self, group: mapping.Group, payload: mapping.Payload) -> store.Delivery:
        # One writer per incident in this process; other replicas are kept apart by
        # resourceVersion conflicts (store retries them).
        lock_key = group.incident or (group.key.namespace, group.name)
        lock = self._locks.get(lock_key)
        if lock is None:
            lock = self._locks[lock_key] = asyncio.Lock()
        async with lock:
            try:
                delivery = await asyncio.wait_for(
                    asyncio.to_thread(
                        store.deliver,
                        group,
                        payload,
                        self.settings.operator_namespace,
                        self.admission,
                    ),
                    DELIVERY_TIMEOUT,
                )
            except TimeoutError:
                metrics.ALERTS.labels(result="unavailable").inc(len(group.alerts))
                log.warning(
                    "alerts for %s not written: the apiserver did not answer within %gs",
                    group.name,
                    DELIVERY_TIMEOUT,
                )
                raise store.Unavailable("the apiserver did not answer in time") from None
            except store.Unavailable as err:
                metrics.ALERTS.labels(result="unavailable").inc(len(group.alerts))
                log.warning("alerts for %s not written: %s", group.name, err)
                raise
            except store.Rejected as err:
                metrics.ALERTS.labels(result="rejected").inc(len(group.alerts))
                log.warning("alerts for %s refused by the apiserver: %s", group.name, err)
                raise
            except store.Forbidden as err:
                metrics.ALERTS.labels(result="forbidden").inc(len(group.alerts))
                log.warning("alerts for %s not written: %s", group.name, err)
                raise
            except store.Limited:
                raise  # counted by the caller, per request
        metrics.ALERTS.labels(result=delivery.result).inc(len(group.alerts))
        if delivery.unmapped:
            metrics.UNMAPPED.inc(len(group.alerts))
        log.info(
            "%d alert(s) -> AIIncident %s/%s (%s)%s",
            len(group.alerts),
            delivery.namespace,
            delivery.name,
            delivery.result,
            f"; unmapped: {delivery.unmapped[:300]}" if delivery.unmapped else "",
        )
        return delivery


def _count_invalid(invalid: list[mapping.InvalidAlert]) -> None:
    for bad in invalid:
        metrics.INVALID.labels(field=bad.field).inc()


def _ask_apiserver() -> None:
    kubernetes.client.VersionApi(kube.api_client()).get_code(_request_timeout=5)


@web.middleware
async def _json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every answer is JSON, including aiohttp's own 404 and 405, and a bug's 500."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if err.status < 400:
            raise
        where = "method" if err.status == 405 else "path"
        return _one(
            err.status,
            err.reason.lower(),
            where,
            f"{request.method[:20]} {request.path[:200]}: {err.reason}",
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("webhook: unexpected error on %s %s", request.method, request.path[:200])
        return _one(500, "internal error", "server", "unexpected error; see the operator's log")


def make_app(settings: WebhookSettings) -> tuple[web.Application, Intake]:
    intake = Intake(settings)
    # client_max_size bounds aiohttp's own reads (request.read/post); _body bounds ours.
    app = web.Application(middlewares=[_json_errors], client_max_size=settings.limits.max_body)
    app.router.add_post(ALERTS_PATH, intake.alerts)
    app.router.add_get("/healthz", intake.healthz)
    app.router.add_get("/readyz", intake.readyz)
    if settings.metrics_listen is None:
        app.router.add_get("/metrics", intake.metrics)
    return app, intake


def _metrics_app(intake: Intake) -> web.Application:
    app = web.Application(middlewares=[_json_errors], client_max_size=4096)
    app.router.add_get("/metrics", intake.metrics)
    return app


class Server:
    """The running server; `stop` is idempotent."""

    def __init__(
        self, runners: Sequence[web.AppRunner], intake: Intake, probe: asyncio.Task
    ) -> None:
        self.runners, self.intake, self.probe = list(runners), intake, probe
        self.port = 0
        self.metrics_port = 0

    @property
    def runner(self) -> web.AppRunner:
        return self.runners[0]

    async def stop(self, **_: Any) -> None:
        self.probe.cancel()
        for runner in self.runners:
            if runner.server is not None:
                log.info("webhook: stopping")
                await runner.cleanup()


async def _serve(
    app: web.Application, host: str, port: int, flag: str, bounds: Limits
) -> tuple[web.AppRunner, int]:
    runner = connections.Runner(
        app,
        read_timeout=bounds.read_timeout,
        max_connections=bounds.max_connections,
        access_log=None,
        shutdown_timeout=5.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=min(bounds.max_connections, 1024))
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise SettingsError(f"{flag} {host}:{port}: cannot listen: {err.strerror}") from None
    addresses = runner.addresses  # the real port when 0 was asked for
    return runner, addresses[0][1] if addresses else port


async def start(settings: WebhookSettings) -> Server:
    """Serve on the running loop; raises SettingsError when it cannot listen."""
    app, intake = make_app(settings)
    bounds = settings.limits
    runner, port = await _serve(app, settings.host, settings.port, "--webhook-listen", bounds)
    runners = [runner]
    metrics_port = port
    if settings.metrics_listen is not None:
        host, wanted = settings.metrics_listen
        try:
            extra, metrics_port = await _serve(
                _metrics_app(intake), host, wanted, "--metrics-listen", bounds
            )
        except SettingsError:
            await runner.cleanup()
            raise
        runners.append(extra)
    server = Server(runners, intake, asyncio.create_task(intake.probe_forever(), name="readyz"))
    server.port, server.metrics_port = port, metrics_port
    if intake.token.current() is None:
        log.warning(
            "webhook authentication is OFF (--insecure-no-auth): anyone who can reach "
            "%s:%d can open incidents",
            settings.host,
            server.port,
        )
    log.info(
        "webhook: POST http://%s:%d%s for Alertmanager; /healthz /readyz; /metrics on port %d%s; "
        "unmappable alerts go to namespace %s; %s",
        settings.host,
        server.port,
        ALERTS_PATH,
        metrics_port,
        " (token required)" if settings.metrics_require_token else "",
        settings.operator_namespace,
        "; ".join(f"{what}: {', '.join(p)}" for what, p in intake.reach.bounds)
        or "alerts may open incidents in any namespace",
    )
    return server
