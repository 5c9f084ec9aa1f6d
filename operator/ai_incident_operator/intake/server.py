"""The operator's HTTP server: Alertmanager's webhook, probes and metrics (aiohttp).

`cli._run` builds `WebhookSettings` from its flags (`settings_from`), then `start`s
the server on kopf's event loop before `kopf.operator` and `stop`s it on shutdown.
Routes: `POST /api/v1/alerts` (bearer token), `GET /healthz`, `GET /readyz` (ready
once the apiserver answered) and `GET /metrics` (prometheus_client).

Bad input gets a 4xx with a JSON body naming the field and the problem, never a
5xx; 503 only when the apiserver cannot take the alerts, so that Alertmanager
retries and nothing is lost. A payload with some bad alerts is taken without them:
200, the bad ones named under `problems` (and counted in `aiincident_alerts_invalid`),
since Alertmanager never sends a 4xx again and the good alerts would be lost.
Kubernetes calls are synchronous: they run in threads (`asyncio.to_thread`), never
on the loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import prometheus_client
from aiohttp import web

from .. import kube, metrics
from ..policy import BUILTIN_PROTECTED_NAMESPACES
from ..resources import SA_NAMESPACE_FILE
from . import mapping, store

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


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets; an empty host means every interface)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise SettingsError(f"--webhook-listen {text!r} is not HOST:PORT, e.g. 0.0.0.0:8080")
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


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as err:
        raise SettingsError(f"--webhook-token-file {path}: {err.strerror}") from None
    if not token:
        raise SettingsError(f"--webhook-token-file {path} is empty")
    return token


class _Token:
    """The expected token; a file is read again when it changes (a rotated Secret)."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.path = settings.token_file
        self.value = settings.token or (_read_token(self.path) if self.path else None)
        self.mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def current(self) -> str | None:
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


