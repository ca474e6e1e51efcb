"""`/v2/<name>/manifests/<reference>`: fetch, check, push and delete manifests."""

from __future__ import annotations

from aiohttp import web

from client.oci.digest import Digest

from .. import errors
from ..storage.examine import ManifestInfo
from ..storage.manifests import tag_or_digest
from . import notify
from .blobsend import etag_matches
from .common import body_stream, config, raise_not_found, registry, repository


def _headers(info: ManifestInfo) -> dict[str, str]:
    digest = str(info.digest)
    return {
        "Docker-Content-Digest": digest,
        "ETag": f'"{digest}"',
        "Content-Type": info.media_type,
    }


async def get_manifest(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    reference = request.match_info["reference"]
    manifests = registry(request).manifests
    try:
        if request.method == "HEAD":
            info = await manifests.info(name, reference)
            return web.Response(
                headers={**_headers(info), "Content-Length": str(info.size)}
            )
        info, data = await manifests.get(name, reference)
    except (errors.ManifestUnknown, errors.BlobUnknown) as exc:
        await raise_not_found(request, name, exc)
    registry(request).pulls.note(name, info.digest)  # (in memory; with pull rules only)
    headers = _headers(info)
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    notify.manifest(request, "pull", name, info, [] if ":" in reference else [reference])
    return web.Response(body=data, headers=headers)


async def put_manifest(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    reference = request.match_info["reference"]
    extra_tags = request.query.getall("tag", [])
    info = await registry(request).manifests.put(
        name, reference, body_stream(request), request.headers.get("Content-Type"),
        declared_length=request.content_length, extra_tags=extra_tags,
    )
    notify.manifest(request, "push", name, info,
                    [*([] if ":" in reference else [reference]), *extra_tags])
    headers = {
        "Location": f"/v2/{name}/manifests/{info.digest}",
        "Docker-Content-Digest": str(info.digest),
    }
    if info.subject is not None:
        headers["OCI-Subject"] = str(info.subject)
    if ":" in reference and extra_tags:
        # Each tag pushed with ?tag=, as one list-valued header (RFC 9110 5.3: the same as
        # one header per tag, without running into clients' header-count limits).
        headers["OCI-Tag"] = ", ".join(dict.fromkeys(extra_tags))
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    if not config(request).storage.delete.enabled:
        raise errors.Unsupported("deletion is disabled (storage.delete.enabled)")
    reference = request.match_info["reference"]
    try:
        await registry(request).manifests.delete(name, reference)
    except errors.ManifestUnknown as exc:
        await raise_not_found(request, name, exc)
    found = tag_or_digest(reference)
    if isinstance(found, Digest):
        notify.deleted(request, name, found, None)
    else:
        notify.deleted(request, name, None, found)
    return web.Response(status=202)


def routes(app: web.Application) -> None:
    path = "/v2/{name:.+}/manifests/{reference:[^/]+}"
    app.router.add_route("GET", path, get_manifest)
    app.router.add_route("HEAD", path, get_manifest)
    app.router.add_route("PUT", path, put_manifest)
    app.router.add_route("DELETE", path, delete_manifest)
