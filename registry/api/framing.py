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
connections trickling headers would otherwise hold their file descriptors for ever).
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
    def __init__(self, manager: web.Server, *, head_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._last_payload: Any = None  # of the newest request parsed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and (self._last_payload is None
                                         or self._last_payload.is_eof()):
            self._start_head_timer()  # the first bytes of the next request's head
        parsed = self._request_count
        super().data_received(data)
        if self._request_count > parsed:  # its headers are in
            self._last_payload = self._messages[-1][1] if self._messages else None
            self._stop_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = asyncio.get_running_loop().call_later(
            self._head_timeout, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
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
    head_timeout: float

    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, head_timeout=self.head_timeout, **self._kwargs)


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