class Intake:
    """The app's state: the token, readiness, and one lock per incident being written."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.token = _Token(settings)
        self.ready = False
        self.not_ready_because = "the apiserver has not answered yet"
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # --- probes -------------------------------------------------------------------------

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, _: web.Request) -> web.Response:
        if self.ready:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": self.not_ready_because}, status=503)

    async def metrics(self, _: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
        response = web.Response(body=body)
        response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
        return response

    def _set_ready(self, ready: bool, because: str = "") -> None:
        if ready != self.ready:
            log.info("webhook %s", "ready" if ready else f"not ready: {because}")
        self.ready, self.not_ready_because = ready, because

    async def probe_forever(self) -> None:
        """Readiness: whether the apiserver answers (checked now and then, and by each write)."""
        while True:
            try:
                await asyncio.wait_for(asyncio.to_thread(_ask_apiserver), PROBE_INTERVAL * 2)
                self._set_ready(True)
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._set_ready(False, f"the apiserver does not answer: {err}")
            await asyncio.sleep(PROBE_INTERVAL if self.ready else 1.0)

    # --- POST /api/v1/alerts ------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> web.Response | None:
        expected = self.token.current()
        if expected is None:  # --insecure-no-auth
            return None
        header = request.headers.get("Authorization")
        if not header:
            return _one(
                401,
                "unauthorized",
                "Authorization",
                "missing: send Authorization: Bearer <token>",
                **{"WWW-Authenticate": "Bearer"},
            )
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _one(
                401,
                "unauthorized",
                "Authorization",
                "must be 'Bearer <token>'",
                **{"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(
            given.strip().encode("utf-8", "surrogateescape"), expected.encode()
        ):
            return _one(
                403, "forbidden", "Authorization", "the bearer token is not the webhook's token"
            )
        return None

    async def _body(self, request: web.Request) -> bytes | web.Response:
        if request.content_type != "application/json" and not request.content_type.endswith(
            "+json"
        ):
            return _one(
                415,
                "unsupported media type",
                "Content-Type",
                f"must be application/json, got {request.content_type!r}",
            )
        if request.charset and request.charset.lower().replace("-", "") != "utf8":
            return _one(
                415,
                "unsupported media type",
                "Content-Type",
                f"charset must be utf-8, got {request.charset!r}",
            )
        too_large = _one(
            413, "payload too large", "body", f"must be at most {mapping.MAX_BODY} bytes (1 MiB)"
        )
        if request.content_length is not None and request.content_length > mapping.MAX_BODY:
            return too_large
        data = bytearray()
        async for chunk in request.content.iter_chunked(64 * 1024):
            data += chunk
            if len(data) > mapping.MAX_BODY:
                return too_large
        return bytes(data)

    async def alerts(self, request: web.Request) -> web.Response:
        denied = self._authenticate(request)
        if denied is not None:
            metrics.REQUESTS.labels(code=str(denied.status)).inc()
            return denied
        response = await self._alerts(request)
        metrics.REQUESTS.labels(code=str(response.status)).inc()
        return response

    async def _alerts(self, request: web.Request) -> web.Response:
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
        try:
            payload = mapping.parse(data)
        except mapping.PayloadError as err:
            raw = data.get("alerts") if isinstance(data, dict) else None
            metrics.ALERTS.labels(result="rejected").inc(len(raw) if isinstance(raw, list) else 1)
            _count_invalid(err.invalid)
            log.info("alerts rejected: %s", err)
            return _problem(422, "not an Alertmanager webhook payload", err.problems)
        if payload.invalid:
            metrics.ALERTS.labels(result="rejected").inc(len(payload.invalid))
            _count_invalid(payload.invalid)
            log.info(
                "%d alert(s) of %d left out, the others taken: %s",
                len(payload.invalid),
                len(payload.invalid) + len(payload.alerts),
                "; ".join(f"{p.field}: {p.problem}" for p in payload.problems()),
            )
        if payload.truncated_alerts:
            log.warning(
                "Alertmanager left %d alerts out of group %s (its max_alerts): they are not here",
                payload.truncated_alerts,
                payload.group_key,
            )
        groups = mapping.group(
            payload, self.settings.operator_namespace, self.settings.protected_namespaces
        )
        outcomes = await asyncio.gather(
            *(self._deliver(g, payload) for g in groups), return_exceptions=True
        )
        unavailable = [o for o in outcomes if isinstance(o, store.Unavailable)]
        rejected = [o for o in outcomes if isinstance(o, store.Rejected)]
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, store.Unavailable | store.Rejected
            ):
                raise outcome
        if unavailable:
            self._set_ready(False, str(unavailable[0]))
            return _one(
                503, "service unavailable", "apiserver", str(unavailable[0]), **{"Retry-After": "5"}
            )
        deliveries = [o for o in outcomes if isinstance(o, store.Delivery)]
        if rejected and not deliveries:
            return _one(422, "the apiserver refused the incident", "alerts", str(rejected[0]))
        self._set_ready(True)
        body: dict[str, Any] = {"incidents": [d.as_dict() for d in deliveries]}
        left_out, problems = len(payload.invalid), payload.problems()
        for group, outcome in zip(groups, outcomes, strict=True):
            if isinstance(outcome, store.Rejected):
                left_out += len(group.alerts)
                prints = ", ".join(a.fingerprint for a in group.alerts[:5])
                problems.append(
                    mapping.Problem("alerts", f"the apiserver refused alerts {prints}: {outcome}")
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
                        store.deliver, group, payload, self.settings.operator_namespace
                    ),
                    DELIVERY_TIMEOUT,
                )
            except TimeoutError:
                metrics.ALERTS.labels(result="unavailable").inc(len(group.alerts))
                raise store.Unavailable(
                    f"the apiserver did not answer within {DELIVERY_TIMEOUT:g}s"
                ) from None
            except store.Unavailable as err:
                metrics.ALERTS.labels(result="unavailable").inc(len(group.alerts))
                log.warning("alerts for %s not written: %s", group.name, err)
                raise
            except store.Rejected as err:
                metrics.ALERTS.labels(result="rejected").inc(len(group.alerts))
                log.warning("alerts for %s refused by the apiserver: %s", group.name, err)
                raise
        metrics.ALERTS.labels(result=delivery.result).inc(len(group.alerts))
        if delivery.unmapped:
            metrics.UNMAPPED.inc(len(group.alerts))
        log.info(
            "%d alert(s) -> AIIncident %s/%s (%s)%s",
            len(group.alerts),
            delivery.namespace,
            delivery.name,
            delivery.result,
            f"; unmapped: {delivery.unmapped}" if delivery.unmapped else "",
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
            err.status, err.reason.lower(), where, f"{request.method} {request.path}: {err.reason}"
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("webhook: unexpected error on %s %s", request.method, request.path)
        return _one(500, "internal error", "server", "unexpected error; see the operator's log")


def make_app(settings: WebhookSettings) -> tuple[web.Application, Intake]:
    intake = Intake(settings)
    app = web.Application(middlewares=[_json_errors])
    app.router.add_post(ALERTS_PATH, intake.alerts)
    app.router.add_get("/healthz", intake.healthz)
    app.router.add_get("/readyz", intake.readyz)
    app.router.add_get("/metrics", intake.metrics)
    return app, intake


class Server:
    """The running server; `stop` is idempotent."""

    def __init__(self, runner: web.AppRunner, intake: Intake, probe: asyncio.Task) -> None:
        self.runner, self.intake, self.probe = runner, intake, probe
        self.port = 0

    async def stop(self, **_: Any) -> None:
        self.probe.cancel()
        if self.runner.server is not None:
            log.info("webhook: stopping")
            await self.runner.cleanup()


async def start(settings: WebhookSettings) -> Server:
    """Serve on the running loop; raises SettingsError when it cannot listen."""
    app, intake = make_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as err:
        await runner.cleanup()
        raise SettingsError(
            f"--webhook-listen {settings.host}:{settings.port}: cannot listen: {err.strerror}"
        ) from None
    server = Server(runner, intake, asyncio.create_task(intake.probe_forever(), name="readyz"))
    addresses = runner.addresses  # the real port when 0 was asked for
    server.port = addresses[0][1] if addresses else settings.port
    if intake.token.current() is None:
        log.warning(
            "webhook authentication is OFF (--insecure-no-auth): anyone who can reach "
            "%s:%d can open incidents",
            settings.host,
            server.port,
        )
    log.info(
        "webhook: POST http://%s:%d%s for Alertmanager; /healthz /readyz /metrics; "
        "unmappable alerts go to namespace %s",
        settings.host,
        server.port,
        ALERTS_PATH,
        settings.operator_namespace,
    )
    return server
