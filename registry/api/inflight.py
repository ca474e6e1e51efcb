"""Requests in flight: the `registry_http_in_flight_requests` gauge and the count that
shutdown drains. One middleware, the outermost of the API's, does both.

aiohttp's own graceful shutdown stops reading from open connections, which stalls an
upload that is still sending its body; Berth stops listening first, lets in-flight
requests finish (answering them with `Connection: close`), then closes (app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from functools import lru_cache

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.metrics import Gauge

from .. import metrics
from .requestmetrics import handler_name


@lru_cache(maxsize=64)  # (route names: a bounded set)
def _gauge(handler: str) -> Gauge:
    return metrics.HTTP_IN_FLIGHT.labels(handler)


class InFlight:
    """Counts the requests being handled, so that shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        gauge = _gauge(handler_name(request))
        gauge.inc()
        self.count += 1
        self._idle.clear()
        try:
            response = await handler(request)
            if self.draining:
                response.force_close()
            # Sent here, inside the count: a blob's body (sendfile) goes out in `prepare`,
            # and shutdown must wait for it. A client gone meanwhile is aiohttp's to
            # notice again as it finishes the response (and to log).
            with contextlib.suppress(ConnectionError):
                await response.prepare(request)
            return response
        finally:
            gauge.dec()
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def drain(self, quiet: float = 0.5) -> None:
        """Return once no request has been running for `quiet` seconds: a request whose
        bytes arrived just before the signal gets to start, and finish."""
        self.draining = True
        while True:
            await self._idle.wait()
            await asyncio.sleep(quiet)
            if self.count == 0:
                return
