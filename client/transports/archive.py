"""`docker save` archives: `docker-archive:FILE[:REF]`, read in place and written as a stream.

The format (moby `image/tarexport`, containers/image `docker/internal/tarfile`,
go-containerregistry `pkg/v1/tarball`): a plain tar whose `manifest.json` lists images as
`{"Config": PATH, "RepoTags": ["name:tag"], "Layers": [PATH, ...], "LayerSources":
{diffID: descriptor}}`; the config is the image config JSON (its `rootfs.diff_ids` pair up
with `Layers`); `repositories` is the pre-1.10 `{name: {tag: id}}` map. Layer files are
uncompressed tars in `docker save` and skopeo output, but every loader decompresses what
it finds, so gzip (and zstd) files are layers too.

Reading never extracts: the tar headers are indexed once (tarfile seeks over member data)
and blobs are streamed from their members' offsets. The image is presented as a Docker
schema 2 manifest whose config is the config file and whose layers are the layer files as
they are (their digests computed by one streaming pass; media type sniffed:
`...rootfs.diff.tar`, `.tar.gzip` or `.tar.zstd`). Layers named in `LayerSources` with a
foreign media type keep that descriptor (digest, size, urls); their bytes are served only
if the archive holds exactly them, otherwise `blob()` raises NotFoundError so the copy
engine fetches them from their urls.

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
import posixpath
import tarfile
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import BerthError, NotFoundError, UsageError
from ..image import ImageDestination, ImageSource
from ..oci import mediatypes as mt
from ..oci.descriptor import Descriptor, DescriptorError
from ..oci.digest import Digest, DigestError, new_hasher
from ..oci.jsondoc import JSONDocumentError, loads
from ..oci.manifest import ManifestError, parse_manifest
from ..oci.reference import Reference, ReferenceError
from ..remote import BlobOpener, FetchedManifest, Progress

MANIFEST_JSON = "manifest.json"
REPOSITORIES = "repositories"
# distribution's schema2.MediaTypeUncompressedLayer, containerd's MediaTypeDockerSchema2Layer
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
# containerd's MediaTypeDockerSchema2LayerZstd, containers/image's DockerV2SchemaLayerMediaTypeZstd
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
IMAGE_CONFIGS = frozenset({mt.DOCKER_CONFIG, mt.OCI_CONFIG})
CHUNK = 1024 * 1024
JSON_LIMIT = 16 * 1024 * 1024  # manifest.json and configs are read whole; refuse absurd ones
BLOCK = tarfile.BLOCKSIZE

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
_LAYER_TYPES = {None: DOCKER_LAYER_TAR, "gzip": mt.DOCKER_LAYER, "zstd": DOCKER_LAYER_ZSTD}


def split_archive_spec(spec: str) -> tuple[str, str | None]:
    """`FILE[:REF]` as skopeo splits it: FILE ends at the first ':' (REF may hold colons:
    `out.tar:localhost:5000/app:v1`), so FILE itself cannot contain one."""
    path, sep, ref = spec.partition(":")
    if not path:
        raise UsageError("docker-archive needs a file: docker-archive:FILE[:NAME:TAG]")
    if sep and not ref:
        raise UsageError(f"docker-archive:{spec}: empty image reference after ':'")
    return path, ref if sep else None


def _compression(head: bytes) -> str | None:
    """gzip, zstd, bzip2, xz or None (a tar) from a file's first bytes (at least 512, to
    see the ustar magic of a tar whose first file name begins like a compression magic)."""
    if head[257:262] == b"ustar":
        return None
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return None


def _clean(name: str) -> str:
    cleaned = posixpath.normpath(name).lstrip("/")
    return "" if cleaned == "." else cleaned


def _normalised(repo_tag: str) -> str | None:
    try:
        ref = Reference.parse(repo_tag)
    except ReferenceError:
        return None
    return None if ref.digest else f"{ref.registry}/{ref.repository}:{ref.tag}"


def _tag_of(repo_tag: str) -> str | None:
    colon = repo_tag.rfind(":")
    return repo_tag[colon + 1 :] if colon > repo_tag.rfind("/") else None


# -- reading ----------------------------------------------------------------------------


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
            kind = _compression(fobj.read(BLOCK))
            if kind is not None:
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

    def digest(self, member: _Member) -> tuple[Digest, str | None]:
        """The member's sha256 and compression, in one streaming pass."""
        hasher = new_hasher()
        kind: str | None = None
        with open(self.path, "rb") as fobj:
            fobj.seek(member.offset)
            left = member.size
            while left:
                chunk = fobj.read(min(CHUNK, left))
                if not chunk:
                    raise BerthError(f"{self.path}: {member.name} is cut short "
                                     "(truncated archive)")
                if left == member.size:
                    kind = _compression(chunk)  # CHUNK >= BLOCK
                hasher.update(chunk)
                left -= len(chunk)
        return Digest.from_hasher("sha256", hasher), kind


