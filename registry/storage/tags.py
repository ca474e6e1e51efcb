"""Tags: a link per tag to the manifest digest it names."""

from __future__ import annotations

from client.oci.digest import Digest

from .. import errors
from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import read_link, write_link


class TagStore:
    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def resolve(self, name: str, tag: str) -> Digest:
        digest = await read_link(self.driver, paths.tag_link(name, tag))
        if digest is None:
            raise errors.ManifestUnknown(detail={"tag": tag})
        return digest

    async def set(self, name: str, tag: str, digest: Digest) -> None:
        await write_link(self.driver, paths.tag_link(name, tag), digest)

    async def delete(self, name: str, tag: str) -> None:
        if await read_link(self.driver, paths.tag_link(name, tag)) is None:
            raise errors.ManifestUnknown(detail={"tag": tag})
        await self.driver.delete(paths.tag(name, tag))

    async def names(self, name: str) -> list[str]:
        """All tags of a repository in lexical (byte) order."""
        try:
            return await self.driver.list_dir(paths.tags(name))
        except PathNotFoundError:
            return []

    async def pointing_at(self, name: str, digest: Digest) -> list[str]:
        return [t for t in await self.names(name)
                if await read_link(self.driver, paths.tag_link(name, t)) == digest]
