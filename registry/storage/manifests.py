"""Manifests: validation, revisions, tag updates and the referrers index.

Manifest bytes are stored as blobs, exactly as pushed; a repository holds a revision
link per manifest digest. Metadata parsed from a manifest (media type, artifact type,
subject) depends only on its digest, so it is cached per process without invalidation.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from client.oci import mediatypes as mt
from client.oci.descriptor import Descriptor
from client.oci.digest import CANONICAL, Digest, DigestError
from client.oci.manifest import Manifest, ManifestError, parse_manifest
from client.oci.reference import is_valid_tag

from .. import errors
from . import paths
from .blobs import BlobStore
from .drivers.base import PathNotFoundError, StorageDriver
from .links import delete_link, link_exists, list_digests, write_link
from .tags import TagStore

_INFO_CACHE = 16384
TAG_WRITES_IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    digest: Digest
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Digest | None = None

    @classmethod
    def of(cls, manifest: Manifest, digest: Digest) -> ManifestInfo:
        return cls(
            digest, manifest.media_type, len(manifest.data), manifest.effective_artifact_type(),
            manifest.annotations, manifest.subject.digest if manifest.subject else None,
        )

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type, "digest": str(self.digest), "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


class UrlPolicy:
    """Which `urls` a manifest may carry: http(s), no fragment, matching an `allow`
    expression (any URL when there are none) and no `deny` expression (searched, as
    distribution's Go regexps are, not anchored)."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = [re.compile(p) for p in allow]
        self.deny = [re.compile(p) for p in deny]

    def refusal(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "only http and https URLs are allowed"
        if parts.fragment or url.endswith("#"):
            return "URLs must not have a fragment"
        if self.allow and not any(p.search(url) for p in self.allow):
            return "URL does not match validation.manifests.urls.allow"
        if any(p.search(url) for p in self.deny):
            return "URL matches validation.manifests.urls.deny"
        return None


def parse_reference(reference: str) -> Digest | str:
    """A manifest reference is a digest (has ':') or a tag."""
    if ":" in reference:
        try:
            return Digest.parse(reference)
        except DigestError as exc:
            raise errors.DigestInvalid(str(exc), detail={"reference": reference}) from None
    return reference


class ManifestStore:
    def __init__(
        self, driver: StorageDriver, blobs: BlobStore, tags: TagStore, url_policy: UrlPolicy,
        max_bytes: int, validate: bool = True,
    ) -> None:
        self.driver, self.blobs, self.tags = driver, blobs, tags
        self.url_policy = url_policy
        self.max_bytes = max_bytes
        self.validate = validate
        self._info: OrderedDict[Digest, ManifestInfo] = OrderedDict()

    # -- reading ------------------------------------------------------------------

    async def exists(self, name: str, digest: Digest) -> bool:
        return await link_exists(self.driver, paths.revision_link(name, digest))

    async def resolve(self, name: str, reference: str) -> Digest:
        ref = parse_reference(reference)
        if isinstance(ref, Digest):
            if not await self.exists(name, ref):
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
        return await self._load(name, digest)

    async def _load(self, name: str, digest: Digest) -> tuple[ManifestInfo, bytes]:
        try:
            data = await self.blobs.read(digest)
        except PathNotFoundError:
            raise errors.ManifestUnknown(detail={"digest": str(digest)}) from None
        info = self._info.get(digest)
        if info is None:
            try:
                manifest = parse_manifest(data)
                if not manifest.declared:
                    pushed = await self._pushed_type(name, digest)
                    if pushed is not None:
                        manifest = parse_manifest(data, pushed)
                info = ManifestInfo.of(manifest, digest)
            except ManifestError:
                # Stored by something else (e.g. a schema 1 manifest): serve it as JSON.
                info = ManifestInfo(digest, "application/json", len(data))
            self._cache(info)
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

    # -- writing ------------------------------------------------------------------

    async def put(
        self, name: str, reference: str, data: bytes, content_type: str | None,
        extra_tags: Iterable[str] = (),
    ) -> ManifestInfo:
        if len(data) > self.max_bytes:
            raise errors.ManifestTooLarge(detail={"limit": self.max_bytes, "size": len(data)})
        ref = parse_reference(reference)
        tags = [ref] if isinstance(ref, str) else []
        tags.extend(t for t in extra_tags if t not in tags)
        for tag in tags:
            if not is_valid_tag(tag):
                raise errors.ManifestInvalid(f"invalid tag {tag!r}", detail={"tag": tag})
        try:
            manifest = parse_manifest(data, content_type)
        except ManifestError as exc:
            raise errors.ManifestInvalid(str(exc)) from None
        digest = Digest.from_bytes(data, ref.algorithm if isinstance(ref, Digest) else CANONICAL)
        if isinstance(ref, Digest) and digest != ref:
            raise errors.DigestInvalid(
                "manifest digest does not match the reference",
                detail={"expected": str(ref), "actual": str(digest)},
            )
        if self.validate:
            await self._check_references(name, manifest)
        await self.blobs.put(data, digest)
        await self.blobs.repositories.register(name, always=True)
        if not manifest.declared:
            path = paths.revision_media_type(name, digest)
            await self.driver.put(path, manifest.media_type.encode())
        await write_link(self.driver, paths.revision_link(name, digest), digest)
        if manifest.subject is not None:
            await write_link(
                self.driver, paths.referrer_link(name, manifest.subject.digest, digest), digest
            )
        await self._set_tags(name, list(tags), digest)
        info = ManifestInfo.of(manifest, digest)
        self._cache(info)
        return info

    async def _set_tags(self, name: str, tags: list[str], digest: Digest) -> None:
        """The first tag alone (it may be the repository's first), the rest 16 at a time:
        a push may carry hundreds (`?tag=`), each a couple of writes."""
        if not tags:
            return
        await self.tags.set(name, tags[0], digest)
        gate = asyncio.Semaphore(TAG_WRITES_IN_FLIGHT)

        async def one(tag: str) -> None:
            async with gate:
                await self.tags.set(name, tag, digest)

        await asyncio.gather(*(one(tag) for tag in tags[1:]))

    async def _check_references(self, name: str, manifest: Manifest) -> None:
        for desc in (*manifest.blobs(), *manifest.manifests):
            for url in desc.urls:
                reason = self.url_policy.refusal(url)
                if reason is not None:
                    raise errors.ManifestInvalid(
                        f"layer {desc.digest}: {reason}", detail={"url": url, "reason": reason}
                    )
        checks = [self._check_blob(name, d) for d in manifest.blobs()]
        checks += [self._check_child(name, d) for d in manifest.manifests]
        await asyncio.gather(*checks)

    async def _check_blob(self, name: str, desc: Descriptor) -> None:
        if await self.blobs.linked(name, desc.digest):
            size = await self.blobs.size(desc.digest)
            if size is not None:
                _check_size(desc, size)
                return
        if desc.foreign and desc.urls:
            return  # fetched by clients from its urls; never uploaded
        if desc.media_type == mt.OCI_EMPTY and str(desc.digest) == mt.EMPTY_JSON_DIGEST:
            # The well-known `{}` config of artifacts: store it rather than refuse.
            await self.blobs.put(mt.EMPTY_JSON, desc.digest)
            await self.blobs.link(name, desc.digest)
            _check_size(desc, len(mt.EMPTY_JSON))
            return
        raise errors.ManifestBlobUnknown(
            f"blob {desc.digest} is not in repository {name}",
            detail={"digest": str(desc.digest), "mediaType": desc.media_type},
        )

    async def _check_child(self, name: str, desc: Descriptor) -> None:
        if await self.exists(name, desc.digest):
            size = await self.blobs.size(desc.digest)
            if size is not None:
                _check_size(desc, size)
                return
        raise errors.ManifestBlobUnknown(
            f"manifest {desc.digest} is not in repository {name}",
            detail={"digest": str(desc.digest), "mediaType": desc.media_type},
        )

    async def delete(self, name: str, reference: str) -> None:
        """Delete a tag (the manifest stays), or a manifest with its tags and referrer entry."""
        ref = parse_reference(reference)
        if isinstance(ref, str):
            if not is_valid_tag(ref):
                raise errors.ManifestUnknown(f"invalid tag {ref!r}", detail={"tag": ref})
            await self.tags.delete(name, ref)
            return
        if not await self.exists(name, ref):
            raise errors.ManifestUnknown(detail={"digest": reference})
        info, _ = await self._load(name, ref)
        for tag in await self.tags.pointing_at(name, ref):
            await self.tags.forget(name, tag)
        await self.remove_revision(name, ref, info.subject)

    async def remove_revision(self, name: str, digest: Digest, subject: Digest | None) -> None:
        """Forget a manifest in a repository (its bytes stay until garbage collection)."""
        if subject is not None:
            await delete_link(self.driver, paths.referrer_link(name, subject, digest))
        await delete_link(self.driver, paths.revision_link(name, digest))

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


def _check_size(desc: Descriptor, size: int) -> None:
    if desc.size != size:
        raise errors.ManifestInvalid(
            f"descriptor {desc.digest} says size {desc.size}, the content has {size}",
            detail={"digest": str(desc.digest), "size": desc.size, "actual": size},
        )
