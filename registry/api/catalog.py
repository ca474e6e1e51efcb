"""`/v2/_catalog` and the `/v2/` version check."""

from __future__ import annotations

from aiohttp import web

from ..auth.access import access
from .common import json_response, paginate, registry


async def version_check(request: web.Request) -> web.StreamResponse:
    return json_response({})


async def catalog(request: web.Request) -> web.StreamResponse:
    caller = access(request)
    names = [n for n in await registry(request).repositories.names() if caller.lists(n)]
    page, link = paginate(request, names, "/v2/_catalog")
    headers = {"Link": link} if link else {}
    return json_response({"repositories": page}, headers=headers)


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/", version_check)
    app.router.add_route("GET", "/v2", version_check)
    app.router.add_route("GET", "/v2/_catalog", catalog)
