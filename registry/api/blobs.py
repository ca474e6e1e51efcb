"""`/v2/<name>/blobs/<digest>`: fetch, check and delete blobs."""

from __future__ import annotations

from aiohttp import web

from .. import errors
from . import notify
from .blobsend import etag_matches, send_blob
from .common import config, digest_param, raise_not_found, registry, repository


def _headers(digest: str) -> dict[str, str]:
    return {"Docker-Content-Digest": digest, "ETag": f'"{digest}"'}


async def get_blob(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    reg = registry(request)
    headers = _headers(str(digest))
    try:
        if request.method == "HEAD":
            size = await reg.blobs.stat(name, digest)
            return web.Response(headers={
                **headers, "Content-Length": str(size), "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            })
        if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
            await reg.blobs.stat(name, digest)
            return web.Response(status=304, headers=headers)
        redirect = not config(request).storage.redirect.disable
        content = await reg.blobs.open(name, digest, redirect=redirect)
    except errors.BlobUnknown as exc:
        await raise_not_found(request, name, exc)
    notify.blob(request, "pull", name, digest, content.size)
    return await send_blob(request, content, headers)


async def delete_blob(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    digest = digest_param(request.match_info["digest"])
    if not config(request).storage.delete.enabled:
        raise errors.Unsupported("deletion is disabled (storage.delete.enabled)")
    try:
        await registry(request).blobs.unlink(name, digest)
    except errors.BlobUnknown as exc:
        await raise_not_found(request, name, exc)
    notify.deleted(request, name, digest, None)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})


def routes(app: web.Application) -> None:
    app.router.add_route("GET", "/v2/{name:.+}/blobs/{digest:[^/]+}", get_blob, name="blob")
    app.router.add_route("HEAD", "/v2/{name:.+}/blobs/{digest:[^/]+}", get_blob)
    app.router.add_route("DELETE", "/v2/{name:.+}/blobs/{digest:[^/]+}", delete_blob)
