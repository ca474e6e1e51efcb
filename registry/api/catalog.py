"""`/v2/_catalog` and the `/v2/` version check."""

from __future__ import annotations

from aiohttp import web

from ..auth.access import access
from .common import json_response, next_link, page_query, registry


async def version_check(request: web.Request) -> web.StreamResponse:
    return json_response({})


async def catalog(request: web.Request) -> web.StreamResponse:
    last, n = page_query(request)
    page, more = await registry(request).repositories.page(access(request).lists, last, n)
    return json_response({"repositories": page}, headers=next_link("/v2/_catalog", n, page, more))


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/", version_check)
    app.router.add_route("GET", "/v2", version_check)
    app.router.add_route("GET", "/v2/_catalog", catalog)
