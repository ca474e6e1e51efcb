"""`/metrics` in Prometheus's text format: on the debug listener
(`http.debug.prometheus`), and on the main one when `mainlistener` says so — answered
ahead of access control, as the probes are."""

from __future__ import annotations

import os

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from .. import metrics


def _collected() -> CollectorRegistry:
    """This process's metrics, or with several workers every worker's (added up)."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return metrics.REGISTRY
    everyone = CollectorRegistry()
    multiprocess.MultiProcessCollector(everyone)  # type: ignore[no-untyped-call]
    return everyone


async def export(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(_collected()))
    response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4  # what every Prometheus reads
    return response


def serving(path: str) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == path and request.method in ("GET", "HEAD"):
            return await export(request)
        return await handler(request)

    return middleware
