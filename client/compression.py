"""Compression of layer blobs: what a blob's bytes are (sniffed from its first bytes), what
its media type says they are, and the uncompressed tar of a layer as a stream.

Both readers of layers use it: unpacking (`client.unpack`) decompresses by the media type,
the magic bytes deciding for other types and winning, with a warning, over a media type
that does not match the data; docker-archive reading (`client.transports.archive_reader`)
gives each layer file the media type its bytes call for.

The stream is read as it comes (never whole in memory, never seeking). Truncated gzip or
zstd data is an error, not a quiet early end: the zstd decompressor's stream reader ends
quietly on either, so the frame structure is followed as the bytes pass.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, BinaryIO, ClassVar, Literal, cast

import zstandard

from .errors import UnpackError
from .oci.mediatypes import base_type

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

log = logging.getLogger(__name__)

# What a blob's bytes are: compressed by one of four, or a tar (its ustar magic seen).
BlobFormat = Literal["gzip", "zstd", "bzip2", "xz", "tar"]
GZIP: BlobFormat = "gzip"
ZSTD: BlobFormat = "zstd"
BZIP2: BlobFormat = "bzip2"
XZ: BlobFormat = "xz"
TAR: BlobFormat = "tar"
# The first bytes `sniff` needs: the ustar magic of a tar is at offset 257.
SNIFF_LENGTH = 262

_MAGIC: tuple[tuple[bytes, BlobFormat], ...] = (
    (b"\x1f\x8b", GZIP),
    (b"\x28\xb5\x2f\xfd", ZSTD),
    (b"BZh", BZIP2),
    (b"\xfd7zXZ\x00", XZ),
)
_DECLARED: tuple[tuple[str, BlobFormat], ...] = (
    ("+gzip", GZIP), (".tar.gzip", GZIP), ("+zstd", ZSTD), (".tar.zstd", ZSTD), (".tar", TAR),
)
_LAYER_FORMATS = frozenset({GZIP, ZSTD, TAR})  # what layer media types can name
_BUFFER = 1024 * 1024


def sniff(head: bytes) -> BlobFormat | None:
    """What a blob is from its first bytes (`SNIFF_LENGTH` of them, to see the ustar
    magic first: a tar whose first file name begins like a compression magic is a tar);
    None when they say nothing (an old-style tar without the magic, or anything else)."""
    if head[257:262] == b"ustar":
        return TAR
    for magic, found in _MAGIC:
        if head.startswith(magic):
            return found
    if len(head) >= 4 and int.from_bytes(head[:4], "little") & 0xFFFFFFF0 == 0x184D2A50:
        return ZSTD  # a zstd skippable frame
    return None


def declared_compression(media_type: str) -> BlobFormat | None:
    """What a layer media type says its blob is: gzip, zstd or tar (none); else None."""
    media_type = base_type(media_type)
    return next((kind for suffix, kind in _DECLARED if media_type.endswith(suffix)), None)


class _Head:
    """Bytes already read from `stream`, then the rest of it."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = head, stream

    def read(self, size: int = -1, /) -> bytes:
        if self.head:
            size = len(self.head) if size < 0 else size
            data, self.head = self.head[:size], self.head[size:]
            return data
        try:
            return self.stream.read(size)
        except OSError as e:
            raise UnpackError(f"cannot read the layer: {e.strerror or e}") from e


