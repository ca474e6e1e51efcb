"""The connection layer under the handlers: what happens before a request is routed.

Requests aiohttp's HTTP parser refuses (a bad or duplicate Content-Length, one beside
Transfer-Encoding, a bad chunk size, an oversize request line or header, a bad method)
never reach a handler or a middleware: aiohttp answers them itself, in plain text. Here
they get the spec's JSON error body instead, with aiohttp's status and the connection
closed, as before.

What cannot be answered this way: a request whose response had begun (the connection is
just closed), and bytes that are not HTTP at all (TLS to a plain port gets the JSON body,
which a TLS client cannot read).

Slow clients: request headers must arrive whole within `http.readheadertimeout` of the
connection opening or of their first byte, else the connection is closed (a few hundred
connections trickling headers would otherwise hold their file descriptors for ever). The
deadlines are checked every quarter of the timeout (a second at most), so a connection
is closed at most that much after its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .. import errors
from .middleware import error_response

log = logging.getLogger("registry.api")


def framing_error(status: int, exc: BaseException | None) -> errors.RegistryError:
    """The spec's error for a request refused before it was routed."""
    if status >= 500:
        error = errors.RegistryError("internal server error")
    elif isinstance(exc, LineTooLong):
        error = errors.Unsupported(
            f"malformed HTTP request: request line or header longer than {exc.args[1]} bytes")
    elif isinstance(exc, BadHttpMessage):
        error = errors.Unsupported(f"malformed HTTP request: {_reason(exc.message)}")
    else:
        error = errors.Unsupported("malformed HTTP request")
    error.status = status  # type: ignore[misc]  # aiohttp's status stands
    return error


def _reason(message: str) -> str:
    """The parser's own words, without the request bytes it quotes after them."""
    words = message.split("\n\n", 1)[0].splitlines()
    return ": ".join(w.strip().rstrip(":") for w in words if w.strip())


class _Handler(RequestHandler):
    def __init__(self, manager: _Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._head_timeout = head_timeout
        self._head_since: float | None = None  # waiting for a request's head since
        self._last_payload: Any = None  # of the newest request parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_since = self._server.loop_time()
        self._server.watch_heads()

    def data_received(self, data: bytes) -> None:
        if self._head_since is None and (self._last_payload is None
                                         or self._last_payload.is_eof()):
            self._head_since = self._server.loop_time()  # the next request's first bytes
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:  # its headers are in
            self._last_payload = self._messages[-1][1] if self._messages else None
            self._head_since = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_since = None
        super().connection_lost(exc)

    def check_head(self, now: float) -> None:
        """Close the connection if a request's head has taken too long."""
        if self._head_since is None or now - self._head_since < self._head_timeout:
            return
        self._head_since = None
        if self.transport is not None:
            log.debug("closed a connection whose request headers took over %.0fs",
                      self._head_timeout)
            self.force_close()
            self.transport.close()

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # as aiohttp: too late for another response
            raise ConnectionError("the response had begun, cannot send an error instead")
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:  # one line (the access log has the request): no traceback per bad request
            log.debug("refused a malformed request from %s: %s", request.remote, exc)
        response = error_response(framing_error(status, exc))
        response.force_close()
        return response


class _Server(web.Server):
    """Makes `_Handler` connections and checks their heads' deadlines: one timer for all
    connections, every quarter of the timeout (a second at most), rather than a timer
    set and cancelled per request."""

    head_timeout: float
    _sweep: asyncio.TimerHandle | None = None

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs)

    def loop_time(self) -> float:
        return self._loop.time()

    def watch_heads(self) -> None:
        if self._sweep is None:
            interval = min(self.head_timeout / 4, 1.0)
            self._sweep = self._loop.call_later(interval, self._check_heads)

    def _check_heads(self) -> None:
        self._sweep = None
        now = self._loop.time()
        for handler in list(self._connections):
            if isinstance(handler, _Handler):
                handler.check_head(now)
        if self._connections:
            self.watch_heads()


class SpecRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer parser refusals with the spec's body and
    close connections whose request headers are too slow."""

    def __init__(self, app: web.Application, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._head_timeout = head_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making `_Handler` connections
        assert isinstance(server, _Server)
        server.head_timeout = self._head_timeout
        return server
