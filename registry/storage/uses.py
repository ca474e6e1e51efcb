"""Use records: when a manifest push last named a digest (blob, config, child manifest,
the manifest itself). One empty object per digest under `_uses/`; its time is the record.

A push writes them *before* it checks that what it names exists, and garbage collection
re-reads them *after* it has set a blob aside: a blob some push saw present is never
deleted under it (the argument is in docs/gc.md). Rewriting a record costs a request, so a
process skips digests it recorded less than a quarter of the grace period ago: a record
is then at most that much older than the push it stands for, which the argument allows.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

from client.oci.digest import Digest

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .parallel import each

WRITES_IN_FLIGHT = 16
_REMEMBERED = 65536  # digests whose last record this process remembers


class UseRecords:
    def __init__(self, driver: StorageDriver, grace: float) -> None:
        self.driver = driver
        self.grace = grace
        self._written: OrderedDict[Digest, float] = OrderedDict()  # monotonic time

    @property
    def push_deadline(self) -> float:
        """Seconds a manifest push may take from its first record to becoming visible."""
        return self.grace / 2

    async def record(self, digests: Iterable[Digest]) -> None:
        """Say that a push names these digests, now."""
        now = time.monotonic()
        fresh = self.grace / 4
        due = [d for d in dict.fromkeys(digests) if now - self._written.get(d, -fresh) >= fresh]
        await each(WRITES_IN_FLIGHT, due, self._write)

    async def _write(self, digest: Digest) -> None:
        started = time.monotonic()  # before the write: the memory never outlives the record
        # Not fsynced: a record lost with the machine only makes a later push of an
        # old blob fail its check and upload again (docs/gc.md), never loses data
        await self.driver.put(paths.use_record(digest), b"", durable=False)
        self._written[digest] = started
        self._written.move_to_end(digest)
        while len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)

    async def last_used(self, digest: Digest) -> float | None:
        """When a push last named `digest` (storage's clock), or None."""
        try:
            return (await self.driver.stat(paths.use_record(digest))).modified
        except PathNotFoundError:
            return None

    async def forget(self, digest: Digest) -> None:
        await self.driver.delete_object(paths.use_record(digest))
        self._written.pop(digest, None)