class _ZstdFrames:
    """Follows the frame structure of zstd data as it passes, to tell a truncated stream
    from a complete one: the decompressor's stream reader ends quietly on either."""

    _NEED: ClassVar[dict[str, int]] = {
        "magic": 4, "skippable": 4, "descriptor": 1, "block": 3, "checksum": 4,
    }  # bytes of each field; "header" (window, dictionary id, content size) varies

    def __init__(self) -> None:
        self.state, self.header, self.skip, self.frames = "magic", 0, 0, 0
        self.checksum = False
        self.pending = b""

    def feed(self, data: bytes) -> None:
        view, pos = memoryview(data), 0
        while True:
            if self.skip:
                step = min(self.skip, len(view) - pos)
                self.skip, pos = self.skip - step, pos + step
                if self.skip:
                    return
            need = self._NEED.get(self.state, self.header) - len(self.pending)
            if len(view) - pos < need:
                self.pending += view[pos:]
                return
            self.pending, field = b"", self.pending + view[pos : pos + need]
            pos += need
            self._step(int.from_bytes(field, "little"))

    def _step(self, value: int) -> None:
        if self.state == "magic":
            if value == 0xFD2FB528:
                self.state = "descriptor"
            elif value & 0xFFFFFFF0 == 0x184D2A50:
                self.state = "skippable"
            else:
                raise UnpackError("corrupt zstd layer data: not a zstd frame")
        elif self.state == "skippable":
            self.state, self.skip = "magic", value
        elif self.state == "descriptor":  # then window, dictionary id, content size
            single = bool(value & 0x20)
            self.checksum = bool(value & 0x04)
            self.header = ((not single) + (0, 1, 2, 4)[value & 3]
                           + (int(single), 2, 4, 8)[value >> 6])
            self.state = "header"
        elif self.state == "header":
            self.state = "block"
        elif self.state == "block":
            kind, size = (value >> 1) & 3, value >> 3
            if kind == 3:
                raise UnpackError("corrupt zstd layer data: reserved block type")
            self.skip = 1 if kind == 1 else size
            if value & 1:
                self.state = "checksum" if self.checksum else "magic"
                self.frames += not self.checksum
        else:  # checksum
            self.state, self.frames = "magic", self.frames + 1

    def complete(self) -> bool:
        return self.state == "magic" and not self.skip and not self.pending and self.frames > 0


class _ZstdSource:
    """The compressed bytes on their way to the decompressor; a truncated end is refused."""

    def __init__(self, source: _Head) -> None:
        self.source, self.frames = source, _ZstdFrames()

    def read(self, size: int = -1, /) -> bytes:
        data = self.source.read(size)
        if data:
            self.frames.feed(data)
        elif not self.frames.complete():
            raise UnpackError("corrupt zstd layer data: truncated")
        return data


class _Decoded(io.RawIOBase):
    """A raw stream over a decompressor's `read`; corrupt data becomes UnpackError."""

    def __init__(self, read: Callable[[int], bytes], kind: str) -> None:
        self._read, self.kind = read, kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._read(len(view))
        except (EOFError, zlib.error, gzip.BadGzipFile, zstandard.ZstdError) as e:
            raise UnpackError(f"corrupt {self.kind} layer data: {e}") from e
        view[: len(data)] = data
        return len(data)


def decompressed(stream: BinaryIO, media_type: str) -> io.BufferedReader:
    """The uncompressed tar of a layer blob, as a stream."""
    head = b""
    while len(head) < SNIFF_LENGTH:
        try:
            chunk = stream.read(SNIFF_LENGTH - len(head))
        except OSError as e:
            raise UnpackError(f"cannot read the layer: {e.strerror or e}") from e
        if not chunk:
            break
        head += chunk
    declared, found = declared_compression(media_type), sniff(head)
    if found not in _LAYER_FORMATS:
        found = None  # bzip2 or xz: no layer media type names them
    if found is None:
        if declared is None:
            raise UnpackError(f"layer of unknown type {media_type!r} is neither gzip, zstd "
                              "nor tar data")
        if declared != TAR:  # a declared plain tar may be old-style, without the ustar magic
            raise UnpackError(f"layer of type {media_type!r} is not {declared} data")
        found = TAR
    elif declared is not None and found != declared:
        log.warning("layer of type %s holds %s data: unpacking it as %s", media_type, found, found)
    source = _Head(head, stream)
    read: Callable[[int], bytes]
    if found == GZIP:  # (neither decompressor seeks: the casts only quiet the stubs)
        read = gzip.GzipFile(fileobj=cast(IO[bytes], source), mode="rb").read
    elif found == ZSTD:
        read = zstandard.ZstdDecompressor().stream_reader(
            cast(IO[bytes], _ZstdSource(source)), read_across_frames=True, closefd=False).read
    else:
        read = source.read
    return io.BufferedReader(_Decoded(read, found), _BUFFER)
