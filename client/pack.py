"""Packing a directory into an image layer, in one pass.

The tar is deterministic: entries sorted by path, owners 0/0 with no names, permissions
kept, timestamps clamped to SOURCE_DATE_EPOCH when it is set, hard links as link entries.
While the tar streams out, the uncompressed bytes are hashed (the diff_id), compressed
(gzip, or zstd on several threads) and the compressed bytes hashed (the blob digest) on
their way to the output file — nothing is read twice and nothing is held in memory.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Literal, cast

import zstandard
from isal import igzip

from . import windows
from .errors import PackError, UsageError
from .oci import mediatypes as mt
from .oci.digest import Digest, Hasher, new_hasher

Compression = Literal["gzip", "zstd", "none"]
LayerOS = Literal["linux", "windows"]
_BUFFER = 1024 * 1024
GZIP_DEFAULT_LEVEL = 2  # ISA-L's levels are 0-3; 2 compresses about as well as zlib's 6
# Told the entries written and the bytes of file content read so far, as packing goes.
PackProgress = Callable[[int, int], None]

MEDIA_TYPES: dict[Compression, str] = {
    "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD, "none": mt.OCI_LAYER_TAR,
}


@dataclass(frozen=True)
class PackOptions:
    compression: Compression = "gzip"
    os: LayerOS = "linux"
    source_date_epoch: int | None = None  # clamp timestamps to this (SOURCE_DATE_EPOCH)
    level: int | None = None  # gzip (ISA-L) 0-3, default 2; zstd 1-22, default 3
    security_descriptor: str = windows.DEFAULT_SECURITY_DESCRIPTOR
    deletions: tuple[str, ...] = ()  # paths to whiteout (delete from lower layers)

    @classmethod
    def from_environment(cls, **kwargs: object) -> PackOptions:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if epoch is not None and "source_date_epoch" not in kwargs:
            if not epoch.strip().isdigit():
                raise UsageError(f"SOURCE_DATE_EPOCH must be a number of seconds, not {epoch!r}")
            kwargs["source_date_epoch"] = int(epoch)
        return cls(**kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PackedLayer:
    path: Path
    digest: Digest  # of the compressed blob
    size: int
    diff_id: Digest  # of the uncompressed tar
    media_type: str
    entries: int = 0
    history: str = field(default="")


class _HashingWriter(io.RawIOBase):
    """Hashes and counts what passes through on its way to `target`."""

    def __init__(self, target: BinaryIO) -> None:
        self.target = target
        self.hasher: Hasher = new_hasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.hasher.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


class _TarSink(io.RawIOBase):
    """What tarfile writes into: hashed (diff_id), then compressed into the blob."""

    def __init__(self, blob: _HashingWriter, compression: Compression, level: int | None) -> None:
        self.blob = blob
        self.diff = new_hasher()
        self.compressor: IO[bytes] | None = None
        target = cast(IO[bytes], blob)
        if compression == "gzip":
            # ISA-L's deflate: gzip any reader accepts, an order of magnitude faster than zlib
            # at the same ratio. mtime 0 and no name: reproducible.
            self.compressor = cast(IO[bytes], igzip.IGzipFile(  # type: ignore[no-untyped-call]
                filename="", mode="wb", fileobj=target, mtime=0,
                compresslevel=GZIP_DEFAULT_LEVEL if level is None else level,
            ))
        elif compression == "zstd":
            cctx = zstandard.ZstdCompressor(level=3 if level is None else level, threads=-1)
            self.compressor = cctx.stream_writer(target, closefd=False)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.diff.update(data)
        (self.compressor or self.blob).write(data)
        return len(data)

    def finish(self) -> None:
        if self.compressor is not None:
            self.compressor.close()


@dataclass(frozen=True)
class _Entry:
    relative: str
    path: Path
    st: os.stat_result


def _walk_under(root: Path, prefix: str) -> Iterator[_Entry]:
    """Every path below `root/prefix`, depth first, names sorted in each directory."""
    directory = root / prefix if prefix else root
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise PackError(f"cannot read {directory}: {exc.strerror}") from None
    for name in names:
        relative = f"{prefix}/{name}" if prefix else name
        path = directory / name
        entry = _Entry(relative, path, path.lstat())
        yield entry
        if stat.S_ISDIR(entry.st.st_mode):
            yield from _walk_under(root, relative)


class _WindowsTarInfo(tarfile.TarInfo):
    """tarfile masks modes to 0o7777; Windows layers need the type bits in the mode field."""

    full_mode = 0

    def tobuf(self, format: Literal[0, 1, 2] | None = tarfile.DEFAULT_FORMAT,
              encoding: str | None = None, errors: str = "surrogateescape") -> bytes:
        buf = bytearray(super().tobuf(format, encoding or tarfile.ENCODING, errors))
        header = len(buf) - tarfile.BLOCKSIZE  # the entry's own header follows any PAX block
        buf[header + 100 : header + 108] = b"%07o\0" % self.full_mode
        buf[header + 148 : header + 156] = b" " * 8
        buf[header + 148 : header + 156] = b"%06o\0 " % sum(buf[header : header + 512])
        return bytes(buf)


def pack_directory(source: Path, output: Path, options: PackOptions,
                   progress: PackProgress | None = None) -> PackedLayer:
    """Write `source` as a layer blob to `output` (blocking: run it in a thread);
    `progress` is called from this thread after every entry and every read."""
    if not source.is_dir():
        raise UsageError(f"{source} is not a directory")
    if options.os == "windows" and options.compression == "zstd":
        raise UsageError("Windows does not read zstd layers: use --compress gzip or none")
    if options.compression == "gzip" and options.level is not None and not 0 <= options.level <= 3:
        raise UsageError("gzip levels are 0 to 3 (ISA-L); the default is 2")
    if options.compression == "zstd" and options.level is not None and options.level > 22:
        raise UsageError("zstd levels are 1 to 22 (negative ones: faster); the default is 3")
    with open(output, "wb") as out:
        blob = _HashingWriter(out)
        sink = _TarSink(blob, options.compression, options.level)
        writer = _LayerWriter(sink, options, progress)
        entries = writer.write_tree(source)
        sink.finish()
        out.flush()
        os.fsync(out.fileno())
    return PackedLayer(
        output, Digest.from_hasher("sha256", blob.hasher), blob.size,
        Digest.from_hasher("sha256", sink.diff), MEDIA_TYPES[options.compression], entries,
    )


class _LayerWriter:
    def __init__(self, sink: _TarSink, options: PackOptions,
                 progress: PackProgress | None = None) -> None:
        self.options = options
        self.progress = progress
        self.read = 0
        self.windows = options.os == "windows"
        self.tar = tarfile.open(
            fileobj=cast(IO[bytes], sink), mode="w|", format=tarfile.PAX_FORMAT,
            bufsize=_BUFFER, tarinfo=_WindowsTarInfo if self.windows else tarfile.TarInfo,
        )
        self.links: dict[tuple[int, int], str] = {}
        self.count = 0

    def _mtime(self, st: os.stat_result) -> int:
        mtime = int(st.st_mtime)
        epoch = self.options.source_date_epoch
        return min(mtime, epoch) if epoch is not None else mtime

    def _info(self, name: str, st: os.stat_result) -> tarfile.TarInfo:
        info = self.tar.tarinfo(name)
        info.mtime = self._mtime(st)
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = stat.S_IMODE(st.st_mode)
        return info

    def write_tree(self, source: Path) -> int:
        try:
            if self.windows:
                self._windows_top(source)
            deletions = sorted(self.options.deletions)
            for entry in _walk_under(source, ""):
                self._add(entry)
            for path in deletions:
                self._whiteout(path)
        finally:
            self.tar.close()
        return self.count

    def _windows_top(self, source: Path) -> None:
        st = source.stat()
        for top in windows.TOP_DIRECTORIES:
            info = self._info(top, st)
            info.type = tarfile.DIRTYPE
            self._finish(info, st, top_directory=True)

    def _name(self, relative: str) -> str:
        return windows.layer_path(relative) if self.windows else relative

    def _whiteout(self, path: str) -> None:
        clean = path.strip("/")
        if not clean or ".." in clean.split("/"):
            raise UsageError(f"cannot delete {path!r}: give a path inside the image")
        parent, _, leaf = clean.rpartition("/")
        name = f"{parent}/.wh.{leaf}" if parent else f".wh.{leaf}"
        info = self.tar.tarinfo(self._name(name))
        info.mtime = self.options.source_date_epoch or 0
        info.mode = 0o644
        self._finish(info, None)

    def _add(self, entry: _Entry) -> None:
        st = entry.st
        info = self._info(self._name(entry.relative), st)
        fileobj: BinaryIO | None = None
        target_is_dir = False
        if stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(entry.path)
            target_is_dir = entry.path.is_dir()
        elif stat.S_ISREG(st.st_mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self.links:
                info.type = tarfile.LNKTYPE
                info.linkname = self.links[key]
            else:
                if st.st_nlink > 1:
                    self.links[key] = info.name
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                try:
                    fileobj = open(entry.path, "rb")
                except OSError as exc:
                    raise PackError(f"cannot read {entry.path}: {exc.strerror}") from None
        elif stat.S_ISSOCK(st.st_mode):
            return  # sockets are runtime state, never image content
        else:
            kind = "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "FIFO"
            raise PackError(f"cannot pack {entry.path}: a {kind} is not image content")
        try:
            self._finish(info, st, fileobj=fileobj, target_is_dir=target_is_dir)
        finally:
            if fileobj is not None:
                fileobj.close()

    def _finish(self, info: tarfile.TarInfo, st: os.stat_result | None, *,
                fileobj: BinaryIO | None = None, target_is_dir: bool = False,
                top_directory: bool = False) -> None:
        if self.windows:
            assert isinstance(info, _WindowsTarInfo)
            kind = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK}.get(
                info.type, stat.S_IFREG)
            info.full_mode = windows.TOP_MODE if top_directory else kind
            mode = kind | (info.mode or 0)
            info.pax_headers = windows.pax_records(
                mode, self.options.security_descriptor, target_is_dir)
        if fileobj is not None:
            size_before = info.size
            self.tar.addfile(info, _Exact(fileobj, size_before, info.name, self._read))
        else:
            self.tar.addfile(info)
        self.count += 1
        if self.progress is not None:
            self.progress(self.count, self.read)

    def _read(self, size: int) -> None:
        self.read += size
        if self.progress is not None:
            self.progress(self.count, self.read)


class _Exact(io.RawIOBase):
    """A file read for exactly the size its header announced (it must not change meanwhile)."""

    def __init__(self, fileobj: BinaryIO, size: int, name: str,
                 counted: Callable[[int], None]) -> None:
        self.fileobj, self.remaining, self.name = fileobj, size, name
        self.counted = counted

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self.remaining if size < 0 else min(size, self.remaining)
        data = self.fileobj.read(want)
        if len(data) < want:
            raise PackError(f"{self.name} shrank while it was being packed")
        self.remaining -= len(data)
        self.counted(len(data))
        return data
