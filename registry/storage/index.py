"""Flat indexes for listings: one empty object per entry under a prefix, listed a page at
a time in byte order (one request per page on S3), with a `.complete` marker saying the
index holds every entry.

Content written before an index existed (by an older Berth or by the distribution
registry) is indexed once by a write: the catalog when the server starts, a repository's
tags when a tag is next pushed there. Until then listings are answered the slow way, from
the content itself: a read never writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from .drivers.base import PathNotFoundError, StorageDriver
from .links import link_exists
from .parallel import each
from .paths import IndexKeys

WRITES_IN_FLIGHT = 32  # index entries written at once when indexing existing content


class FlatIndex:
    def __init__(self, driver: StorageDriver, keys: IndexKeys) -> None:
        self.driver, self.keys = driver, keys
        self._known_complete = False  # the marker never goes away once written

    async def add(self, entry: str) -> None:
        await self.driver.put(self.keys.key(entry), b"")

    async def remove(self, entry: str) -> None:
        await self.driver.delete(self.keys.key(entry))

    async def added(self, entry: str) -> float | None:
        """When `entry` was last added (storage's clock), or None when it is not there."""
        try:
            return (await self.driver.stat(self.keys.key(entry))).modified
        except PathNotFoundError:
            return None

    async def is_complete(self) -> bool:
        if not self._known_complete:
            self._known_complete = await link_exists(self.driver, self.keys.complete)
        return self._known_complete

    async def mark_complete(self) -> None:
        await self.driver.put(self.keys.complete, b"")
        self._known_complete = True

    async def ensure(self, existing: Callable[[], Awaitable[Iterable[str]]]) -> None:
        """Index what `existing` finds (the slow way), once."""
        if await self.is_complete():
            return
        indexed = set(await self.page())  # most may be there: written as they came
        missing = [e for e in await existing() if e not in indexed]
        await each(WRITES_IN_FLIGHT, missing, self.add)
        await self.mark_complete()

    async def page(self, after: str | None = None, limit: int | None = None) -> list[str]:
        """Entries after `after`, at most `limit`, in lexical order."""
        start = None if after is None else self.keys.listed_after(after)
        listed = await self.driver.list_keys(self.keys.prefix, start, limit)
        return [e for e in map(self.keys.entry, listed) if e is not None]

    async def select(self, accept: Callable[[str], bool], after: str | None,
                     limit: int | None) -> tuple[list[str], bool]:
        """Up to `limit` accepted entries after `after`, and whether more may follow (a
        full page says so: the next may be empty, as the spec allows); reads pages until
        it has them (a filter may drop most of a page). One request per page of up to
        1,000 on S3."""
        if limit == 0:
            return [], False
        chosen: list[str] = []
        batch = None if limit is None else max(limit, 100)
        while True:
            entries = await self.page(after, batch)
            for position, entry in enumerate(entries):
                if accept(entry):
                    chosen.append(entry)
                    if len(chosen) == limit:
                        rest = position + 1 < len(entries)
                        return chosen, rest or len(entries) == batch
            if batch is None or len(entries) < batch:
                return chosen, False
            after = entries[-1]


def select_from(entries: Iterable[str], accept: Callable[[str], bool], after: str | None,
                limit: int | None) -> tuple[list[str], bool]:
    """`FlatIndex.select` over entries at hand (a listing answered without its index)."""
    chosen = [e for e in sorted(entries) if (after is None or e > after) and accept(e)]
    if limit is None or len(chosen) <= limit:
        return chosen, False
    return chosen[:limit], True
