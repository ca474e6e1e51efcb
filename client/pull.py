"""Pulling an image into a directory: the root filesystem its layers make, in order.

Each layer is downloaded to a scratch file with its digest and size verified, then applied
in a worker thread while the next layer downloads; unverified bytes are never unpacked.
Foreign layers are part of the filesystem, so they are fetched too (source, then urls).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .content import verified
from .errors import BerthError, UnpackError
from .events import Events
from .foreign import foreign_blob
from .image import ImageSource, read_config
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .platforms import PlatformMatcher, host_architecture, platform_text, select_image
from .unpack import LayerStats, apply_layer


@dataclass
class UnpackResult:
    digest: str
    os: str
    layers: int
    stats: LayerStats
    platform: str | None = None  # the index entry chosen, if the source was an index


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
    events.blob_done(desc, "uploaded")  # fetched, foreign or not: it is part of the tree


async def unpack_image(source: ImageSource, target: Path,
                       platform: PlatformMatcher | None = None,
                       events: Events | None = None) -> UnpackResult:
    """Without `platform`, an index unpacks its linux/<host arch> image; with it, the
    image must be for that platform (an index entry or a single image)."""
    events = events or Events()
    selected = await select_image(source, platform, events,
                                  index_default=PlatformMatcher("linux", host_architecture()))
    fetched, manifest = selected.fetched, selected.manifest
    if manifest.config is None or manifest.config.media_type not in mt.IMAGE_CONFIGS:
        raise BerthError("not a container image (an artifact?): nothing to unpack")
    config = selected.config or await read_config(source, manifest.config)
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
    chosen = platform_text(selected.platform) if selected.platform else None
    return UnpackResult(str(fetched.digest), str(config.get("os", "?")), len(manifest.layers),
                        total, chosen)


def _apply(path: Path, target: Path, media_type: str, windows: bool) -> LayerStats:
    with open(path, "rb") as stream:
        return apply_layer(stream, target, media_type, windows=windows)
