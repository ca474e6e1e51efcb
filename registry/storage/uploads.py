"""Upload sessions: chunked, streamed and monolithic blob uploads.

A session lives in storage (`_uploads/<id>/data` + `startedat`), not in process memory,
so it survives a restart and may be continued by any process sharing the storage. The
offset of a session is the size of its data. Its running digest is kept in memory and,
after each chunk, saved beside the session (`hashstates/`, resumable SHA-256), so another
process continues it without re-reading; where neither is at hand the data is hashed once
from storage, and the log says so. A monolithic upload (`POST ?digest=`) is a session no
one else ever sees: it leaves nothing behind, whatever goes wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

from client.oci.digest import CANONICAL, Digest, Hasher, new_hasher

from .. import errors
from . import hashstate, paths
from .blobs import BlobStore
from .drivers.base import Appender, PathNotFoundError, StorageDriver

log = logging.getLogger(__name__)

_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
WRITE_CHUNK = 1024 * 1024
_HASHER_CACHE = 4096


@dataclass(frozen=True, slots=True)
class UploadState:
    name: str
    id: str
    offset: int  # bytes received so far


class ChunkOutOfOrder(errors.RangeInvalid):
    """A chunk that does not start where the session stands (416); `state` says where."""

    def __init__(self, message: str, state: UploadState) -> None:
        super().__init__(message)
        self.state = state


async def _rechunk(body: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Regroup a network stream into buffers of about `size` bytes (fewer thread hops)."""
    parts: list[bytes] = []
    held = 0
    async for chunk in body:
        if not chunk:
            continue
        parts.append(chunk)
        held += len(chunk)
        if held >= size:
            yield b"".join(parts)
            parts, held = [], 0
    if parts:
        yield b"".join(parts)


def _new_hasher(algorithm: str) -> Hasher:
    """sha256 with a state that can be saved (when this OpenSSL allows), else hashlib's."""
    if algorithm == CANONICAL and hashstate.AVAILABLE:
        return hashstate.ResumableSha256()
    return new_hasher(algorithm)


