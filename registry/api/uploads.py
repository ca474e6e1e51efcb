"""`/v2/<name>/blobs/uploads/`: start, continue, finish, inspect and cancel uploads."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from aiohttp import web

from client.oci.reference import is_valid_name

from .. import errors
from ..auth.access import access
from ..storage.uploads import ChunkOutOfOrder, UploadState
from . import notify
from .common import body_stream, config, digest_param, has_body, registry, repository

_CONTENT_RANGE = re.compile(r"^(?:bytes )?(\d+)-(\d+)(?:/(?:\d+|\*))?$")


def _position(state: UploadState) -> dict[str, str]:
    """Where a session stands: its URL, and `Range` inclusive (`0-0` when empty, as
    distribution answers)."""
    return {
        "Location": f"/v2/{state.name}/blobs/uploads/{state.id}",
        "Range": f"0-{max(state.offset - 1, 0)}",
        "Docker-Upload-UUID": state.id,
    }


def _session_headers(request: web.Request, state: UploadState) -> dict[str, str]:
    return {**_position(state),
            "OCI-Chunk-Min-Length": str(config(request).chunk_min_length)}


@contextlib.contextmanager
def _out_of_order_says_where() -> Iterator[None]:
    """A chunk that does not continue the session: 416 with where it stands."""
    try:
        yield
    except ChunkOutOfOrder as exc:
        exc.headers.update(_position(exc.state))
        raise


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(status=201, headers={
        "Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest,
    })


def _chunk_range(request: web.Request) -> tuple[int | None, int | None]:
    """(start, length) a Content-Range claims; the length must agree with Content-Length
    (and, checked as it streams, with the body itself)."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, None
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise errors.BlobUploadInvalid(
            "Content-Range must be <start>-<end>", detail={"Content-Range": header}
        )
    start, end = int(match[1]), int(match[2])
    if end < start:
        raise errors.RangeInvalid(detail={"Content-Range": header})
    length = request.content_length
    if length is not None and length != end - start + 1:
        raise errors.BlobUploadInvalid(
            "Content-Range and Content-Length disagree",
            detail={"Content-Range": header, "Content-Length": length},
        )
    return start, end - start + 1


async def start_upload(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    reg = registry(request)
    query = request.query
    mount = query.get("mount")
    if mount is not None:
        digest = digest_param(mount, "mount")
        source = query.get("from")
        # A mount the registry cannot (or, for this caller, may not) do falls back to an
        # upload session (202), as the spec asks.
        if (source is None or is_valid_name(source)) and access(request).may_mount_from(
                source) and (size := await reg.blobs.mount(name, digest, source)) is not None:
            notify.blob(request, "mount", name, digest, size, source)
            return _blob_created(name, str(digest))
        # Not mountable: fall back to an ordinary session, as the spec requires.
    elif "digest" in query:
        digest = digest_param(query["digest"])
        size = await reg.uploads.upload(name, digest, body_stream(request))
        notify.blob(request, "push", name, digest, size)
        return _blob_created(name, str(digest))
    state = await reg.uploads.start(name)
    return web.Response(status=202, headers=_session_headers(request, state))


async def upload_status(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    state = await registry(request).uploads.status(name, request.match_info["uuid"])
    return web.Response(status=204, headers=_session_headers(request, state))


async def patch_upload(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    start, length = _chunk_range(request)
    with _out_of_order_says_where():
        state = await registry(request).uploads.append(
            name, request.match_info["uuid"], body_stream(request), start, length
        )
    return web.Response(status=202, headers=_session_headers(request, state))


async def finish_upload(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    digest = digest_param(request.query.get("digest"))
    start, length = _chunk_range(request)
    body = body_stream(request) if has_body(request) or length else None
    with _out_of_order_says_where():
        size = await registry(request).uploads.commit(
            name, request.match_info["uuid"], digest, body, start, length
        )
    notify.blob(request, "push", name, digest, size)
    return _blob_created(name, str(digest))


async def cancel_upload(request: web.Request) -> web.StreamResponse:
    name = repository(request)
    await registry(request).uploads.cancel(name, request.match_info["uuid"])
    return web.Response(status=204)


def routes(app: web.Application) -> None:
    add = app.router.add_route
    add("POST", "/v2/{name:.+}/blobs/uploads/", start_upload)
    add("POST", "/v2/{name:.+}/blobs/uploads", start_upload)
    path = "/v2/{name:.+}/blobs/uploads/{uuid:[^/]+}"
    add("GET", path, upload_status)
    add("PATCH", path, patch_upload)
    add("PUT", path, finish_upload)
    add("DELETE", path, cancel_upload)
