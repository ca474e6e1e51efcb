"""`/v2/<name>/tags/list`."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from .common import json_response, paginate, registry, repository


async def list_tags(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    reg = registry(request)
    tags = await reg.tags.names(name)
    if not tags and not await reg.repositories.exists(name):
        raise errors.NameUnknown(detail={"name": name})
    page, link = paginate(request, tags, f"/v2/{name}/tags/list")
    headers = {"Link": link} if link else {}
    return json_response({"name": name, "tags": page}, headers=headers)


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/{name:.+}/tags/list", list_tags)
