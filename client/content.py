"""The content an image is made of, as bytes: manifests as stored (with the media type and
digest that name them) and blob streams, verified as they pass. Every source and destination
speaks these, whatever its transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .errors import DigestMismatch
from .oci.descriptor import Descriptor
from .oci.digest import Digest, new_hasher

# A blob's bytes from an offset: how push re-reads its source after an interruption.
BlobOpener = Callable[[int], AsyncIterator[bytes]]
# Told the number of bytes of one blob done so far (it may go back after a resume).
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ManifestBytes:
    """A manifest or index exactly as fetched, read or built: the bytes its digest covers,
    with its media type."""

    data: bytes
    media_type: str
    digest: Digest

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))


async def verified(desc: Descriptor, stream: AsyncIterator[bytes],
                   progress: Progress | None = None) -> AsyncIterator[bytes]:
    """Pass a blob's bytes through, failing at the end if digest or size differ."""
    hasher = new_hasher(desc.digest.algorithm)
    size = 0
    loop = asyncio.get_running_loop()
    async for chunk in stream:
        if len(chunk) >= 65536:  # hashing releases the GIL: keep big ones off the loop
            await loop.run_in_executor(None, hasher.update, chunk)
        else:
            hasher.update(chunk)
        size += len(chunk)
        if size > desc.size:
            raise DigestMismatch(f"{desc.digest}: more than the {desc.size} bytes announced")
        if progress:
            progress(size)
        yield chunk
    if size != desc.size or hasher.hexdigest() != desc.digest.hex:
        raise DigestMismatch(f"{desc.digest}: content does not match (got {size} bytes)")
