"""Repository existence and the catalog index.

`_catalog` lists one small key per repository (`_index/repositories/<name>!`), written when
a manifest is stored there and when a blob is linked (at most once a minute per process):
a page of the catalog is one listing request, never a walk over every blob link. A root
written before the index existed (or by the distribution registry) is indexed once, by a
walk, the first time the catalog is asked for. Entries of repositories whose content is
all gone are removed by garbage collection.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .index import FlatIndex

REMEMBER = 60.0  # seconds a written marker is not rewritten by this process


class RepositoryStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.index = FlatIndex(driver, paths.CATALOG, paths.CATALOG_COMPLETE, paths.CATALOG_END)
        # when this process last wrote each marker (a garbage collection elsewhere may have
        # removed one since, so the memory only saves rewrites for a short while)
        self._registered: dict[str, float] = {}

    async def exists(self, name: str) -> bool:
        """Whether the repository holds anything (directories exist while they have content)."""
        base = paths.repository(name)
        for marker in paths.REPOSITORY_MARKERS:
            try:
                await self.driver.stat(f"{base}/{marker}")
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

    async def start_fresh(self) -> None:
        """On a root without repositories, the (empty) index is complete from the start."""
        if await self.index.is_complete():
            return
        try:
            await self.driver.stat(paths.REPOSITORIES)
        except PathNotFoundError:
            await self.index.mark_complete()

    async def names(self) -> list[str]:
        """Every repository name, in lexical order."""
        await self.index.ensure(self._existing)
        return await self.index.page()

    async def page(self, accept: Callable[[str], bool], after: str | None,
                   limit: int | None) -> tuple[list[str], bool]:
        """Up to `limit` names after `after` that `accept` takes, and whether more follow."""
        await self.index.ensure(self._existing)
        return await self.index.select(accept, after, limit)

    async def _existing(self) -> list[str]:
        names = await self.walk_names()
        await self.driver.delete(paths.OLD_CATALOG)  # the first index, superseded
        return names

    async def walk_names(self) -> list[str]:
        """Repository names found by walking the repository tree (the slow way)."""
        try:
            entries = await self.driver.walk(paths.REPOSITORIES, lambda d: d.startswith("_"))
        except PathNotFoundError:
            return []
        found = set()
        for entry in entries:
            parent, _, leaf = entry.rpartition("/")
            if parent and leaf in paths.REPOSITORY_MARKERS:
                found.add(parent)
        return sorted(found)

    async def forget(self, name: str) -> None:
        """Drop the catalog marker of a repository that no longer holds anything."""
        await self.index.remove(name)
        self._registered.pop(name, None)
