"""Reading a `docker save` archive (the format: `archive`) in place, as an image source.

Reading never extracts: the tar headers are indexed once (tarfile seeks over member data)
and blobs are streamed from their members' offsets. The image is presented as a Docker
schema 2 manifest whose config is the config file and whose layers are the layer files as
they are (their digests computed by one streaming pass; media type sniffed:
`...rootfs.diff.tar`, `.tar.gzip` or `.tar.zstd`). Layers named in `LayerSources` with a
foreign media type keep that descriptor (digest, size, urls); their bytes are served only
if the archive holds exactly them, otherwise `blob()` raises NotFoundError so the copy
engine fetches them from their urls.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..compression import GZIP, SNIFF_LENGTH, TAR, ZSTD, BlobFormat, sniff
from ..content import ManifestBytes
from ..errors import BerthError, NotFoundError, UsageError
from ..image import ImageSource
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, DescriptorError
from ..oci.digest import Digest, new_hasher
from ..oci.reference import InvalidReferenceError, Reference
from .archive import JSON_LIMIT, MANIFEST_JSON, config_diff_ids, json_document, tag_of

CHUNK = 1024 * 1024  # at least SNIFF_LENGTH: a layer's first chunk is sniffed
# A layer file's media type by what its bytes are (an old-style tar shows no magic).
_LAYER_TYPES: dict[BlobFormat | None, str] = {
    None: mt.DOCKER_LAYER_TAR, TAR: mt.DOCKER_LAYER_TAR, GZIP: mt.DOCKER_LAYER,
    ZSTD: mt.DOCKER_LAYER_ZSTD,
}


def _clean(name: str) -> str:
    cleaned = posixpath.normpath(name).lstrip("/")
    return "" if cleaned == "." else cleaned


def _normalised(repo_tag: str) -> str | None:
    try:
        ref = Reference.parse(repo_tag)
    except InvalidReferenceError:
        return None
    return None if ref.digest else f"{ref.registry}/{ref.repository}:{ref.tag}"


@dataclass(frozen=True, slots=True)
class _Member:
    name: str
    offset: int  # of the data, in the archive file
    size: int


@dataclass(frozen=True, slots=True)
class _Item:
    """One entry of manifest.json, checked."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]
    layer_sources: dict[str, Any]


