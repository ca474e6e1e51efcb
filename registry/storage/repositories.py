"""Repository existence and the catalog index.

`_catalog` lists one small marker per repository, written when a manifest is stored there
and when a blob is linked (at most once a minute per process), so listing repositories
costs one listing of markers (on S3, a request per 1,000 repositories), never a walk over
every blob link. A root
written before the index existed (or by the distribution registry) is indexed once, by a
walk, the first time the catalog is asked for. Markers of repositories whose content is all
gone are removed by garbage collection.
"""

from __future__ import annotations

import time

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import link_exists

REMEMBER = 60.0  # seconds a written marker is not rewritten by this process


class RepositoryStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
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
            await self.driver.put(paths.catalog_entry(name), b"")
            self._registered[name] = now

    async def names(self) -> list[str]:
        """Every repository name, in lexical order."""
        if not await link_exists(self.driver, paths.CATALOG_COMPLETE):
            await self._index_existing()
        try:
            entries = await self.driver.walk(paths.CATALOG, lambda _: False)
        except PathNotFoundError:
            return []
        suffix = "/" + paths.CATALOG_ENTRY
        return sorted(e[: -len(suffix)] for e in entries if e.endswith(suffix))

    async def _index_existing(self) -> None:
        for name in await self.walk_names():
            await self.register(name)
        await self.driver.put(paths.CATALOG_COMPLETE, b"")

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
        await self.driver.delete(paths.catalog_entry(name))
        self._registered.pop(name, None)
