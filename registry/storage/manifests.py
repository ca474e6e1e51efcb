"""Manifests: validation, revisions, tag updates and the referrers index.

Manifest bytes are stored as blobs, exactly as pushed; a repository holds a revision
link per manifest digest. Metadata parsed from a manifest (media type, artifact type,
subject) and its bytes depend only on its digest, so they are cached per process without
invalidation (the bytes up to `berth.cache.manifests`); which digest a tag names, and
whether a repository holds a digest, are cached for reads as linkcache.py says.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable

from client.oci import mediatypes as mt
from client.oci.digest import CANONICAL, Digest, DigestError
from client.oci.reference import is_valid_tag

from .. import errors
from . import paths
from .blobs import BlobStore
from .drivers.base import PathNotFoundError, StorageDriver
from .examine import ManifestInfo, Reference, UrlPolicy, describe, examine, off_loop
from .links import delete_link, link_exists, list_digests, write_link
from .parallel import each
from .tags import TagStore
from .uses import UseRecords

_INFO_CACHE = 16384
TAG_WRITES_IN_FLIGHT = 16
CHECKS_IN_FLIGHT = 32  # reference lookups of one manifest push at once


def tag_or_digest(reference: str) -> Digest | str:
    """A manifest reference is a digest (has ':') or a tag."""
    if ":" in reference:
        try:
            return Digest.parse(reference)
        except DigestError as exc:
            raise errors.DigestInvalid(str(exc), detail={"reference": reference}) from None
    return reference


class ManifestStore:
    def __init__(
        self, driver: StorageDriver, blobs: BlobStore, tags: TagStore, uses: UseRecords,
        url_policy: UrlPolicy, max_bytes: int, validate: bool = True, cache_bytes: int = 0,
    ) -> None:
        self.driver, self.blobs, self.tags, self.uses = driver, blobs, tags, uses
        self.url_policy = url_policy
        self.max_bytes = max_bytes
        self.validate = validate
        self.links = tags.links  # one cache of what reads learned from links
        self._info: OrderedDict[Digest, ManifestInfo] = OrderedDict()
        self._content: OrderedDict[Digest, bytes] = OrderedDict()
        self._content_bytes = 0
        self.cache_bytes = cache_bytes

    # -- reading ------------------------------------------------------------------

    async def exists(self, name: str, digest: Digest) -> bool:
        return await link_exists(self.driver, paths.revision_link(name, digest))

    async def resolve(self, name: str, reference: str) -> Digest:
        """The digest a reference names, for a read."""
        ref = tag_or_digest(reference)
        if isinstance(ref, Digest):
            if not await self.links.present(paths.revision_link(name, ref)):
                raise errors.ManifestUnknown(detail={"digest": reference})
            return ref
        if not is_valid_tag(ref):
            raise errors.ManifestUnknown(f"invalid tag {ref!r}", detail={"tag": ref})
        return await self.tags.resolve(name, ref)

    async def info(self, name: str, reference: str) -> ManifestInfo:
        digest = await self.resolve(name, reference)
        cached = self._info.get(digest)
        if cached is not None:
            return cached
        return (await self._load(name, digest))[0]

    async def get(self, name: str, reference: str) -> tuple[ManifestInfo, bytes]:
        digest = await self.resolve(name, reference)
        data = self._content.get(digest)
        info = self._info.get(digest)
        if data is not None and info is not None:
            self._content.move_to_end(digest)
            return info, data
        return await self._load(name, digest)

    async def _load(self, name: str, digest: Digest) -> tuple[ManifestInfo, bytes]:
        try:
            data = await self.blobs.read(digest)
        except PathNotFoundError:
            raise errors.ManifestUnknown(detail={"digest": str(digest)}) from None
        cached = self._info.get(digest)
        if cached is not None:
            self._keep_content(digest, data)
            return cached, data
        info, declared = await off_loop(len(data), describe, data, digest, None)
        if not declared:
            pushed = await self._pushed_type(name, digest)
            if pushed is not None:
                info, _ = await off_loop(len(data), describe, data, digest, pushed)
        self._cache(info)
        self._keep_content(digest, data)
        return info, data

    async def _pushed_type(self, name: str, digest: Digest) -> str | None:
        try:
            return (await self.driver.get(paths.revision_media_type(name, digest))).decode()
        except (PathNotFoundError, UnicodeDecodeError):
            return None

    def _cache(self, info: ManifestInfo) -> None:
        self._info[info.digest] = info
        while len(self._info) > _INFO_CACHE:
            self._info.popitem(last=False)

    def _keep_content(self, digest: Digest, data: bytes) -> None:
        """Keep a manifest's bytes (least recently used out first; none over 1/16 of
        the budget, so one huge index cannot flush the rest)."""
        if len(data) > self.cache_bytes // 16 or digest in self._content:
            return
        self._content[digest] = data
        self._content_bytes += len(data)
        while self._content_bytes > self.cache_bytes:
            self._content_bytes -= len(self._content.popitem(last=False)[1])

    # -- writing ------------------------------------------------------------------

    async def _receive(self, body: AsyncIterator[bytes], declared: int | None) -> bytes:
        """A pushed manifest's bytes, refused (413) as soon as they exceed the limit."""
        if declared is not None and declared > self.max_bytes:
            raise errors.ManifestTooLarge(detail={"limit": self.max_bytes, "size": declared})
        parts: list[bytes] = []
        total = 0
        async for chunk in body:
            total += len(chunk)
            if total > self.max_bytes:
                raise errors.ManifestTooLarge(detail={"limit": self.max_bytes})
            parts.append(chunk)
        return b"".join(parts)

    async def put(
        self, name: str, reference: str, body: AsyncIterator[bytes], content_type: str | None,
        declared_length: int | None = None, extra_tags: Iterable[str] = (),
    ) -> ManifestInfo:
        """Store a pushed manifest (its body as it arrives; `declared_length`: what its
        Content-Length says, refused early when over `berth.manifest_max_bytes`)."""
        ref = tag_or_digest(reference)
        tags = [ref] if isinstance(ref, str) else []
        tags.extend(t for t in extra_tags if t not in tags)
        for tag in tags:
            if not is_valid_tag(tag):
                raise errors.ManifestInvalid(f"invalid tag {tag!r}", detail={"tag": tag})
        data = await self._receive(body, declared_length)
        algorithm = ref.algorithm if isinstance(ref, Digest) else CANONICAL
        policy = self.url_policy if self.validate else None
        examined = await off_loop(len(data), examine, data, content_type, algorithm, policy)
        info, digest = examined.info, examined.info.digest
        if isinstance(ref, Digest) and digest != ref:
            raise errors.DigestInvalid(
                "manifest digest does not match the reference",
                detail={"expected": str(ref), "actual": str(digest)},
            )
        await each(CHECKS_IN_FLIGHT, tags, lambda tag: self.tags.check_push(name, tag, digest))
        # What the push names is recorded as used *before* it is checked, and the manifest
        # becomes visible within the deadline: garbage collection's side of the protocol
        # (docs/gc.md) then never deletes what a check saw present.
        started = time.monotonic()
        await self.uses.record([digest, *(r.digest for r in (*examined.blobs,
                                                              *examined.children))])
        if self.blobs.quotas is not None:  # (docs/quotas.md)
            await self.blobs.quotas.admit_manifest(name, digest, len(data), examined.blobs, tags)
        if self.validate:
            await each(CHECKS_IN_FLIGHT, examined.blobs, lambda r: self._check_blob(name, r))
            await each(CHECKS_IN_FLIGHT, examined.children,
                       lambda r: self._check_child(name, r))
        await self.blobs.put(data, digest)
        await self.blobs.repositories.register(name, always=True)
        if not examined.declared:
            path = paths.revision_media_type(name, digest)
            await self.driver.put(path, info.media_type.encode())
        if time.monotonic() - started > self.uses.push_deadline:
            raise errors.Unavailable(
                f"the manifest push took over {self.uses.push_deadline:g}s (half the garbage "
                "collection grace period); nothing was published: push it again")
        new = await self.blobs.is_new(name, digest)
        await write_link(self.driver, paths.revision_link(name, digest), digest)
        self.links.forget(paths.revision_link(name, digest))
        if new:
            await self.blobs.count(name, digest, len(data))
        if info.subject is not None:
            await write_link(
                self.driver, paths.referrer_link(name, info.subject, digest), digest
            )
        await self._set_tags(name, list(tags), digest)
        self._cache(info)
        self._keep_content(digest, data)
        return info

    async def _set_tags(self, name: str, tags: list[str], digest: Digest) -> None:
        """The first tag alone (it may be the repository's first), the rest 16 at a time:
        a push may carry hundreds (`?tag=`), each a couple of writes."""
        if not tags:
            return
        await self.tags.set(name, tags[0], digest)
        await each(TAG_WRITES_IN_FLIGHT, tags[1:], lambda tag: self.tags.set(name, tag, digest))

    async def _check_blob(self, name: str, ref: Reference) -> None:
        if await self.blobs.linked(name, ref.digest):
            size = await self.blobs.size(ref.digest)
            if size is not None:
                ref.check_size(size)
                return
        if ref.at_urls:
            return  # fetched by clients from its urls; never uploaded
        if ref.media_type == mt.OCI_EMPTY and str(ref.digest) == mt.EMPTY_JSON_DIGEST:
            # The well-known `{}` config of artifacts: store it rather than refuse.
            await self.blobs.put(mt.EMPTY_JSON, ref.digest)
            await self.blobs.link(name, ref.digest)
            ref.check_size(len(mt.EMPTY_JSON))
            return
        raise errors.ManifestBlobUnknown(
            f"blob {ref.digest} is not in repository {name}",
            detail={"digest": str(ref.digest), "mediaType": ref.media_type},
        )

    async def _check_child(self, name: str, ref: Reference) -> None:
        if await self.exists(name, ref.digest):
            size = await self.blobs.size(ref.digest)
            if size is not None:
                ref.check_size(size)
                return
        raise errors.ManifestBlobUnknown(
            f"manifest {ref.digest} is not in repository {name}",
            detail={"digest": str(ref.digest), "mediaType": ref.media_type},
        )

    async def delete(self, name: str, reference: str) -> None:
        """Delete a tag (the manifest stays), or a manifest with its tags and referrer entry."""
        ref = tag_or_digest(reference)
        if isinstance(ref, str):
            if not is_valid_tag(ref):
                raise errors.ManifestUnknown(f"invalid tag {ref!r}", detail={"tag": ref})
            await self.tags.delete(name, ref)
            return
        if not await self.exists(name, ref):
            raise errors.ManifestUnknown(detail={"digest": reference})
        info, _ = await self._load(name, ref)
        tags = await self.tags.pointing_at(name, ref)
        for tag in tags:
            self.tags.check_delete(name, tag)  # (an immutable tag keeps its manifest)
        for tag in tags:
            await self.tags.forget(name, tag)
        await self.remove_revision(name, ref, info.subject)

    async def remove_revision(self, name: str, digest: Digest, subject: Digest | None) -> None:
        """Forget a manifest in a repository (its bytes stay until garbage collection)."""
        if subject is not None:
            await delete_link(self.driver, paths.referrer_link(name, subject, digest))
        await delete_link(self.driver, paths.revision_link(name, digest))
        self.links.forget(paths.revision_link(name, digest))
        await self.blobs.uncount(name, digest)

    # -- referrers ----------------------------------------------------------------

    async def referrers(
        self, name: str, subject: Digest, artifact_type: str | None = None
    ) -> list[ManifestInfo]:
        found = await list_digests(self.driver, paths.referrers(name, subject))

        async def describe(digest: Digest) -> ManifestInfo | None:
            if not await self.exists(name, digest):
                return None
            cached = self._info.get(digest)
            if cached is not None:
                return cached
            try:
                return (await self._load(name, digest))[0]
            except errors.ManifestUnknown:
                return None

        infos = await asyncio.gather(*(describe(d) for d in found))
        return [
            i for i in infos
            if i is not None and (artifact_type is None or i.artifact_type == artifact_type)
        ]
