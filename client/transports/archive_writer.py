"""Writing a `docker save` archive (the format: `archive`) as an image destination.

Writing streams each blob into a temporary tar beside FILE as it arrives (sizes are known
from the descriptors), then appends `manifest.json` and `repositories` and renames it over
FILE at commit. Blobs are stored as they come (no recompression); foreign layers that the
copy keeps as references are named in `Layers` and `LayerSources` but not stored (docker
loads such an archive only where it has the base layer, skopeo not at all: --foreign
include makes it self-contained). Blobs enter the single tar stream one at a time. One
archive holds one image: an index must be narrowed with --platform first.
"""

from __future__ import annotations

import asyncio
import json
import os
import tarfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..content import BlobOpener, ManifestBytes, Progress
from ..errors import BerthError, NotFoundError, UsageError
from ..image import ImageDestination
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.manifest import ManifestError, parse_manifest
from ..oci.reference import InvalidReferenceError, Reference
from .archive import BLOCK, JSON_LIMIT, MANIFEST_JSON, REPOSITORIES, config_diff_ids, tag_of


@dataclass(frozen=True, slots=True)
class _Stored:
    name: str
    offset: int  # of the data, in the temporary file
    size: int


def _destination_tag(ref: str | None) -> str | None:
    """RepoTags wants NAME:TAG; a bare TAG has no name to go with it."""
    if ref is None:
        return None
    if tag_of(ref) is None or ref.startswith("@"):
        raise UsageError(f"docker-archive destination needs NAME:TAG, not {ref!r} "
                         "(e.g. docker-archive:out.tar:app:v1)")
    try:
        parsed = Reference.parse(ref)
    except InvalidReferenceError as exc:
        raise UsageError(f"docker-archive: {exc}") from None
    if parsed.digest is not None:
        raise UsageError(f"docker-archive: {ref!r}: an archive is tagged, not pinned by digest")
    return ref


def _blob_name(desc: Descriptor) -> str:
    if desc.media_type in mt.IMAGE_CONFIGS:
        return f"{desc.digest.hex}.json"
    if desc.media_type.endswith("gzip"):
        return f"{desc.digest.hex}.tar.gz"
    if desc.media_type.endswith("zstd"):
        return f"{desc.digest.hex}.tar.zst"
    return f"{desc.digest.hex}.tar"


def _header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.type = size, 0o444, 0, tarfile.REGTYPE
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


_INDEX_REFUSED = ("a docker-archive holds one image, not a multi-platform index: "
                  "choose one with --platform OS/ARCH[/VARIANT]")