def _json(data: bytes, where: str) -> Any:
    try:
        return loads(data)
    except JSONDocumentError as exc:
        raise BerthError(f"{where}: {exc}") from None


def _items(data: bytes, path: Path) -> list[_Item]:
    where = f"{path}: {MANIFEST_JSON}"
    doc = _json(data, where)
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
        matches = [i for i in items if any(_tag_of(t) == ref for t in i.repo_tags)]
    if not matches:
        known = sorted({t for i in items for t in i.repo_tags})
        shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise NotFoundError(f"{path}: no image tagged {ref!r} (has: {shown or 'no tags'})")
    if len(matches) > 1:
        raise UsageError(f"{path}: {len(matches)} images are tagged {ref!r}: "
                         "name one as NAME:TAG")
    return matches[0]


def _diff_ids(config: bytes, where: str) -> list[Digest]:
    doc = _json(config, where)
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list):
        raise BerthError(f"{where}: not an image config (no rootfs.diff_ids)")
    try:
        return [Digest.parse(d) for d in ids]
    except DigestError as exc:
        raise BerthError(f"{where}: rootfs.diff_ids: {exc}") from None


class ArchiveSource(ImageSource):
    """One image of a `docker save` archive, as a Docker schema 2 manifest."""

    def __init__(self, archive: _Archive, item: _Item, config: bytes,
                 diff_ids: list[Digest]) -> None:
        self.path = archive.path
        self.archive, self.item, self.config, self.diff_ids = archive, item, config, diff_ids
        self.config_digest = Digest.from_bytes(config)
        self._lock = asyncio.Lock()
        self._root: FetchedManifest | None = None
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
        diff_ids = _diff_ids(config, f"{path}: {item.config}")
        if len(diff_ids) != len(item.layers):
            raise BerthError(f"{path}: {MANIFEST_JSON} lists {len(item.layers)} layers, its "
                             f"config {len(diff_ids)} diff_ids")
        return cls(archive, item, config, diff_ids)

    @property
    def repo_tags(self) -> tuple[str, ...]:
        return self.item.repo_tags

    async def root(self) -> FetchedManifest:
        async with self._lock:
            if self._root is None:
                self._root = await self._build()
            return self._root

    async def _build(self) -> FetchedManifest:
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
            if kind is None and digest != diff_id:
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
        return FetchedManifest(data, mt.DOCKER_MANIFEST, Digest.from_bytes(data))

    async def manifest(self, digest: Digest) -> FetchedManifest:
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


# -- writing ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    name: str
    offset: int  # of the data, in the temporary file
    size: int


def _destination_tag(ref: str | None) -> str | None:
    """RepoTags wants NAME:TAG; a bare TAG has no name to go with it."""
    if ref is None:
        return None
    if _tag_of(ref) is None or ref.startswith("@"):
        raise UsageError(f"docker-archive destination needs NAME:TAG, not {ref!r} "
                         "(e.g. docker-archive:out.tar:app:v1)")
    try:
        parsed = Reference.parse(ref)
    except ReferenceError as exc:
        raise UsageError(f"docker-archive: {exc}") from None
    if parsed.digest is not None:
        raise UsageError(f"docker-archive: {ref!r}: an archive is tagged, not pinned by digest")
    return ref


def _blob_name(desc: Descriptor) -> str:
    if desc.media_type in IMAGE_CONFIGS:
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

    async def put_manifest(self, manifest: FetchedManifest, root: bool) -> None:
        self._check()
        if not root or manifest.media_type in mt.INDEXES:
            self._failure = UsageError(_INDEX_REFUSED)
            raise self._failure
        try:
            parsed = parse_manifest(manifest.data, manifest.media_type)
        except ManifestError as exc:
            raise BerthError(f"manifest {manifest.digest}: {exc}") from None
        assert parsed.config is not None
        if parsed.config.media_type not in IMAGE_CONFIGS:
            raise UsageError(f"a docker-archive holds container images; {manifest.digest} is "
                             f"an artifact (config {parsed.config.media_type})")
        stored_config = self._stored.get(parsed.config.digest)
        if stored_config is None:
            raise BerthError(f"config {parsed.config.digest} was not written to the archive")
        if stored_config.size > JSON_LIMIT:
            raise BerthError(f"config {parsed.config.digest} is over {JSON_LIMIT} bytes")
        async with self._lock:
            config = await asyncio.to_thread(self._read_back, stored_config)
        diff_ids = _diff_ids(config, f"config {parsed.config.digest}")
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
