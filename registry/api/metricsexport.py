"""`/metrics` in Prometheus's text format: on the debug listener
(`http.debug.prometheus`), and on the main one when `mainlistener` says so — answered
ahead of access control, as the probes are."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .. import metrics


async def export(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(metrics.REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus reads
    return response


def serving(path: str) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == path and request.method in ("GET", "HEAD"):
            return await export(request)
        return await handler(request)

    return middleware
