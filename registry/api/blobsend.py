"""Sending blob bytes: zero-copy `sendfile` from local files, single `Range` requests."""

from __future__ import annotations

import asyncio
import os
import re
from typing import BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from .. import errors
from ..storage.blobs import BlobContent

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_FALLBACK_CHUNK = 1024 * 1024


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`(start, end)` inclusive for a single satisfiable byte range, None for the whole
    content (no header, several ranges, or a malformed header, which RFC 9110 lets a
    server ignore). An unsatisfiable range raises 416."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise _unsatisfiable(size)
    return start, end


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 If-None-Match): `W/` prefixes ignored, lists and `*`."""
    if not header:
        return False
    candidates = [c.strip().removeprefix("W/") for c in header.split(",")]
    return "*" in candidates or etag in candidates


def _unsatisfiable(size: int) -> errors.RegistryError:
    return errors.BlobRangeNotSatisfiable(
        detail={"size": size}, headers={"Content-Range": f"bytes */{size}"}
    )


class BlobResponse(web.StreamResponse):
    """Streams a blob after the headers: sendfile for local files, else driver reads."""

    def __init__(self, content: BlobContent, offset: int, count: int, status: int,
                 headers: dict[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self.content_length = count
        self._content = content
        self._offset, self._count = offset, count
        self._sent_by_sendfile = 0  # bytes the stream writer never saw

    @property
    def body_length(self) -> int:
        """What the body carried (the access log's byte count), sendfile included."""
        return super().body_length + self._sent_by_sendfile

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Send headers and the whole body, once (aiohttp asks again when finishing)."""
        if self.prepared:
            return await super().prepare(request)
        fobj = self._content.file
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0 or writer is None:
                return writer
            if fobj is not None:
                await self._sendfile(request, writer, fobj)
            else:
                async for chunk in self._content.stream(self._offset, self._count):
                    await writer.write(chunk)
            await super().write_eof()
            return writer
        finally:
            await self._content.close()

    async def _sendfile(
        self, request: web.BaseRequest, writer: AbstractStreamWriter, fobj: BinaryIO
    ) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("connection lost")
        loop = asyncio.get_running_loop()
        try:
            await writer.drain()
            self._sent_by_sendfile = await loop.sendfile(
                transport, fobj, self._offset, self._count)
        except NotImplementedError:  # e.g. TLS transports
            remaining, position = self._count, self._offset
            while remaining > 0:
                chunk = await loop.run_in_executor(
                    None, _pread, fobj, position, min(_FALLBACK_CHUNK, remaining)
                )
                if not chunk:
                    raise ConnectionResetError("blob shorter than its size") from None
                await writer.write(chunk)
                position += len(chunk)
                remaining -= len(chunk)


def _pread(fobj: BinaryIO, position: int, size: int) -> bytes:
    return os.pread(fobj.fileno(), size, position)


async def send_blob(request: web.Request, content: BlobContent,
                    headers: dict[str, str]) -> web.StreamResponse:
    """The GET/HEAD answer for a blob: redirect, 200 or 206."""
    if content.redirect is not None:
        await content.close()
        raise web.HTTPTemporaryRedirect(content.redirect, headers=headers)
    size = content.size
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if_range = request.headers.get("If-Range")
    ranged = size and (if_range is None or if_range.strip() == headers.get("ETag"))
    try:
        selected = parse_range(request.headers.get("Range"), size) if ranged else None
    except errors.RegistryError:
        await content.close()
        raise
    if selected is None:
        return BlobResponse(content, 0, size, 200, headers)
    start, end = selected
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return BlobResponse(content, start, end - start + 1, 206, headers)
