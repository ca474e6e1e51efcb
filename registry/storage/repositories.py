"""Repository existence and the catalog."""

from __future__ import annotations

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import link_exists


class RepositoryStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def exists(self, name: str) -> bool:
        base = paths.repository(name)
        for marker in paths.REPOSITORY_MARKERS:
            if await link_exists(self.driver, f"{base}/{marker}"):
                return True
        return False

    async def names(self) -> list[str]:
        """Every repository name, in lexical order."""
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