class UploadStore:
    def __init__(self, driver: StorageDriver, blobs: BlobStore) -> None:
        self.driver = driver
        self.blobs = blobs
        self._hashers: OrderedDict[str, tuple[int, str, Hasher]] = OrderedDict()
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def start(self, name: str, algorithm: str = CANONICAL) -> UploadState:
        """Open a session (its `startedat` marker makes it visible to status and purging)."""
        upload_id = str(uuid.uuid4())
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        await self.driver.put(paths.upload_started(name, upload_id), started.encode())
        self._remember(upload_id, 0, algorithm, _new_hasher(algorithm))
        return UploadState(name, upload_id, 0)

    async def upload(self, name: str, digest: Digest, body: AsyncIterator[bytes]) -> int:
        """A whole blob in one request (`POST ?digest=`); returns its size. Its session is
        never announced (no client could continue or cancel it): whatever goes wrong, a
        digest mismatch, a full disk, a client gone mid-body, nothing of it stays."""
        state = UploadState(name, str(uuid.uuid4()), 0)
        self._remember(state.id, 0, digest.algorithm, _new_hasher(digest.algorithm))
        try:
            return await self._finish(state, digest, body, None, None, fresh=True)
        except BaseException:
            await asyncio.shield(self._remove(name, state.id))
            raise

    async def status(self, name: str, upload_id: str) -> UploadState:
        if not _ID.match(upload_id):
            raise errors.BlobUploadUnknown(detail={"uuid": upload_id})
        try:
            info = await self.driver.stat(paths.upload_data(name, upload_id))
        except PathNotFoundError:
            try:  # announced, nothing written yet
                await self.driver.stat(paths.upload_started(name, upload_id))
            except PathNotFoundError:
                raise errors.BlobUploadUnknown(detail={"uuid": upload_id}) from None
            return UploadState(name, upload_id, 0)
        return UploadState(name, upload_id, info.size)

    async def append(
        self, name: str, upload_id: str, body: AsyncIterator[bytes], start: int | None = None,
        length: int | None = None,
    ) -> UploadState:
        """Append a chunk. `start` (from Content-Range) must equal the current offset,
        else 416 with the current Range; a body of other than `length` bytes is refused.
        Either way the session stays as it was."""
        async with self._lock(upload_id):
            state = await self.status(name, upload_id)
            return await self._append(state, body, start, length)

    async def _append(
        self, state: UploadState, body: AsyncIterator[bytes], start: int | None,
        length: int | None = None, save_state: bool = True, fresh: bool = False,
    ) -> UploadState:
        if start is not None and start != state.offset:
            raise ChunkOutOfOrder(f"chunk starts at {start}, the upload is at {state.offset}",
                                  state)
        algorithm, hasher = await self._hasher(state, None)
        appender = await self.driver.appender(
            paths.upload_data(state.name, state.id), resume_at=state.offset, fresh=fresh
        )
        loop = asyncio.get_running_loop()

        async def consume(buf: bytes) -> None:
            # Hash and write in parallel threads: both release the GIL.
            await asyncio.gather(
                loop.run_in_executor(None, hasher.update, buf), appender.write(buf)
            )

        pending: asyncio.Future[None] | None = None
        try:
            async for buf in _rechunk(body, WRITE_CHUNK):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(consume(buf))
            if pending is not None:
                await pending
        except BaseException:
            if pending is not None and not pending.done():
                await asyncio.wait([pending])
            failed = (pending is not None and not pending.cancelled()
                      and pending.exception() is not None)
            await self._keep_or_drop(state, appender, algorithm, hasher, failed)
            raise
        received = appender.size - state.offset
        if length is not None and received != length:
            await appender.abort()  # a refused chunk leaves the session as it was
            self._hashers.pop(state.id, None)
            raise errors.BlobUploadInvalid(
                "the chunk does not match its Content-Range",
                detail={"expected": length, "received": received},
            )
        try:
            await appender.commit()
        except BaseException:  # e.g. fsync on a full disk: the chunk is refused whole
            self._hashers.pop(state.id, None)
            with contextlib.suppress(Exception):
                await appender.abort()
            raise
        self._remember(state.id, appender.size, algorithm, hasher)
        if save_state:
            await self._save_hash(state, algorithm, hasher, appender.size)
        return UploadState(state.name, state.id, appender.size)

    async def _keep_or_drop(self, state: UploadState, appender: Appender, algorithm: str,
                            hasher: Hasher, write_failed: bool) -> None:
        """After a chunk that did not arrive whole. When storage refused it (a full disk),
        the session stays as it was, so the client can send the chunk again. When the body
        stopped (the client went away), what arrived stays, to resume from: every buffer
        handed over was both written and hashed."""
        if not write_failed:
            try:
                await appender.commit()
            except BaseException:
                write_failed = True
            else:
                self._remember(state.id, appender.size, algorithm, hasher)
                return
        self._hashers.pop(state.id, None)  # its saved state at the old offset stays good
        with contextlib.suppress(Exception):  # the failure being raised says what went wrong
            await appender.abort()

    async def _save_hash(self, state: UploadState, algorithm: str, hasher: Hasher,
                         offset: int) -> None:
        """Keep the running digest beside the session, so that any process can continue it
        without re-reading the data."""
        if not isinstance(hasher, hashstate.ResumableSha256) or offset == state.offset:
            return
        await self.driver.put(paths.upload_hashstate(state.name, state.id, algorithm, offset),
                              hashstate.dump(hasher))
        # Earlier states stay until the session goes (one request less per chunk).

    async def commit(
        self, name: str, upload_id: str, digest: Digest,
        body: AsyncIterator[bytes] | None = None, start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Verify the digest, then make the blob visible in `name`. Returns its size.

        On a digest mismatch nothing becomes visible and the session is removed."""
        async with self._lock(upload_id):
            state = await self.status(name, upload_id)
            return await self._finish(state, digest, body, start, length)

    async def _finish(self, state: UploadState, digest: Digest,
                      body: AsyncIterator[bytes] | None, start: int | None,
                      length: int | None, fresh: bool = False) -> int:
        name, upload_id = state.name, state.id
        if body is not None:  # the session ends here: no state worth saving
            state = await self._append(state, body, start, length, save_state=False,
                                       fresh=fresh)
        _, hasher = await self._hasher(state, digest.algorithm)
        actual = Digest.from_hasher(digest.algorithm, hasher)
        if actual != digest:
            await self._remove(name, upload_id)
            raise errors.DigestInvalid(
                detail={"expected": str(digest), "actual": str(actual)}
            )
        # Named before the check, as by a manifest push: a collection that sets an old copy
        # aside meanwhile puts it back (docs/gc.md).
        await self.blobs.uses.record([digest])
        if self.blobs.quotas is not None:  # refused: nothing of it becomes visible
            try:
                await self.blobs.quotas.admit_blob(name, digest, state.offset)
            except errors.Denied:
                await self._remove(name, upload_id)
                raise
        if await self.blobs.size(digest) is None:
            if state.offset == 0:  # nothing was ever written: there may be no data file
                await self.blobs.put(b"", digest)
            else:
                await self.driver.move(
                    paths.upload_data(name, upload_id), paths.blob_data(digest)
                )
        await self.blobs.link(name, digest, state.offset)
        await self._remove(name, upload_id)
        return state.offset

    async def cancel(self, name: str, upload_id: str) -> None:
        async with self._lock(upload_id):
            await self.status(name, upload_id)
            await self._remove(name, upload_id)

    async def _remove(self, name: str, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        await self.driver.delete(paths.upload(name, upload_id))

    def _remember(self, upload_id: str, offset: int, algorithm: str, hasher: Hasher) -> None:
        self._hashers[upload_id] = (offset, algorithm, hasher)
        self._hashers.move_to_end(upload_id)
        while len(self._hashers) > _HASHER_CACHE:
            self._hashers.popitem(last=False)

    async def _hasher(self, state: UploadState, algorithm: str | None) -> tuple[str, Hasher]:
        """The running hash of the session's data, re-read from storage when not at hand."""
        cached = self._hashers.get(state.id)
        if cached is not None:
            offset, cached_algorithm, hasher = cached
            if offset == state.offset and algorithm in (None, cached_algorithm):
                return cached_algorithm, hasher
        algorithm = algorithm or CANONICAL
        if state.offset and algorithm == CANONICAL and hashstate.AVAILABLE:
            try:
                saved = await self.driver.get(paths.upload_hashstate(
                    state.name, state.id, algorithm, state.offset))
            except PathNotFoundError:
                saved = b""
            resumed = hashstate.load(saved, state.offset) if saved else None
            if resumed is not None:
                log.info("upload %s: resumed the %s state saved at %d bytes", state.id,
                         algorithm, state.offset)
                self._remember(state.id, state.offset, algorithm, resumed)
                return algorithm, resumed
        hasher = _new_hasher(algorithm)
        if state.offset:
            log.info(
                "upload %s: hashing %d bytes from storage (%s state not in this process)",
                state.id, state.offset, algorithm,
            )
            loop = asyncio.get_running_loop()
            path = paths.upload_data(state.name, state.id)
            async for chunk in self.driver.reader(path, 0, state.offset):
                await loop.run_in_executor(None, hasher.update, chunk)
        self._remember(state.id, state.offset, algorithm, hasher)
        return algorithm, hasher

    async def purge(self, older_than: float, dry_run: bool = False) -> list[str]:
        """Remove sessions with no activity (data written, or started) for `older_than`
        seconds, and writes that stopped processes left half done."""
        if not dry_run:
            aborted = await self.driver.abort_stale_writes(paths.REPOSITORIES, older_than)
            if aborted:
                log.info("aborted %d half-written appends left by stopped processes", aborted)
        try:
            entries = await self.driver.walk(paths.REPOSITORIES,
                                             lambda d: d in paths.NOT_UPLOADS)
        except PathNotFoundError:
            return []
        last_activity: dict[tuple[str, str], float] = {}
        for entry in entries:
            found = paths.upload_of(entry)
            if found is None:
                continue
            repo, upload_id, _ = found
            try:
                info = await self.driver.stat(paths.walked(entry))
            except PathNotFoundError:
                continue
            key = (repo, upload_id)
            last_activity[key] = max(last_activity.get(key, 0.0), info.modified)
        cutoff = time.time() - older_than
        purged = []
        for (repo, upload_id), modified in sorted(last_activity.items()):
            if modified < cutoff:
                purged.append(f"{repo}/{upload_id}")
                if not dry_run:
                    await self._remove(repo, upload_id)
        return purged
