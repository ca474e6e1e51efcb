"""Pull records: when a manifest was last pulled from a repository, for the retention
rules that ask (`pulledwithin`, `mostrecentlypulledcount`); not kept otherwise.

A GET of a manifest only notes it in memory; a background task writes the noted records
in one batch a minute (`berth.retention.pullflush`), one empty object per repository and
manifest (`_pulls/<alg>/<hex>`, its time is the record), and skips a manifest this
process wrote less than an hour ago: at most one write per manifest per hour per process,
so a record is up to an hour (plus a batch) older than the last pull it stands for.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from client.oci.digest import Digest

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import list_digests
from .parallel import each

log = logging.getLogger(__name__)
WRITES_IN_FLIGHT = 16
EVERY = 3600.0  # seconds between two writes of one record by one process
_REMEMBERED = 65536  # records whose last write this process remembers

_Key = tuple[str, Digest]


class PullRecords:
    def __init__(self, driver: StorageDriver, enabled: bool) -> None:
        self.driver = driver
        self.enabled = enabled
        self._noted: dict[_Key, None] = {}  # pulled since the last batch, in order
        self._written: OrderedDict[_Key, float] = OrderedDict()  # monotonic time

    def note(self, name: str, digest: Digest) -> None:
        """A pull of `digest` from `name`, now (no storage request)."""
        if not self.enabled:
            return
        written = self._written.get((name, digest))
        if written is None or time.monotonic() - written >= EVERY:
            self._noted[(name, digest)] = None

    async def flush(self) -> int:
        """Write the records noted since the last batch; how many."""
        due, self._noted = list(self._noted), {}
        await each(WRITES_IN_FLIGHT, due, self._write)
        return len(due)

    async def _write(self, key: _Key) -> None:
        started = time.monotonic()
        await self.driver.put(paths.pull_record(*key), b"")
        self._written[key] = started
        self._written.move_to_end(key)
        while len(self._written) > _REMEMBERED:
            self._written.popitem(last=False)

    async def last_pulled(self, name: str, digest: Digest) -> float | None:
        """When `digest` was last recorded as pulled from `name` (storage's clock)."""
        try:
            return (await self.driver.stat(paths.pull_record(name, digest))).modified
        except PathNotFoundError:
            return None

    async def forget_missing(self, name: str, revisions: set[Digest]) -> int:
        """Remove the records of manifests `name` no longer holds; how many."""
        gone = [d for d in await list_digests(self.driver, paths.pulls(name))
                if d not in revisions]
        for digest in gone:
            await self.driver.delete(paths.pull_record(name, digest))
        return len(gone)
