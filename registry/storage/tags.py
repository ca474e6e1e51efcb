"""Tags: a link per tag to the manifest digest it names, and a flat index of tag names per
repository (`_tags/<tag>`), so a page of `tags/list` is one listing request. The link is
the truth: it is written before its index entry and removed after it, so a listed tag
always resolves. A repository whose tags were written without the index (by an older
Berth, or by distribution) is indexed when a tag is next pushed there; until then its
tags are listed from the links."""

from __future__ import annotations

from client.oci.digest import Digest

from .. import errors
from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .immutability import ImmutableTags
from .index import FlatIndex, select_from
from .linkcache import LinkCache
from .links import link_exists, read_link, write_link
from .usage import UsageCounter


class TagStore:
    def __init__(self, driver: StorageDriver, immutable: ImmutableTags | None = None,
                 usage: UsageCounter | None = None, cache_ttl: float = 0.0) -> None:
        self.driver = driver
        self.links = LinkCache(driver, cache_ttl)  # for `resolve` (reads) only
        self.immutable = immutable or ImmutableTags()
        self.usage = usage  # counts tags created and removed (docs/quotas.md)
        self._indexes: dict[str, FlatIndex] = {}

    def _index(self, name: str) -> FlatIndex:
        index = self._indexes.get(name)
        if index is None:
            if len(self._indexes) > 10_000:
                self._indexes.clear()
            index = self._indexes[name] = FlatIndex(self.driver, paths.tag_index(name))
        return index

    async def resolve(self, name: str, tag: str) -> Digest:
        """The digest a tag names, for a read (linkcache.py says how fresh)."""
        digest = await self.links.digest(paths.tag_link(name, tag))
        if digest is None:
            raise errors.ManifestUnknown(detail={"tag": tag})
        return digest

    async def set(self, name: str, tag: str, digest: Digest) -> None:
        new = await self._counted(name, tag, exists=False)
        await write_link(self.driver, paths.tag_link(name, tag), digest)
        self.links.forget(paths.tag_link(name, tag))
        if new and self.usage is not None:
            await self.usage.change(name, tags=1)
        index = self._index(name)
        if not await index.is_complete():  # (a repository's first tag, or older tags)
            await index.ensure(lambda: self._linked(name))
        # Always this tag's own entry as well: another replica's first tag may have made
        # the index complete from a listing taken before this tag's link was written.
        await index.add(tag)

    async def check_push(self, name: str, tag: str, digest: Digest) -> None:
        """Refuse moving an immutable tag to another digest (one read, for such tags only)."""
        rule = self.immutable.rule(name, tag)
        if rule is None:
            return
        current = await read_link(self.driver, paths.tag_link(name, tag))
        if current is not None and current != digest:
            raise errors.Denied(
                f"tag {tag} is immutable ({rule}): it names {current}, so {digest} cannot "
                "be pushed to it", detail={"repository": name, "tag": tag,
                                           "digest": str(current)})

    def check_delete(self, name: str, tag: str) -> None:
        rule = self.immutable.rule(name, tag)
        if rule is not None:
            raise errors.Denied(f"tag {tag} is immutable ({rule}): it cannot be deleted",
                                detail={"repository": name, "tag": tag})

    async def delete(self, name: str, tag: str) -> None:
        if await read_link(self.driver, paths.tag_link(name, tag)) is None:
            raise errors.ManifestUnknown(detail={"tag": tag})
        self.check_delete(name, tag)
        await self.forget(name, tag)

    async def forget(self, name: str, tag: str) -> None:
        """Remove a tag: from the index first, so a listed tag always resolves."""
        existed = await self._counted(name, tag, exists=True)
        await self._index(name).remove(tag)
        await self.driver.delete(paths.tag(name, tag))
        self.links.forget(paths.tag_link(name, tag))
        if existed and self.usage is not None:
            await self.usage.change(name, tags=-1)

    async def _counted(self, name: str, tag: str, exists: bool) -> bool:
        """Whether usage is counted and the tag's link is there (`exists`) or not."""
        return self.usage is not None and await link_exists(
            self.driver, paths.tag_link(name, tag)) == exists

    async def drop_unlinked(self, name: str, cutoff: float) -> int:
        """Remove index entries older than `cutoff` whose tag link is gone (a delete that
        raced a push of the same tag). In two steps, since a push writes the link, then
        the entry: remove the entry, then look at the link again and put the entry back
        if a push wrote it meanwhile. Returns how many stayed removed."""
        index = self._index(name)
        if not await index.is_complete():
            return 0
        removed = 0
        for tag in await index.page():
            if await link_exists(self.driver, paths.tag_link(name, tag)):
                continue
            added = await index.added(tag)
            if added is None or added > cutoff:
                continue
            await index.remove(tag)
            if await link_exists(self.driver, paths.tag_link(name, tag)):
                await index.add(tag)
            else:
                removed += 1
        return removed

    async def names(self, name: str) -> list[str]:
        """All tags of a repository in lexical (byte) order."""
        return (await self.page(name, None, None))[0]

    async def page(self, name: str, after: str | None,
                   limit: int | None) -> tuple[list[str], bool]:
        """Up to `limit` tags after `after`, and whether more follow."""
        index = self._index(name)
        if await index.is_complete():
            return await index.select(_any, after, limit)
        return select_from(await self._linked(name), _any, after, limit)

    async def linked(self, name: str) -> list[str]:
        """Every tag with a link, the index aside (the truth; one listing)."""
        return await self._linked(name)

    async def _linked(self, name: str) -> list[str]:
        try:
            return await self.driver.list_dir(paths.tags(name))
        except PathNotFoundError:
            return []

    async def pointing_at(self, name: str, digest: Digest) -> list[str]:
        return [t for t in await self.names(name)
                if await read_link(self.driver, paths.tag_link(name, t)) == digest]


def _any(_: str) -> bool:
    return True
