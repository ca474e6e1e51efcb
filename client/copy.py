"""The copy engine behind push, pull and copy: blobs first (in parallel, skipping what the
destination has, mounting within a registry), manifests last, children before indexes.
Byte-for-byte: manifests are stored as fetched unless foreign layers are converted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

from .content import ManifestBytes, verified
from .errors import UsageError
from .events import BlobAction, Events
from .foreign import distributable_type, foreign_blob
from .image import ImageDestination, ImageSource, manifest_of
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .oci.jsondoc import loads_object
from .oci.manifest import Manifest
from .platforms import PlatformMatcher, platform_text, select_image

ForeignMode = Literal["keep", "include", "convert"]


@dataclass(frozen=True)
class CopyOptions:
    foreign: ForeignMode = "keep"
    platform: PlatformMatcher | None = None  # None: every platform of an index
    concurrency: int = 4


@dataclass
class CopyResult:
    digest: str
    media_type: str
    size: int
    blobs: dict[str, BlobAction] = field(default_factory=dict)
    manifests: list[str] = field(default_factory=list)
    platform: str | None = None  # the index entry --platform chose, if one was


class _Copier:
    def __init__(self, src: ImageSource, dst: ImageDestination, options: CopyOptions,
                 events: Events) -> None:
        self.src, self.dst, self.options, self.events = src, dst, options, events
        self.semaphore = asyncio.Semaphore(max(1, options.concurrency))
        self.result: CopyResult | None = None
        self.blob_actions: dict[str, BlobAction] = {}
        self.manifests: list[str] = []
        self._in_flight: dict[str, asyncio.Task[BlobAction]] = {}
        self.platform: str | None = None

    async def cancel(self) -> None:
        pending = [t for t in self._in_flight.values() if not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def run(self) -> CopyResult:
        if self.options.platform is not None:
            selected = await select_image(self.src, self.options.platform, self.events)
            root = selected.fetched
            if selected.platform is not None:
                self.platform = platform_text(selected.platform)
        else:
            root = await self.src.root()
            if root.media_type in mt.INDEXES and not self.dst.accepts_index:
                raise UsageError("the source is a multi-platform index and the destination "
                                 "holds one image: choose one with --platform OS/ARCH[/VARIANT]")
        desc = await self._copy(root, root=True)
        return CopyResult(str(desc.digest), desc.media_type, desc.size, self.blob_actions,
                          self.manifests, self.platform)

    async def _copy(self, fetched: ManifestBytes, root: bool) -> Descriptor:
        manifest = manifest_of(fetched)
        data = fetched.data
        if manifest.is_index:
            children = await asyncio.gather(*(self._child(d) for d in manifest.manifests))
            if any(new != old for new, old in zip(children, manifest.manifests, strict=True)):
                data = _rewrite_index(fetched.data, children)
        else:
            data = await self._image(manifest)
        if data is not fetched.data:
            fetched = ManifestBytes(data, fetched.media_type,
                                    type(fetched.digest).from_bytes(data))
        desc = fetched.descriptor()
        if root or not await self.dst.has_manifest(desc):
            await self.dst.put_manifest(fetched, root)
        self.manifests.append(str(desc.digest))
        self.events.manifest_done(desc, root)
        return desc

    async def _child(self, desc: Descriptor) -> Descriptor:
        child = await self.src.manifest(desc.digest)
        copied = await self._copy(child, root=False)
        if copied.digest == desc.digest:
            return desc
        return Descriptor(desc.media_type, copied.digest, copied.size, desc.urls,
                          desc.annotations, desc.artifact_type, desc.platform)

    async def _image(self, manifest: Manifest) -> bytes:
        convert = self.options.foreign == "convert" and any(d.foreign for d in manifest.layers)
        await asyncio.gather(*(self._blob(d) for d in manifest.blobs()))
        if not convert:
            return manifest.data
        doc = loads_object(manifest.data, "manifest")
        for layer in doc.get("layers", []):
            if mt.is_foreign(layer.get("mediaType", "")):
                layer["mediaType"] = distributable_type(layer["mediaType"])
                layer.pop("urls", None)
        return json.dumps(doc, indent=3).encode()

    async def _blob(self, desc: Descriptor) -> None:
        key = str(desc.digest)
        task = self._in_flight.get(key)
        if task is None:  # one transfer per digest, however many manifests share it
            task = self._in_flight[key] = asyncio.ensure_future(self._transfer(desc))
        action = await task
        self.blob_actions.setdefault(key, action)

    async def _transfer(self, desc: Descriptor) -> BlobAction:
        foreign = desc.foreign and bool(desc.urls)
        if foreign and self.options.foreign == "keep":
            if await self.src.holds(desc):
                self.events.warning(
                    f"foreign layer {desc.digest.hex[:12]} is in the source but stays a "
                    "reference (not copied): --include-foreign copies it")
            self.events.blob_done(desc, "foreign")
            return "foreign"
        async with self.semaphore:
            if await self.dst.has_blob(desc):
                self.events.blob_done(desc, "exists")
                return "exists"
            origin, target = self.src.origin(desc), self.dst.registry_repository
            if origin and target and origin[0] == target[0] and origin != target and (
                await self.dst.mount(desc, origin[1])
            ):
                self.events.blob_done(desc, "mounted")
                return "mounted"
            self.events.blob_started(desc)
            local = self.src.local_file(desc)
            if local is not None and await self.dst.put_file(desc, local):
                self.events.blob_done(desc, "uploaded")
                return "uploaded"

            def progress(done: int) -> None:
                self.events.blob_progress(desc, done)

            opener = self._opener(desc, foreign)
            await self.dst.put_blob(desc, opener, progress)
            action: BlobAction = (
                "uploaded" if not foreign else
                "converted" if self.options.foreign == "convert" else "uploaded"
            )
            self.events.blob_done(desc, action)
            return action

    def _opener(self, desc: Descriptor, foreign: bool) -> Callable[[int], AsyncIterator[bytes]]:
        def open_at(offset: int) -> AsyncIterator[bytes]:
            stream = foreign_blob(self.src, desc, offset) if foreign else self.src.blob(
                desc, offset)
            # whole reads are verified here; resumed ones by the destination's digest check
            return verified(desc, stream) if offset == 0 else stream

        return open_at


async def copy_image(
    src: ImageSource, dst: ImageDestination, options: CopyOptions | None = None,
    events: Events | None = None,
) -> CopyResult:
    copier = _Copier(src, dst, options or CopyOptions(), events or Events())
    try:
        result = await copier.run()
    finally:
        await copier.cancel()  # after a failure, no transfer outlives the copy
    await dst.commit()
    return result


def _rewrite_index(data: bytes, children: list[Descriptor]) -> bytes:
    doc = loads_object(data, "index")
    for entry, child in zip(doc["manifests"], children, strict=True):
        entry["digest"], entry["size"] = str(child.digest), child.size
    return json.dumps(doc, indent=3).encode()

