"""OCI image layout directories (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

from ..content import BlobOpener, ManifestBytes, Progress
from ..errors import BerthError, NotFoundError, UsageError
from ..image import ImageDestination, ImageSource
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, DescriptorError
from ..oci.digest import Digest
from ..oci.jsondoc import JSONDocumentError, loads_object
from ..oci.manifest import declared_media_type

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 1024 * 1024


async def _has_blob(root: Path, desc: Descriptor) -> bool:
    """Whether the layout holds the blob, whole (by its size)."""
    try:
        return (await asyncio.to_thread(_blob_path(root, desc.digest).stat)).st_size == desc.size
    except FileNotFoundError:
        return False


def _blob_path(root: Path, digest: Digest) -> Path:
    return root / "blobs" / digest.algorithm / digest.hex


def _read_index(root: Path) -> dict[str, Any]:
    try:
        index = loads_object((root / "index.json").read_bytes(), "image index")
    except FileNotFoundError:
        raise NotFoundError(f"{root}: not an OCI image layout (no index.json)") from None
    except OSError as exc:
        raise BerthError(f"{root}/index.json: {exc.strerror or exc}") from None
    except JSONDocumentError as exc:
        raise BerthError(f"{root}/index.json: {exc}") from None
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
        raise BerthError(f"{root}/index.json: not an image index")
    return index


def _tag_matches(annotations: dict[str, str], tag: str) -> bool:
    name = annotations.get(REF_NAME, "")
    return name == tag or name.endswith(f":{tag}")


class LayoutSource(ImageSource):
    def __init__(self, root: Path, entry: Descriptor) -> None:
        self.path = root
        self.entry = entry

    @classmethod
    async def open(cls, path: str, tag: str | None) -> LayoutSource:
        root = Path(path)
        index = await asyncio.to_thread(_read_index, root)
        entries = index["manifests"]
        if tag is not None:
            entries = [e for e in entries if _tag_matches(e.get("annotations") or {}, tag)]
            if not entries:
                raise NotFoundError(f"{root}: no image tagged {tag!r}")
        elif len(entries) != 1:
            raise UsageError(f"{root} holds {len(entries)} images: name one as oci:PATH:TAG")
        try:
            return cls(root, Descriptor.from_json(entries[-1], "index.json entry"))
        except DescriptorError as exc:
            raise BerthError(f"{root}/index.json: {exc}") from None

    async def _read(self, digest: Digest, media_type: str) -> ManifestBytes:
        try:
            data = await asyncio.to_thread(_blob_path(self.path, digest).read_bytes)
        except FileNotFoundError:
            raise NotFoundError(f"{self.path}: manifest {digest} is missing") from None
        if Digest.from_bytes(data, digest.algorithm) != digest:
            raise BerthError(f"{self.path}: blob {digest} is corrupt")
        return ManifestBytes(data, media_type, digest)

    async def root(self) -> ManifestBytes:
        return await self._read(self.entry.digest, self.entry.media_type)

    async def manifest(self, digest: Digest) -> ManifestBytes:
        fetched = await self._read(digest, "")
        return ManifestBytes(fetched.data, declared_media_type(fetched.data), digest)

    async def holds(self, desc: Descriptor) -> bool:
        return await _has_blob(self.path, desc)

    async def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        path = _blob_path(self.path, desc.digest)
        try:
            fobj: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise NotFoundError(f"{self.path}: blob {desc.digest} is missing") from None
        try:
            await asyncio.to_thread(fobj.seek, offset)
            while chunk := await asyncio.to_thread(fobj.read, CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(fobj.close)


class LayoutDestination(ImageDestination):
    def __init__(self, root: Path, tag: str | None, index: dict[str, Any]) -> None:
        self.root, self.tag, self.index = root, tag, index

    @classmethod
    async def open(cls, path: str, tag: str | None) -> LayoutDestination:
        root = Path(path)

        def prepare() -> dict[str, Any]:
            (root / "blobs").mkdir(parents=True, exist_ok=True)
            layout = root / "oci-layout"
            if not layout.exists():
                layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
            if (root / "index.json").exists():
                return _read_index(root)
            return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}

        return cls(root, tag, await asyncio.to_thread(prepare))

    async def has_blob(self, desc: Descriptor) -> bool:
        return await _has_blob(self.root, desc)

    async def put_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None
    ) -> None:
        final = _blob_path(self.root, desc.digest)
        await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{uuid.uuid4().hex}")
        fobj: BinaryIO = await asyncio.to_thread(open, tmp, "wb")
        try:
            done = 0
            async for chunk in opener(0):  # verified by the opener: digest and size
                await asyncio.to_thread(fobj.write, chunk)
                done += len(chunk)
                if progress:
                    progress(done)
            await asyncio.to_thread(_close_synced, fobj)
            await asyncio.to_thread(os.replace, tmp, final)
        except BaseException:
            fobj.close()
            tmp.unlink(missing_ok=True)
            raise

    async def put_file(self, desc: Descriptor, path: Path) -> bool:
        final = _blob_path(self.root, desc.digest)

        def place() -> None:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".tmp-{uuid.uuid4().hex}")
            try:
                os.link(path, tmp)  # same filesystem: no copy at all
            except OSError:
                shutil.copyfile(path, tmp)  # copy_file_range/sendfile where the kernel can
            os.replace(tmp, final)

        await asyncio.to_thread(place)
        return True

    async def has_manifest(self, desc: Descriptor) -> bool:
        return await self.has_blob(desc)

    async def put_manifest(self, manifest: ManifestBytes, root: bool) -> None:
        path = _blob_path(self.root, manifest.digest)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, manifest.data)

        await asyncio.to_thread(write)
        if not root:
            return
        entry = manifest.descriptor().to_json()
        entries = self.index["manifests"]
        if self.tag is not None:
            entry["annotations"] = {REF_NAME: self.tag}
            entries[:] = [e for e in entries
                          if not _tag_matches(e.get("annotations") or {}, self.tag)]
        else:
            entries[:] = [e for e in entries if e.get("digest") != entry["digest"]
                          or (e.get("annotations") or {}).get(REF_NAME)]
        entries.append(entry)

    async def commit(self) -> None:
        data = json.dumps(self.index, indent=2).encode()
        await asyncio.to_thread(_write_atomic, self.root / "index.json", data)


def _close_synced(fobj: BinaryIO) -> None:
    fobj.flush()
    os.fsync(fobj.fileno())
    fobj.close()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