class _Archive:
    """The tar's member headers by name; contents are read by offset, never extracted."""

    def __init__(self, path: Path, members: dict[str, tarfile.TarInfo], size: int) -> None:
        self.path, self.members, self.size = path, members, size

    @classmethod
    def index(cls, path: Path) -> _Archive:
        try:
            fobj = open(path, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{path} is a directory, not a docker-archive file") from None
        except OSError as exc:
            raise BerthError(f"{path}: {exc.strerror or exc}") from None
        with fobj:
            size = os.fstat(fobj.fileno()).st_size
            kind = sniff(fobj.read(SNIFF_LENGTH))
            if kind not in (None, TAR):
                raise BerthError(f"{path} is {kind}-compressed: decompress it first "
                                 "(a docker-archive is read in place)")
            fobj.seek(0)
            members: dict[str, tarfile.TarInfo] = {}
            try:
                with tarfile.open(fileobj=fobj, mode="r:") as tar:
                    for info in tar:  # headers only: tarfile seeks over member data
                        members[_clean(info.name)] = info
            except tarfile.TarError as exc:
                raise BerthError(f"{path}: not a tar archive ({exc})") from None
        return cls(path, members, size)

    def resolve(self, name: str) -> _Member | None:
        """A regular file by name, following symlinks (relative to their directory, as
        `docker save` writes `<id>/layer.tar -> ../<hex>.tar`) and hard links."""
        current = _clean(name)
        for _ in range(16):
            info = self.members.get(current)
            if info is None:
                return None
            if info.issym():
                current = _clean(posixpath.join(posixpath.dirname(current), info.linkname))
            elif info.islnk():
                current = _clean(info.linkname)
            elif info.isreg():
                if info.offset_data + info.size > self.size:
                    raise BerthError(f"{self.path}: {current} is cut short (truncated archive)")
                return _Member(current, info.offset_data, info.size)
            else:
                raise BerthError(f"{self.path}: {name} is not a regular file")
        raise BerthError(f"{self.path}: {name}: too many levels of links")

    def require(self, name: str, what: str) -> _Member:
        member = self.resolve(name)
        if member is None:
            raise BerthError(f"{self.path}: {what} {name!r} is not in the archive")
        return member

    def read(self, member: _Member, limit: int = JSON_LIMIT) -> bytes:
        if member.size > limit:
            raise BerthError(f"{self.path}: {member.name} is {member.size} bytes, over the "
                             f"{limit}-byte limit")
        with open(self.path, "rb") as fobj:
            data = os.pread(fobj.fileno(), member.size, member.offset)
        if len(data) != member.size:
            raise BerthError(f"{self.path}: {member.name} is cut short (truncated archive)")
        return data

    def digest(self, member: _Member) -> tuple[Digest, BlobFormat | None]:
        """The member's sha256 and what its bytes are (`sniff`), in one streaming pass."""
        hasher = new_hasher()
        kind: BlobFormat | None = None
        with open(self.path, "rb") as fobj:
            fobj.seek(member.offset)
            left = member.size
            while left:
                chunk = fobj.read(min(CHUNK, left))
                if not chunk:
                    raise BerthError(f"{self.path}: {member.name} is cut short "
                                     "(truncated archive)")
                if left == member.size:
                    kind = sniff(chunk)  # CHUNK >= SNIFF_LENGTH
                hasher.update(chunk)
                left -= len(chunk)
        return Digest.from_hasher("sha256", hasher), kind


def _items(data: bytes, path: Path) -> list[_Item]:
    where = f"{path}: {MANIFEST_JSON}"
    doc = json_document(data, where)
    if not isinstance(doc, list):
        raise BerthError(f"{where}: not a list of images")
    items: list[_Item] = []
    for n, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise BerthError(f"{where}: entry {n} is not an object")
        config, layers = entry.get("Config"), entry.get("Layers")
        tags = entry.get("RepoTags") or []
        sources = entry.get("LayerSources") or {}
        if not isinstance(config, str) or not config:
            raise BerthError(f"{where}: entry {n} has no 'Config' path")
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise BerthError(f"{where}: entry {n}: 'Layers' must be a list of paths")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise BerthError(f"{where}: entry {n}: 'RepoTags' must be a list of strings")
        if not isinstance(sources, dict):
            raise BerthError(f"{where}: entry {n}: 'LayerSources' must be an object")
        items.append(_Item(config, tuple(tags), tuple(layers), sources))
    return items


def _choose(items: list[_Item], ref: str | None, path: Path) -> _Item:
    """The image `ref` names: `@N` (its position), `NAME:TAG` (any spelling that
    normalises the same, e.g. `busybox:1` = `docker.io/library/busybox:1`) or a bare TAG;
    with no ref, the archive's only image."""
    if ref is None:
        if len(items) != 1:
            raise UsageError(f"{path} holds {len(items)} images: name one as "
                             "docker-archive:FILE:NAME:TAG (or :@N)")
        return items[0]
    if ref.startswith("@") and ref[1:].isdigit():
        if int(ref[1:]) >= len(items):
            raise NotFoundError(f"{path}: no image {ref} (it holds {len(items)})")
        return items[int(ref[1:])]
    if ":" in ref or "/" in ref:
        want = _normalised(ref)
        if want is None:
            raise UsageError(f"docker-archive: invalid image reference {ref!r}")
        matches = [i for i in items if any(_normalised(t) == want for t in i.repo_tags)]
    else:
        matches = [i for i in items if any(tag_of(t) == ref for t in i.repo_tags)]
    if not matches:
        known = sorted({t for i in items for t in i.repo_tags})
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise NotFoundError(f"{path}: no image tagged {ref!r} (has: {shown or 'no tags'})")
    if len(matches) > 1:
        raise UsageError(f"{path}: {len(matches)} images are tagged {ref!r}: "
                         "name one as NAME:TAG")
    return matches[0]


class ArchiveSource(ImageSource):
    """One image of a `docker save` archive, as a Docker schema 2 manifest."""

    def __init__(self, archive: _Archive, item: _Item, config: bytes,
                 diff_ids: list[Digest]) -> None:
        self.path = archive.path
        self.archive, self.item, self.config, self.diff_ids = archive, item, config, diff_ids
        self.config_digest = Digest.from_bytes(config)
        self._lock = asyncio.Lock()
        self._root: ManifestBytes | None = None
        self._layers: dict[Digest, _Member] = {}
        self._foreign: dict[Digest, _Member | None] = {}  # foreign descriptor -> its file
        self._foreign_checked: dict[Digest, bool] = {}

    @classmethod
    async def open(cls, path: str, tag: str | None) -> ArchiveSource:
        return await asyncio.to_thread(cls._open, Path(path), tag)

    @classmethod
    def _open(cls, path: Path, tag: str | None) -> ArchiveSource:
        archive = _Archive.index(path)
        manifest = archive.resolve(MANIFEST_JSON)
        if manifest is None:
            raise BerthError(f"{path}: no {MANIFEST_JSON} (not a docker save archive)")
        item = _choose(_items(archive.read(manifest), path), tag, path)
        config = archive.read(archive.require(item.config, "config"))
        diff_ids = config_diff_ids(config, f"{path}: {item.config}")
        if len(diff_ids) != len(item.layers):
            raise BerthError(f"{path}: {MANIFEST_JSON} lists {len(item.layers)} layers, its "
                             f"config {len(diff_ids)} diff_ids")
        return cls(archive, item, config, diff_ids)

    @property
    def repo_tags(self) -> tuple[str, ...]:
        return self.item.repo_tags

    async def root(self) -> ManifestBytes:
        async with self._lock:
            if self._root is None:
                self._root = await self._build()
            return self._root

    async def _build(self) -> ManifestBytes:
        foreign: dict[int, Descriptor] = {}
        for n, diff_id in enumerate(self.diff_ids):
            source = self.item.layer_sources.get(str(diff_id))
            if source is None:
                continue
            try:
                desc = Descriptor.from_json(source, f"LayerSources[{diff_id}]")
            except DescriptorError as exc:
                raise BerthError(f"{self.path}: {MANIFEST_JSON}: {exc}") from None
            # docker 25+ lists ordinary layers here too (uncompressed types): only foreign
            # ones replace the file (as go-containerregistry's tarball reader does)
            if desc.foreign:
                foreign[n] = desc
                self._foreign[desc.digest] = self.archive.resolve(self.item.layers[n])
        members = {n: self.archive.require(p, "layer")
                   for n, p in enumerate(self.item.layers) if n not in foreign}
        unique = {m.name: m for m in members.values()}
        sums = await asyncio.gather(*(asyncio.to_thread(self.archive.digest, m)
                                      for m in unique.values()))
        summed = dict(zip(unique, sums, strict=True))
        layers: list[dict[str, Any]] = []
        for n, diff_id in enumerate(self.diff_ids):
            if n in foreign:
                layers.append(foreign[n].to_json())
                continue
            member = members[n]
            digest, kind = summed[member.name]
            if kind not in _LAYER_TYPES:
                raise BerthError(f"{self.path}: layer {member.name} is {kind}-compressed, "
                                 "which no registry media type describes")
            if kind in (None, TAR) and digest != diff_id:
                raise BerthError(f"{self.path}: layer {member.name} is {digest}, its config "
                                 f"says {diff_id}")
            self._layers[digest] = member
            layers.append(Descriptor(_LAYER_TYPES[kind], digest, member.size).to_json())
        doc = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": Descriptor(mt.DOCKER_CONFIG, self.config_digest, len(self.config))
            .to_json(),
            "layers": layers,
        }
        data = json.dumps(doc, indent=3).encode()
        return ManifestBytes(data, mt.DOCKER_MANIFEST, Digest.from_bytes(data))

    async def manifest(self, digest: Digest) -> ManifestBytes:
        raise NotFoundError(f"{self.path}: a docker-archive holds no manifest {digest}")

    async def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        await self.root()
        if desc.digest == self.config_digest:
            if offset < len(self.config):
                yield self.config[offset:]
            return
        member = self._layers.get(desc.digest) or await self._foreign_member(desc)
        if member is None:
            raise NotFoundError(f"{self.path}: blob {desc.digest} is not in the archive")
        fobj: BinaryIO = await asyncio.to_thread(open, self.path, "rb")
        try:
            await asyncio.to_thread(fobj.seek, member.offset + offset)
            left = member.size - offset
            while left > 0:
                chunk = await asyncio.to_thread(fobj.read, min(CHUNK, left))
                if not chunk:
                    raise BerthError(f"{self.path}: {member.name} is cut short")
                left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fobj.close)

    async def holds(self, desc: Descriptor) -> bool:
        await self.root()
        return desc.digest in self._layers or await self._foreign_member(desc) is not None

    async def _foreign_member(self, desc: Descriptor) -> _Member | None:
        """A foreign layer's file, when it holds exactly the foreign blob (go-containerregistry
        stores the compressed blob; docker stores the uncompressed tar, which is not it)."""
        member = self._foreign.get(desc.digest)
        if member is None or member.size != desc.size:
            return None
        if desc.digest not in self._foreign_checked:
            digest, _ = await asyncio.to_thread(self.archive.digest, member)
            self._foreign_checked[desc.digest] = digest == desc.digest
        return member if self._foreign_checked[desc.digest] else None
