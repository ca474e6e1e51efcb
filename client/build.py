"""Building an image from packed layers: config, manifest, history, optionally on a base.

With a base image the new layers go on top: the base's layer descriptors are reused as
they are (foreign layers keep their media type and `urls`), its config is extended
(diff_ids, history, environment, labels), and its blobs are mounted or copied by the push,
never downloaded into a local file.

`os_version` is the Windows version of the host the image is for: it selects the base
variant such a host runs (`client.platforms`), and the image records the base's exact
`os.version` (the version it really is); without a base it records `os_version` itself.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from . import command
from .command import Command
from .content import ManifestBytes
from .errors import ImageError, NotFoundError, UsageError
from .events import Events
from .image import ImageSource, read_config
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .oci.manifest import Manifest
from .pack import PackedLayer
from .platforms import (
    PlatformMatcher,
    WindowsVersion,
    check_os_version,
    select_image,
    windows_compatible,
)

ImageFormat = Literal["oci", "docker"]
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ImageSpec:
    os: str | None = None  # None: the base's, else linux
    architecture: str | None = None  # None: the base's, else amd64
    variant: str | None = None
    os_version: str | None = None  # the host's (Windows): selects the base; see above
    os_features: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: Command | None = None  # a tuple (exec form) or a ShellCommand
    cmd: Command | None = None
    labels: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    user: str | None = None
    format: ImageFormat | None = None  # None: the base's, else OCI
    created_by: str = "berth pack"
    source_date_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.os_version is not None:
            check_os_version(self.os_version)

    def platform(self) -> PlatformMatcher:
        """What to pick from a base index (Windows: by `os_version`, as a host would; an
        `os_version` alone implies Windows)."""
        os_name = self.os or ("windows" if self.os_version else "linux")
        return PlatformMatcher(os_name, self.architecture or "amd64", self.variant,
                               self.os_version)

    def created(self) -> str:
        epoch = self.source_date_epoch if self.source_date_epoch is not None else time.time()
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Base:
    """The image the new layers go on: its manifest, config and where its blobs live."""

    source: ImageSource
    manifest: Manifest
    config: dict[str, Any]


async def resolve_base(source: ImageSource, platform: PlatformMatcher,
                       events: Events | None = None) -> Base:
    """The base image for `platform` (an index is narrowed by the rule of `berth pull
    --platform`, and the entry chosen reported); a single image is taken as it is and
    checked by `build_config`."""
    selected = await select_image(source, None, events, index_default=platform,
                                  what="the base image")
    manifest = selected.manifest
    if manifest.config is None or manifest.is_index:
        raise ImageError("the base is not an image (no config)")
    config = selected.config or await read_config(source, manifest.config)
    return Base(source, manifest, config)


def _merge_env(old: list[str], new: tuple[str, ...]) -> list[str]:
    merged: dict[str, str] = {}
    for item in [*old, *new]:
        key = item.split("=", 1)[0]
        merged[key] = item
    return list(merged.values())


Warn = Callable[[str], None]


def build_config(spec: ImageSpec, layers: list[PackedLayer], base: Base | None,
                 warn: Warn | None = None) -> dict[str, Any]:
    if base is not None:
        config = copy.deepcopy(base.config)
        for key in ("os", "architecture"):
            wanted, has = getattr(spec, key), config.get(key)
            if has and wanted and has != wanted:
                raise UsageError(f"the base image is {key} {has}, not {wanted}")
        if spec.os_version and config.get("os") != "windows":
            raise UsageError(f"--os-version is a Windows host's version; the base image is "
                             f"{config.get('os')}")
        host = WindowsVersion.parse(spec.os_version)
        has_version = config.get("os.version")
        image = WindowsVersion.parse(has_version if isinstance(has_version, str) else None)
        if host is not None and image is not None and not windows_compatible(host, image):
            raise UsageError(f"the base image is os.version {has_version}, which a host of "
                             f"{spec.os_version} does not run")
        if spec.os_version and image is None:
            config["os.version"] = spec.os_version
    else:
        os_name = spec.os or ("windows" if spec.os_version else "linux")
        if spec.os_version and os_name != "windows":
            raise UsageError(f"--os-version is a Windows host's version, not for {os_name}")
        config = {"architecture": spec.architecture or "amd64", "os": os_name}
        if spec.variant:
            config["variant"] = spec.variant
        if spec.os_version:
            config["os.version"] = spec.os_version
    if spec.os_features:
        config["os.features"] = list(spec.os_features)
    created = spec.created()
    config["created"] = created
    runtime = config.setdefault("config", {})
    if spec.env:
        runtime["Env"] = _merge_env(runtime.get("Env") or [], spec.env)
    image_os = str(config.get("os") or "linux")
    for key, given in (("Entrypoint", spec.entrypoint), ("Cmd", spec.cmd)):
        argv, warning = command.resolve(given, image_os)
        if warning and warn is not None:
            warn(f"--{key.lower()}: {warning}")
        if argv is not None:
            runtime[key] = list(argv)
    if spec.labels:
        runtime["Labels"] = {**(runtime.get("Labels") or {}), **spec.labels}
    if spec.workdir is not None:
        runtime["WorkingDir"] = spec.workdir
    if spec.user is not None:
        runtime["User"] = spec.user
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), *(str(layer.diff_id) for layer in layers)]
    history = config.setdefault("history", [])
    history.extend({"created": created, "created_by": layer.history or spec.created_by}
                   for layer in layers)
    return config


def build_manifest(config: bytes, layers: list[PackedLayer], base: Base | None,
                   image_format: ImageFormat) -> ManifestBytes:
    docker = image_format == "docker"
    if docker and any(layer.media_type == mt.OCI_LAYER_ZSTD for layer in layers):
        raise UsageError("Docker schema 2 has no zstd layers: use --format oci or gzip")
    base_layers = [d.to_json() for d in base.manifest.layers] if base else []
    new_layers = []
    for layer in layers:
        media_type = layer.media_type
        if docker:
            media_type = mt.DOCKER_LAYER if media_type.endswith("gzip") else mt.DOCKER_LAYER_TAR
        new_layers.append({"mediaType": media_type, "digest": str(layer.digest),
                           "size": layer.size})
    media_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                   "digest": str(Digest.from_bytes(config)), "size": len(config)},
        "layers": [*base_layers, *new_layers],
    }
    data = json.dumps(doc, indent=2).encode()
    return ManifestBytes(data, media_type, Digest.from_bytes(data))


class BuiltImage(ImageSource):
    """A freshly built image as a copy source: config and manifest in memory, new layers
    from their packed files, base layers from the base's own source (mountable)."""

    def __init__(self, manifest: ManifestBytes, config: bytes, layers: list[PackedLayer],
                 base: Base | None) -> None:
        self.built = manifest
        self.config = config
        self.files = {layer.digest: layer.path for layer in layers}
        self.base = base

    @classmethod
    def build(cls, spec: ImageSpec, layers: list[PackedLayer], base: Base | None,
              warn: Warn | None = None) -> BuiltImage:
        base_format: ImageFormat | None = None
        if base is not None:
            base_format = "docker" if base.manifest.media_type == mt.DOCKER_MANIFEST else "oci"
        image_format = spec.format or base_format or "oci"
        config = json.dumps(build_config(spec, layers, base, warn), indent=2).encode()
        return cls(build_manifest(config, layers, base, image_format), config, layers, base)

    def local_file(self, desc: Descriptor) -> Path | None:
        return self.files.get(desc.digest)

    def origin(self, desc: Descriptor) -> tuple[str, str] | None:
        if self.base is not None and desc.digest not in self.files:
            return self.base.source.origin(desc)
        return None

    async def root(self) -> ManifestBytes:
        return self.built

    async def manifest(self, digest: Digest) -> ManifestBytes:
        raise NotFoundError(f"a built image has no child manifest {digest}")

    async def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        if desc.digest == self.built.descriptor().digest:
            yield self.built.data[offset:]
        elif str(desc.digest) == str(Digest.from_bytes(self.config)):
            yield self.config[offset:]
        elif desc.digest in self.files:
            async for chunk in _read_file(self.files[desc.digest], offset):
                yield chunk
        elif self.base is not None:
            async for chunk in self.base.source.blob(desc, offset):
                yield chunk
        else:
            raise NotFoundError(f"blob {desc.digest} is not part of the built image")

    async def close(self) -> None:
        if self.base is not None:
            await self.base.source.close()


async def _read_file(path: Path, offset: int) -> AsyncIterator[bytes]:
    fd = await asyncio.to_thread(os.open, path, os.O_RDONLY)
    try:
        position = offset
        while chunk := await asyncio.to_thread(os.pread, fd, _CHUNK, position):
            position += len(chunk)
            yield chunk
    finally:
        os.close(fd)