class ArchiveDestination(ImageDestination):
    """A new `docker save` archive holding the copied image (FILE is replaced at commit)."""

    accepts_index = False

    def __init__(self, path: Path, repo_tag: str | None, tmp: Path, fobj: BinaryIO) -> None:
        self.path, self.repo_tag, self.tmp, self.fobj = path, repo_tag, tmp, fobj
        self._lock = asyncio.Lock()  # one blob streamed at a time
        self._io = threading.Lock()  # one file operation at a time, even after cancellation
        self._stored: dict[Digest, _Stored] = {}
        self._end = 0
        self._item: dict[str, Any] | None = None
        self._repositories: dict[str, dict[str, str]] = {}
        self._failure: BerthError | None = None
        self._done = False

    @classmethod
    async def open(cls, path: str, tag: str | None) -> ArchiveDestination:
        repo_tag = _destination_tag(tag)
        target = Path(path)

        def create() -> tuple[Path, BinaryIO]:
            if target.is_dir():
                raise UsageError(f"{target} is a directory, not a docker-archive file")
            if not target.parent.is_dir():
                raise NotFoundError(f"{target.parent}: no such directory")
            tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
            try:
                return tmp, open(tmp, "w+b")
            except OSError as exc:
                raise BerthError(f"{target}: {exc.strerror or exc}") from None

        tmp, fobj = await asyncio.to_thread(create)
        return cls(target, repo_tag, tmp, fobj)

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def has_blob(self, desc: Descriptor) -> bool:
        self._check()
        return desc.digest in self._stored

    async def put_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None
    ) -> None:
        async with self._lock:  # one tar stream: blobs go in one after another
            self._check()
            if desc.digest in self._stored:
                return
            start = self._end
            header = _header(_blob_name(desc), desc.size)
            try:
                await asyncio.to_thread(self._write_at, start, header)
                done = 0
                async for chunk in opener(0):  # verified by the opener: digest and size
                    self._check()
                    await asyncio.to_thread(self._write, chunk)
                    done += len(chunk)
                    if progress:
                        progress(done)
                await asyncio.to_thread(self._write, _padding(desc.size))
            except BaseException:
                await asyncio.to_thread(self._truncate, start)  # the tar stays whole
                raise
            self._stored[desc.digest] = _Stored(_blob_name(desc), start + len(header),
                                                desc.size)
            self._end = start + len(header) + desc.size + len(_padding(desc.size))

    def _write_at(self, offset: int, data: bytes) -> None:
        with self._io:
            self.fobj.seek(offset)
            self.fobj.write(data)

    def _write(self, data: bytes) -> None:
        with self._io:
            self.fobj.write(data)

    def _truncate(self, offset: int) -> None:
        with self._io:
            if not self.fobj.closed:
                self.fobj.seek(offset)
                self.fobj.truncate()

    def _read_back(self, stored: _Stored) -> bytes:
        with self._io:
            self.fobj.flush()
            return os.pread(self.fobj.fileno(), stored.size, stored.offset)

    async def has_manifest(self, desc: Descriptor) -> bool:
        # only ever asked about the children of an index
        self._failure = UsageError(_INDEX_REFUSED)
        raise self._failure

    async def put_manifest(self, manifest: ManifestBytes, root: bool) -> None:
        self._check()
        if not root or manifest.media_type in mt.INDEXES:
            self._failure = UsageError(_INDEX_REFUSED)
            raise self._failure
        try:
            parsed = parse_manifest(manifest.data, manifest.media_type)
        except ManifestError as exc:
            raise BerthError(f"manifest {manifest.digest}: {exc}") from None
        assert parsed.config is not None
        if parsed.config.media_type not in mt.IMAGE_CONFIGS:
            raise UsageError(f"a docker-archive holds container images; {manifest.digest} is "
                             f"an artifact (config {parsed.config.media_type})")
        stored_config = self._stored.get(parsed.config.digest)
        if stored_config is None:
            raise BerthError(f"config {parsed.config.digest} was not written to the archive")
        if stored_config.size > JSON_LIMIT:
            raise BerthError(f"config {parsed.config.digest} is over {JSON_LIMIT} bytes")
        async with self._lock:
            config = await asyncio.to_thread(self._read_back, stored_config)
        diff_ids = config_diff_ids(config, f"config {parsed.config.digest}")
        if len(diff_ids) != len(parsed.layers):
            raise BerthError(f"image {manifest.digest} has {len(parsed.layers)} layers but its "
                             f"config lists {len(diff_ids)} diff_ids: docker could not load it")
        layers: list[str] = []
        sources: dict[str, Any] = {}
        for desc, diff_id in zip(parsed.layers, diff_ids, strict=True):
            stored = self._stored.get(desc.digest)
            if desc.foreign:
                sources[str(diff_id)] = desc.to_json()  # kept as a reference, or included
            elif stored is None:
                raise BerthError(f"layer {desc.digest} was not written to the archive")
            layers.append(stored.name if stored else _blob_name(desc))
        self._item = {"Config": stored_config.name,
                      "RepoTags": [self.repo_tag] if self.repo_tag else [],
                      "Layers": layers}
        if sources:
            self._item["LayerSources"] = sources
        if self.repo_tag and diff_ids:
            name, _, tag = self.repo_tag.rpartition(":")
            # as docker 25+ writes it: the top layer's diff_id (no legacy layer directories)
            self._repositories = {name: {tag: diff_ids[-1].hex}}

    async def commit(self) -> None:
        self._check()
        if self._item is None:
            raise BerthError(f"{self.path}: no image was written")
        tail = b"".join(
            _header(name, len(data)) + data + _padding(len(data))
            for name, data in ((MANIFEST_JSON, json.dumps([self._item]).encode()),
                               (REPOSITORIES, json.dumps(self._repositories).encode()))
        )
        end = self._end + len(tail) + 2 * BLOCK
        tail += b"\0" * (2 * BLOCK + (-end % tarfile.RECORDSIZE))

        def finish() -> None:
            self._write_at(self._end, tail)
            with self._io:
                self.fobj.flush()
                os.fsync(self.fobj.fileno())
                self.fobj.close()
                os.replace(self.tmp, self.path)

        async with self._lock:
            await asyncio.to_thread(finish)
            self._done = True

    async def close(self) -> None:
        if self._done:
            return
        if self._failure is None:
            self._failure = BerthError(f"{self.path}: the archive was closed unfinished")
        async with self._lock:  # a blob being streamed stops at its next chunk
            await asyncio.to_thread(self._discard)
        self._done = True

    def _discard(self) -> None:
        with self._io:
            self.fobj.close()
            self.tmp.unlink(missing_ok=True)
