"""Repository existence and the catalog index.

`_catalog` lists one small key per repository (`_index/repositories/<name>!`), written when
a manifest is stored there and when a blob is linked (at most once a minute per process):
a page of the catalog is one listing request, never a walk over every blob link. A root
written before the index existed (or by the distribution registry) is indexed once, by a
walk, when the server starts (`prepare`); until that is done the catalog is answered by
the walk itself, writing nothing. Entries of repositories whose content is all gone are
removed by garbage collection.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .index import FlatIndex, select_from

REMEMBER = 60.0  # seconds a written marker is not rewritten by this process


class RepositoryStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.index = FlatIndex(driver, paths.CATALOG_INDEX)
        # when this process last wrote each marker (a garbage collection elsewhere may have
        # removed one since, so the memory only saves rewrites for a short while)
        self._registered: dict[str, float] = {}

    async def exists(self, name: str) -> bool:
        """Whether the repository holds anything (directories exist while they have content)."""
        for marker in paths.repository_markers(name):
            try:
                await self.driver.stat(marker)
            except PathNotFoundError:
                continue
            return True
        return False

    async def register(self, name: str, always: bool = False) -> None:
        """Make sure `name` is in the catalog (`always`: write the marker even if this
        process wrote it lately; manifest pushes do, they are rare)."""
        now = time.monotonic()
        if always or now - self._registered.get(name, -REMEMBER) >= REMEMBER:
            await self.index.add(name)
            self._registered[name] = now

    async def prepare(self) -> int | None:
        """At start: make the catalog index whole, once per root. A fresh root's (empty)
        index is complete from the start; a root written without one is indexed by a walk.
        Returns how many repositories were indexed (None: nothing to do)."""
        if await self.index.is_complete():
            return None
        try:
            await self.driver.stat(paths.REPOSITORIES)
        except PathNotFoundError:
            await self.index.mark_complete()
            return None
        found = await self.walk_names()
        await self.index.ensure(lambda: _at_hand(found))
        await self.driver.delete(paths.OLD_CATALOG_INDEX)  # the first index, superseded
        return len(found)

    async def names(self) -> list[str]:
        """Every repository name, in lexical order."""
        return (await self.page(_any, None, None))[0]

    async def page(self, accept: Callable[[str], bool], after: str | None,
                   limit: int | None) -> tuple[list[str], bool]:
        """Up to `limit` names after `after` that `accept` takes, and whether more follow."""
        if await self.index.is_complete():
            return await self.index.select(accept, after, limit)
        return select_from(await self.walk_names(), accept, after, limit)

    async def walk_names(self) -> list[str]:
        """Repository names found by walking the repository tree (the slow way)."""
        try:
            entries = await self.driver.walk(paths.REPOSITORIES, lambda d: d.startswith("_"))
        except PathNotFoundError:
            return []
        return sorted({r for r in map(paths.repository_of_marker, entries) if r is not None})

    async def registered(self, name: str) -> float | None:
        """When `name` was last put in the catalog (storage's clock)."""
        return await self.index.added(name)

    async def forget(self, name: str) -> None:
        """Drop the catalog marker of a repository that no longer holds anything."""
        await self.index.remove(name)
        self._registered.pop(name, None)


def _any(_: str) -> bool:
    return True


async def _at_hand(names: list[str]) -> list[str]:
    return names
