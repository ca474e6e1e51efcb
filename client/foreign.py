"""Fetching foreign / non-distributable layers: from the source registry, then their urls.

Registry credentials are never sent to a `urls` host (a separate, anonymous HTTP session
does those requests); redirects are followed (Microsoft's links redirect).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp

from .errors import BerthError, NetworkError, NotFoundError
from .image import ImageSource
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor

log = logging.getLogger(__name__)

_CONVERTED = {
    mt.DOCKER_FOREIGN_LAYER: mt.DOCKER_LAYER,
    mt.OCI_NONDISTRIBUTABLE_TAR: mt.OCI_LAYER_TAR,
    mt.OCI_NONDISTRIBUTABLE_GZIP: mt.OCI_LAYER_GZIP,
    mt.OCI_NONDISTRIBUTABLE_ZSTD: mt.OCI_LAYER_ZSTD,
}


def distributable_type(media_type: str) -> str:
    """The ordinary layer media type for a foreign one (same bytes, so same digest)."""
    if media_type in _CONVERTED:
        return _CONVERTED[media_type]
    suffix = media_type.rpartition(".")[2]
    return mt.OCI_LAYER_ZSTD if "zstd" in suffix else mt.OCI_LAYER_GZIP


async def _from_url(url: str, offset: int) -> AsyncIterator[bytes]:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
    async with (
        aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http,
        http.get(url, headers=headers, allow_redirects=True) as response,
    ):
        if response.status not in (200, 206):
            raise NotFoundError(f"{url}: HTTP {response.status}")
        skip = offset if offset and response.status == 200 else 0
        async for chunk in response.content.iter_chunked(1024 * 1024):
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
                if not chunk:
                    continue
            yield chunk


async def foreign_blob(
    source: ImageSource, desc: Descriptor, offset: int = 0
) -> AsyncIterator[bytes]:
    """The bytes of a foreign layer: the source first, then each of its urls in order.

    The caller verifies digest and size (as for any blob); a source that fails before
    yielding anything makes way for the next one."""
    failures: list[str] = []
    candidates: list[tuple[str, AsyncIterator[bytes]]] = [("source", source.blob(desc, offset))]
    candidates += [(url, _from_url(url, offset)) for url in desc.urls]
    for where, stream in candidates:
        started = False
        try:
            async for chunk in stream:
                started = True
                yield chunk
            return
        except (BerthError, aiohttp.ClientError, OSError) as exc:
            if started:
                raise
            failures.append(f"{where}: {exc}")
            log.info("foreign layer %s not available from %s: %s", desc.digest, where, exc)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
    raise NetworkError(
        f"foreign layer {desc.digest} could not be fetched: " + "; ".join(failures)
    )
