"""`/v2/<name>/tags/list`."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from .common import json_response, next_link, page_query, registry, repository


async def list_tags(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    reg = registry(request)
    last, n = page_query(request)
    page, more = await reg.tags.page(name, last, n)
    if not page and not await reg.repositories.exists(name):
        raise errors.NameUnknown(detail={"name": name})
    headers = next_link(f"/v2/{name}/tags/list", n, page, more)
    return json_response({"name": name, "tags": page}, headers=headers)


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/{name:.+}/tags/list", list_tags)
