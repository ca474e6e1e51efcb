"""Pulling an image into a directory: the root filesystem its layers make, in order.

Each layer is downloaded to a scratch file with its digest and size verified, then applied
in a worker thread while the next layer downloads; unverified bytes are never unpacked.
Foreign layers are part of the filesystem, so they are fetched too (source, then urls).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import BerthError, NotFoundError
from .events import Events
from .foreign import foreign_blob
from .image import ImageSource
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .oci.manifest import parse_manifest
from .platforms import PlatformMatcher
from .remote import verified
from .unpack import LayerStats, UnpackError, apply_layer


@dataclass
class UnpackResult:
    digest: str
    os: str
    layers: int
    stats: LayerStats


async def _download(source: ImageSource, desc: Descriptor, path: Path,
                    events: Events) -> None:
    stream = foreign_blob(source, desc) if desc.foreign and desc.urls else source.blob(desc)
    events.blob_started(desc)
    fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        async for chunk in verified(desc, stream, lambda done: events.blob_progress(desc, done)):
            await asyncio.to_thread(os.write, fd, chunk)
    finally:
        os.close(fd)
    events.blob_done(desc, "uploaded" if not desc.foreign else "foreign")


async def unpack_image(source: ImageSource, target: Path,
                       platform: PlatformMatcher | None = None,
                       events: Events | None = None) -> UnpackResult:
    events = events or Events()
    fetched = await source.root()
    manifest = parse_manifest(fetched.data, fetched.media_type)
    while manifest.is_index:
        choice = (platform or PlatformMatcher("linux", "amd64")).select(manifest.manifests)
        if choice is None:
            raise NotFoundError(f"no image for {platform or 'linux/amd64'} in the index "
                                "(choose one with --platform)")
        fetched = await source.manifest(choice.digest)
        manifest = parse_manifest(fetched.data, fetched.media_type)
    if manifest.config is None or manifest.config.media_type not in (mt.OCI_CONFIG,
                                                                      mt.DOCKER_CONFIG):
        raise BerthError("not a container image (an artifact?): nothing to unpack")
    config_bytes = b"".join([c async for c in verified(manifest.config,
                                                        source.blob(manifest.config))])
    config = json.loads(config_bytes)
    windows = config.get("os") == "windows"
    total = LayerStats()
    await asyncio.to_thread(target.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="berth-pull-") as scratch:
        files = [Path(scratch) / f"layer-{n}" for n in range(len(manifest.layers))]
        downloads = [asyncio.ensure_future(_download(source, desc, path, events))
                     for desc, path in zip(manifest.layers[:1], files, strict=False)]
        try:
            for number, (desc, path) in enumerate(zip(manifest.layers, files, strict=True)):
                await downloads[number]
                if number + 1 < len(manifest.layers):  # the next one downloads meanwhile
                    downloads.append(asyncio.ensure_future(_download(
                        source, manifest.layers[number + 1], files[number + 1], events)))
                try:
                    total += await asyncio.to_thread(_apply, path, target, desc.media_type,
                                                     windows)
                except UnpackError as exc:
                    raise UnpackError(f"layer {number + 1} ({desc.digest}): {exc}") from None
                await asyncio.to_thread(path.unlink)
        finally:
            for task in downloads:
                if not task.done():
                    task.cancel()
            await asyncio.gather(*downloads, return_exceptions=True)
    return UnpackResult(str(fetched.digest), config.get("os", "?"), len(manifest.layers),
                        total)


def _apply(path: Path, target: Path, media_type: str, windows: bool) -> LayerStats:
    with open(path, "rb") as stream:
        return apply_layer(stream, target, media_type, windows=windows)
