"""The content-addressed blob store and per-repository blob links.

A blob is stored once per digest; it is readable in a repository only through a link
written when it was pushed or mounted there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

from client.oci.digest import Digest

from .. import errors
from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import delete_link, link_exists, write_link
from .quotas import Quotas
from .repositories import RepositoryStore
from .usage import UsageCounter, held
from .uses import UseRecords


@dataclass(slots=True)
class BlobContent:
    """A blob ready to be sent, in the best way its backend offers: a `redirect` URL, a
    local `file` (for zero-copy sendfile), or else `stream()` from storage. `close()`
    releases what opening took; the caller never learns where the blob is stored."""

    digest: Digest
    size: int
    redirect: str | None
    file: BinaryIO | None
    _driver: StorageDriver
    _key: str

    def stream(self, offset: int, length: int) -> AsyncIterator[bytes]:
        return self._driver.reader(self._key, offset, length)

    async def close(self) -> None:
        if self.file is not None:
            file, self.file = self.file, None
            await asyncio.get_running_loop().run_in_executor(None, file.close)


class BlobStore:
    def __init__(self, driver: StorageDriver, repositories: RepositoryStore,
                 uses: UseRecords, usage: UsageCounter | None = None,
                 quotas: Quotas | None = None) -> None:
        self.driver = driver
        self.repositories = repositories
        self.uses = uses
        self.usage, self.quotas = usage, quotas  # (docs/quotas.md)

    async def size(self, digest: Digest) -> int | None:
        """Size of the stored blob, or None when the registry does not hold it."""
        try:
            return (await self.driver.stat(paths.blob_data(digest))).size
        except PathNotFoundError:
            return None

    async def linked(self, name: str, digest: Digest) -> bool:
        return await link_exists(self.driver, paths.layer_link(name, digest))

    async def stat(self, name: str, digest: Digest) -> int:
        """Size of a blob readable in `name`; BLOB_UNKNOWN otherwise."""
        if await self.linked(name, digest):
            size = await self.size(digest)
            if size is not None:
                return size
        raise errors.BlobUnknown(detail={"digest": str(digest)})

    async def open(self, name: str, digest: Digest, redirect: bool = False) -> BlobContent:
        """A blob readable in `name`, ready to send; `redirect`: a URL when the backend
        can give one (presigned S3)."""
        size = await self.stat(name, digest)
        key = paths.blob_data(digest)
        url = await self.driver.redirect_url(key) if redirect else None
        file = None
        if url is None:
            try:
                file = await self.driver.open_local(key)
            except PathNotFoundError:
                raise errors.BlobUnknown(detail={"digest": str(digest)}) from None
        return BlobContent(digest, size, url, file, self.driver, key)

    async def modified(self, digest: Digest) -> float | None:
        """When the blob's data was written (storage's clock), or None when absent."""
        try:
            return (await self.driver.stat(paths.blob_data(digest))).modified
        except PathNotFoundError:
            return None

    async def digests(self) -> AsyncIterator[Digest]:
        """Every digest the content store holds data for: one flat listing (a request per
        1,000 blobs on S3), not a walk of its levels."""
        for key in await self.driver.list_keys(paths.blob_tree()):
            digest = paths.blob_of_data(key)
            if digest is not None:
                yield digest

    async def _names(self, directory: str) -> list[str]:
        try:
            return await self.driver.list_dir(directory)
        except PathNotFoundError:
            return []

    # -- garbage collection's two steps (docs/gc.md) ---------------------------------

    async def set_aside(self, digest: Digest, run: str) -> bool:
        """Move a blob's data out of sight (collection `run` decides later); False when
        it is gone already (another collection set it aside, or deleted it)."""
        try:
            await self.driver.move(paths.blob_data(digest), paths.quarantined(run, digest))
        except PathNotFoundError:
            return False
        return True

    async def restore(self, digest: Digest, run: str) -> bool:
        """Put a set-aside blob back (identical bytes a push may have stored meanwhile are
        simply replaced); False when another collection decided on it first."""
        try:
            await self.driver.move(paths.quarantined(run, digest), paths.blob_data(digest))
        except PathNotFoundError:
            return False
        return True

    async def drop(self, digest: Digest, run: str) -> None:
        """Delete a set-aside blob for good (never the blob's own key: a push may have
        stored the same bytes there again meanwhile)."""
        await self.driver.delete_object(paths.quarantined(run, digest))

    async def set_aside_by(self, run: str) -> list[Digest]:
        """What collection `run` set aside and has not decided on."""
        found = []
        base = paths.quarantine_run(run)
        for algorithm in await self._names(base):
            for encoded in await self._names(paths.digest_tree(base, algorithm)):
                digest = paths.digest_named(algorithm, encoded)
                if digest is not None:
                    found.append(digest)
        return found

    async def runs_with_set_aside(self) -> list[str]:
        return await self._names(paths.QUARANTINE)

    async def read(self, digest: Digest) -> bytes:
        return await self.driver.get(paths.blob_data(digest))

    async def put(self, data: bytes, digest: Digest) -> None:
        """Store small content (manifests) under its digest, unless already there."""
        if await self.size(digest) is None:
            await self.driver.put(paths.blob_data(digest), data)

    async def link(self, name: str, digest: Digest, size: int | None = None) -> None:
        await self.repositories.register(name)
        new = await self.is_new(name, digest)
        await write_link(self.driver, paths.layer_link(name, digest), digest)
        if new:
            await self.count(name, digest, size)

    async def unlink(self, name: str, digest: Digest) -> None:
        if not await self.linked(name, digest):
            raise errors.BlobUnknown(detail={"digest": str(digest)})
        await delete_link(self.driver, paths.layer_link(name, digest))
        await self.uncount(name, digest)

    # -- usage (docs/quotas.md): only links that are new, or the last of a blob, count --

    async def is_new(self, name: str, digest: Digest) -> bool:
        """Whether linking `digest` into `name` would add it (asked before the write)."""
        return self.usage is not None and not await held(self.driver, name, digest)

    async def count(self, name: str, digest: Digest, size: int | None = None) -> None:
        """Count a blob just linked into `name` that `is_new` said was new."""
        if self.usage is not None:
            await self.usage.change(name, size if size is not None else await self._size(digest))

    async def uncount(self, name: str, digest: Digest) -> None:
        """After a link was removed: the blob no longer counts if `name` holds it no more."""
        if self.usage is not None and not await held(self.driver, name, digest):
            await self.usage.change(name, -await self._size(digest))

    async def _size(self, digest: Digest) -> int:
        return await self.size(digest) or 0

    async def mount(self, name: str, digest: Digest, source: str | None) -> int | None:
        """Link a blob into `name` from `source` (or from anywhere when None).

        Returns the blob's size when mounted, None when it cannot be (the caller then
        opens an ordinary upload session)."""
        if source is not None and not await self.linked(source, digest):
            return None
        await self.uses.record([digest])  # before the check, as a manifest push (docs/gc.md)
        size = await self.size(digest)
        if size is None:
            return None
        if self.quotas is not None:
            await self.quotas.admit_blob(name, digest, size)
        await self.link(name, digest, size)
        return size
