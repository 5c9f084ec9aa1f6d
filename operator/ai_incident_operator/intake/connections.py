"""Connections the webhook server accepts: a deadline for the headers, a cap, JSON errors.

aiohttp has no header-read timeout and answers a malformed request itself (text, with
the parser's message, which can quote a header such as Authorization). `Runner` is an
`AppRunner` whose connections are `_Connection`s:

- a connection must deliver a request's headers within `read_timeout` seconds of
  connecting, or of the first byte of a following request (a JSON 408, then closed);
  the body's deadline is the handler's (`server.Intake._body`); idle keep-alive
  connections close after `KEEPALIVE` seconds (aiohttp's own timer);
- beyond `max_connections` open connections a new one gets a JSON 503 and is closed
  at once, before anything is read;
- aiohttp's own 4xx answers (bad request line, bad or too long headers) are JSON,
  name the problem by status only, and are logged without the parser's message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from aiohttp import web, web_protocol, web_server

from .. import metrics

log = logging.getLogger(__name__)
KEEPALIVE = 30.0  # seconds an idle keep-alive connection stays open
# Seconds aiohttp keeps reading (and dropping) a body the answer did not need, before it
# closes: its default, 10, would hold a slow client's connection past the body deadline.
LINGER = 2.0


def raw_answer(status: int, body: dict[str, Any], **headers: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for when aiohttp is not answering."""
    data = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def _error(field: str, problem: str) -> dict[str, Any]:
    return {"field": field, "problem": problem, "problems": [{"field": field, "problem": problem}]}


BUSY = raw_answer(
    503,
    {"error": "service unavailable", **_error("connection", "too many open connections")},
    **{"Retry-After": "5"},
)
LATE = raw_answer(
    408,
    {
        "error": "request timeout",
        **_error("headers", "the request's headers did not arrive in time"),
    },
)
# What a malformed request is told, by status: never the parser's words (they quote input).
_LOW_LEVEL = {
    400: "the request is not well-formed HTTP/1.1 (request line or headers)",
    413: "the request line or a header is too long",
    431: "the request's headers are too large",
}


class _Connection(web_protocol.RequestHandler):
    """One client connection, with a header deadline, a place under the cap and JSON errors."""

    def __init__(
        self, manager: web_server.Server, *, read_timeout: float, max_connections: int, **kw: Any
    ) -> None:
        super().__init__(manager, **kw)
        self._read_timeout, self._max_connections = read_timeout, max_connections
        self._watchdog: asyncio.TimerHandle | None = None
        self._finished = 0  # requests answered; fewer than _request_count: one is in hand
        self._refused: asyncio.BaseTransport | None = None  # beyond the cap: closing

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert self._manager is not None
        if len(self._manager._connections) >= self._max_connections:
            metrics.CONNECTIONS_CLOSED.labels(reason="too_many").inc()
            self._manager = None  # never registered: connection_lost has nothing to undo
            self._refused = transport
            transport.write(BUSY)  # type: ignore[attr-defined]
            # Half-close and drop what the client still sends, then close: closing with its
            # request unread would reset the connection before it reads the 503.
            transport.write_eof()  # type: ignore[attr-defined]
            self._loop.call_later(LINGER, transport.close)
            return
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(self._read_timeout, self._late)

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def _late(self) -> None:
        self._watchdog = None
        if self._request_count > self._finished or self.transport is None:
            return  # a request is being handled: the handler's body deadline applies
        metrics.CONNECTIONS_CLOSED.labels(reason="header_timeout").inc()
        self.transport.write(LATE)  # type: ignore[attr-defined]
        self.force_close()  # closes the transport once LATE is written

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # beyond the cap: dropped
        before = self._request_count
        super().data_received(data)
        if self._request_count > before:
            self._disarm()  # the headers are in
        elif data and self._request_count == self._finished:
            self._arm()  # the first bytes of the next request

    def eof_received(self) -> None:
        if self._refused is not None:
            self._refused.close()
            return
        super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    async def _handle_request(self, request: Any, start_time: Any, request_handler: Any) -> Any:
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            self._finished += 1

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The exception's text can hold request bytes (a header with the token): not logged.
        log.info(
            "webhook: %d for a malformed request from %s (%s)",
            status,
            request.remote,
            type(exc).__name__ if exc else "no detail",
        )
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was sent already")
        if status >= 500:
            field, problem = "server", "unexpected error; see the operator's log"
        else:
            field, problem = "request", _LOW_LEVEL.get(status, "the request is not acceptable")
        phrase = (
            HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else ""
        )
        response = web.json_response(
            {"error": phrase or "error", **_error(field, problem)}, status=status
        )
        response.force_close()
        return response


class _Server(web_server.Server):
    def __init__(self, *args: Any, read_timeout: float, max_connections: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._guard = {"read_timeout": read_timeout, "max_connections": max_connections}

    def __call__(self) -> web_protocol.RequestHandler:
        return _Connection(self, loop=self._loop, **self._guard, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner whose connections have a header deadline and a cap (see the module)."""

    def __init__(
        self, app: web.Application, *, read_timeout: float, max_connections: int, **kw: Any
    ) -> None:
        super().__init__(app, keepalive_timeout=KEEPALIVE, lingering_time=LINGER, **kw)
        self._guard = {"read_timeout": read_timeout, "max_connections": max_connections}

    async def _make_server(self) -> web_server.Server:
        plain = await super()._make_server()
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **self._guard,
            **plain._kwargs,
        )
