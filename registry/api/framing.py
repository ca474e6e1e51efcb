"""Requests aiohttp's HTTP parser refuses (a bad or duplicate Content-Length, one beside
Transfer-Encoding, a bad chunk size, an oversize request line or header, a bad method)
never reach a handler or a middleware: aiohttp answers them itself, in plain text. Here
they get the spec's JSON error body instead, with aiohttp's status and the connection
closed, as before.

What cannot be answered this way: a request whose response had begun (the connection is
just closed), and bytes that are not HTTP at all (TLS to a plain port gets the JSON body,
which a TLS client cannot read).
"""

from __future__ import annotations

import logging

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
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class SpecRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer parser refusals with the spec's body."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the same server, making `_Handler` connections
        return server
