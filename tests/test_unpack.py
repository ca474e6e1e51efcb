"""Applying layers to a directory: trees, whiteouts, compressions, hostile tars, Windows."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pytest
import zstandard

from client import unpack
from client.errors import DigestMismatch, UnpackError
from client.oci import mediatypes as mt
from client.unpack import LayerStats, apply_layer

MTIME = 1_600_000_000
Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, kind: bytes, mode: int, **attrs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, MTIME
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **attrs: Any) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, **attrs)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, **attrs: Any) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, **attrs), None


def sym(name: str, target: str, **attrs: Any) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **attrs), None


def hard(name: str, target: str) -> Member:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target), None


def special(name: str, kind: bytes) -> Member:
    return _info(name, kind, 0o666, devmajor=1, devminor=3), None


def tar(*members: Member) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


class Stream(io.RawIOBase):
    """A non-seekable stream that refuses unbounded reads and remembers how far it got."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.largest = data, 0, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        assert size is not None and size >= 0, "the whole layer was asked for"
        self.largest = max(self.largest, size)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk

    def seekable(self) -> bool:
        return False


def stream(data: bytes) -> BinaryIO:
    return Stream(data)  # type: ignore[return-value]


def apply_layers(layers: list[tuple[BinaryIO, str]], target: Path, *,
                 windows: bool = False) -> LayerStats:
    """(stream, media type) layers in order, lowest first, as `client.pull` applies them;
    the stats summed, an error naming its layer."""
    total = LayerStats()
    for number, (blob, media_type) in enumerate(layers, 1):
        try:
            total += apply_layer(blob, target, media_type, windows=windows)
        except UnpackError as e:
            raise UnpackError(f"layer {number}: {e}") from e
    return total


def apply(target: Path, *layers: bytes, windows: bool = False) -> LayerStats:
    """Plain tar layers, in order."""
    return apply_layers([(stream(layer), mt.OCI_LAYER_TAR) for layer in layers], target,
                        windows=windows)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def tree(top: Path) -> set[str]:
    """Every path below `top`, relative, directories marked with a trailing /."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(top):  # symlinks are listed, not followed
        base = Path(dirpath).relative_to(top)
        for name in dirnames + filenames:
            real_dir = stat.S_ISDIR((Path(dirpath) / name).lstat().st_mode)
            found.add(f"{base / name}/" if real_dir else str(base / name))
    return {p.removeprefix("./") for p in found}


# --- a normal image ----------------------------------------------------------------------

def test_multi_layer_tree(tmp_path: Path) -> None:
    target = tmp_path / "rootfs"  # made by apply_layer
    base = tar(
        dir_("etc", 0o755), reg("etc/os-release", b"ID=test\n", 0o644),
        dir_("usr"), dir_("usr/lib"), reg("usr/lib/libx.so", b"x" * 5000, 0o755),
        sym("lib", "usr/lib"), sym("etc/abs", "/etc/passwd"),
        dir_("bin"), reg("bin/tool", b"#!/bin/sh\n", 0o4755),  # setuid: stripped
        hard("bin/tool2", "bin/tool"),
        dir_("ro", 0o555), reg("ro/file", b"r", 0o444), dir_("secret", 0o700),
        reg("./dot/implicit", b"i", 0o600, mtime=MTIME + 5),  # parent made on the way
        dir_("tmp", 0o1777),
    )
    upper = tar(
        reg("etc/os-release", b"ID=upper\n", 0o640),
        reg("lib/liby.so", b"y", 0o755),  # through the in-target symlink lib -> usr/lib
        reg("ro/new", b"n"),  # into a read-only directory of the lower layer
        dir_("bin", 0o750),  # merges into the existing directory
    )
    stats = apply_layers([(stream(gz(base)), mt.OCI_LAYER_GZIP),
                          (stream(zst(upper)), mt.OCI_LAYER_ZSTD)], target)

    assert (target / "etc/os-release").read_bytes() == b"ID=upper\n"
    assert mode(target / "etc/os-release") == 0o640
    assert (target / "usr/lib/libx.so").read_bytes() == b"x" * 5000
    assert (target / "usr/lib/liby.so").read_bytes() == b"y"
    assert os.readlink(target / "lib") == "usr/lib"
    assert os.readlink(target / "etc/abs") == "/etc/passwd"  # created, never followed
    assert mode(target / "bin/tool") == 0o755
    assert (target / "bin/tool").stat().st_ino == (target / "bin/tool2").stat().st_ino
    assert mode(target / "bin") == 0o750
    assert (mode(target / "ro"), mode(target / "ro/file")) == (0o555, 0o444)
    assert (target / "ro/new").read_bytes() == b"n"
    assert mode(target / "secret") == 0o700 and mode(target / "tmp") == 0o777
    assert (target / "dot/implicit").read_bytes() == b"i"
    assert (target / "dot/implicit").stat().st_mtime == MTIME + 5
    assert (target / "usr").stat().st_mtime == MTIME == (target / "bin").stat().st_mtime
    assert (target / "usr/lib/libx.so").stat().st_mtime == MTIME
    assert tree(target) == {
        "etc/", "etc/os-release", "etc/abs", "usr/", "usr/lib/", "usr/lib/libx.so",
        "usr/lib/liby.so", "lib", "bin/", "bin/tool", "bin/tool2", "ro/", "ro/file", "ro/new",
        "secret/", "dot/", "dot/implicit", "tmp/",
    }
    assert stats == LayerStats(layers=2, files=8, dirs=8, symlinks=2, hardlinks=1,
                               bytes_written=5000 + 8 + 10 + 1 + 1 + 1 + 9 + 1)
    assert stats.links == 3


def test_special_bits_kept_on_request(tmp_path: Path) -> None:
    apply_layer(stream(tar(reg("su", b"s", 0o4755), dir_("t", 0o1777))), tmp_path / "r",
                mt.OCI_LAYER_TAR, preserve_special_bits=True)
    assert mode(tmp_path / "r/su") == 0o4755 and mode(tmp_path / "r/t") == 0o1777


def test_owners(tmp_path: Path) -> None:
    layer = tar(reg("f", b"f", uid=1234, gid=5678), dir_("d", uid=1234, gid=5678),
                sym("s", "f", uid=1234, gid=5678))
    apply_layer(stream(layer), tmp_path / "plain", mt.OCI_LAYER_TAR)
    assert (tmp_path / "plain/f").stat().st_uid == os.geteuid()
    apply_layer(stream(layer), tmp_path / "kept", mt.OCI_LAYER_TAR, preserve_owners=True)
    expected = (1234, 5678) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    for name in ("f", "d", "s"):
        st = (tmp_path / "kept" / name).lstat()
        assert (st.st_uid, st.st_gid) == expected


def test_replacing_across_layers(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"safe")
    target = tmp_path / "root"
    apply(target,
          tar(dir_("a"), reg("a/old"), reg("b", b"file"), sym("c", "../outside"),
              sym("f", "../outside/victim"), sym("g", "a")),
          tar(reg("a", b"now a file"), dir_("b"), reg("b/x", b"x"), dir_("c"),
              reg("c/victim", b"mine"), reg("f", b"not through"), dir_("g")))
    assert (target / "a").read_bytes() == b"now a file"
    assert (target / "b/x").read_bytes() == b"x"
    assert (target / "c").is_dir() and not (target / "c").is_symlink()
    assert (target / "c/victim").read_bytes() == b"mine"
    assert not (target / "f").is_symlink() and (target / "f").read_bytes() == b"not through"
    assert (target / "g").is_dir() and not (target / "g").is_symlink()
    assert (outside / "victim").read_bytes() == b"safe" and tree(outside) == {"victim"}


def test_hard_link_to_a_symlink_links_the_symlink(tmp_path: Path) -> None:
    apply(tmp_path / "r", tar(sym("s", "/etc/passwd"), hard("h", "s")))
    assert os.readlink(tmp_path / "r/h") == "/etc/passwd"
    assert (tmp_path / "r/h").lstat().st_ino == (tmp_path / "r/s").lstat().st_ino


def test_fifo_is_skipped(tmp_path: Path) -> None:
    stats = apply(tmp_path / "r", tar(reg("before", b"b"), special("pipe", tarfile.FIFOTYPE),
                                      hard("pipe2", "pipe")))
    assert stats.skipped == 2 and stats.files == 1
    assert tree(tmp_path / "r") == {"before"}


def test_directory_metadata_never_follows_a_later_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "b").mkdir(parents=True)
    before = {p: (mode(p), p.stat().st_mtime_ns) for p in (outside, outside / "b")}
    target = tmp_path / "r"
    apply(target, tar(dir_("d", 0o700), sym("d", "../outside"),
                      dir_("a"), dir_("a/b", 0o700), sym("a", "../outside"), reg("ok", b"ok")))
    assert os.readlink(target / "d") == "../outside" and os.readlink(target / "a") == "../outside"
    assert (target / "ok").read_bytes() == b"ok"
    assert {p: (mode(p), p.stat().st_mtime_ns) for p in (outside, outside / "b")} == before


def test_not_root_opens_and_restores_read_only_directories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(unpack, "_is_root", lambda: False)
    target = tmp_path / "r"
    apply(target, tar(dir_("ro", 0o555), dir_("ro/sub", 0o500), reg("ro/sub/f", b"f"),
                      dir_("re", 0o555), dir_("re/sub", 0o555)),
          tar(reg("ro/sub/g", b"g"), dir_("gone", 0o555), dir_("gone/inner", 0o555),
              reg("re/sub/x"), reg("re", b"file"), dir_("re", 0o750), reg("re/sub/y")),
          tar(reg(".wh.gone")))
    assert (target / "ro/sub/g").read_bytes() == b"g"
    assert (mode(target / "ro"), mode(target / "ro/sub")) == (0o555, 0o500)
    # re/sub was remade (implicitly): the old directory's mode is not put on the new one
    assert (mode(target / "re"), mode(target / "re/sub")) == (0o750, 0o755 & ~_umask())
    assert tree(target) == {"ro/", "ro/sub/", "ro/sub/f", "ro/sub/g", "re/", "re/sub/",
                            "re/sub/y"}


def test_unprivileged_user(tmp_path: Path) -> None:
    """Read-only and unreadable directories, written into and removed, without root."""
    root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="berth-unpack-")) if root else tmp_path
    try:
        if root:
            os.chown(work, 65534, 65534)  # nobody
        _unprivileged(lambda: _unprivileged_work(work / "r"), drop=root)
    finally:
        if root:
            shutil.rmtree(work)


def _unprivileged_work(target: Path) -> None:
    apply(target,
          tar(dir_("ro", 0o555), dir_("ro/sub", 0o500), reg("ro/sub/f", b"f"),
              dir_("ro/locked", 0o000), dir_("gone", 0o555), dir_("gone/inner", 0o500),
              reg("gone/inner/x"), dir_("gone/inner/z", 0o000), reg("rof", b"x", 0o444),
              dir_("keep", 0o500), reg("keep/old")),
          tar(reg("ro/sub/g", b"g"), reg("rof", b"y", 0o444), reg(".wh.gone"),
              reg("ro/.wh.locked"), reg("keep/.wh.old")),
          tar(dir_("ro", 0o555), reg("ro/.wh..wh..opq"), reg("ro/new", b"n")))
    assert tree(target) == {"ro/", "ro/new", "rof", "keep/"}
    assert (mode(target / "ro"), mode(target / "keep")) == (0o555, 0o500)
    assert (target / "rof").read_bytes() == b"y" and (target / "ro/new").read_bytes() == b"n"


def _unprivileged(work: Callable[[], None], *, drop: bool) -> None:
    """Run `work` here, or (as root) in a child process that has become nobody."""
    if not drop:
        work()
        return
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            work()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged run failed (see stderr)"


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


# --- whiteouts ---------------------------------------------------------------------------

def test_whiteouts(tmp_path: Path) -> None:
    target = tmp_path / "r"
    stats = apply(
        target,
        tar(dir_("a"), reg("a/x", b"x"), reg("a/y", b"y"), dir_("b"), dir_("b/c"),
            reg("b/c/d"), reg("keep", b"k"), sym("link", "a"), reg("lower", b"l")),
        tar(reg("a/.wh.x"), reg(".wh.b"), reg(".wh.link"), reg(".wh.missing"),
            reg("nodir/.wh.z"), reg("lower", b"upper"), reg(".wh.lower"),  # same layer: kept
            reg("a/.wh..wh.plnk"), dir_(".wh..wh.plnk"), reg(".wh..wh.plnk/1.2")),  # AUFS
    )
    assert tree(target) == {"a/", "a/y", "keep", "lower"}
    assert (target / "lower").read_bytes() == b"upper"
    assert stats.whiteouts == 6 and stats.skipped == 3


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_directory(tmp_path: Path, marker_first: bool) -> None:
    target = tmp_path / "r"
    lower = tar(dir_("d"), reg("d/old", b"o"), dir_("d/sub"), reg("d/sub/old"),
                dir_("d/gone"), reg("d/gone/x"), sym("d/ln", "sub"), reg("other", b"kept"))
    marker = [reg("d/.wh..wh..opq")]
    siblings = [reg("d/new", b"n"), dir_("d/sub", 0o700), reg("d/sub/mine", b"m")]
    upper = tar(dir_("d"), *(marker + siblings if marker_first else siblings + marker))
    stats = apply(target, lower, upper)
    assert tree(target) == {"d/", "d/new", "d/sub/", "d/sub/mine", "other"}
    assert (target / "d/sub/mine").read_bytes() == b"m" and mode(target / "d/sub") == 0o700
    assert stats.whiteouts == 1


def test_opaque_marker_applies_to_lower_layers_only_on_root(tmp_path: Path) -> None:
    target = tmp_path / "r"
    apply(target, tar(reg("a"), dir_("b"), reg("b/c")), tar(reg("z", b"z"), reg(".wh..wh..opq")))
    assert tree(target) == {"z"}


def test_whiteout_through_an_inside_symlink(tmp_path: Path) -> None:
    target = tmp_path / "r"
    apply(target, tar(dir_("real"), reg("real/x"), reg("real/y"), sym("alias", "real")),
          tar(reg("alias/.wh.x")))
    assert tree(target) == {"real/", "real/y", "alias"}


# --- compression -------------------------------------------------------------------------

LAYER = tar(dir_("d"), reg("d/f", b"hello" * 1000))


@pytest.mark.parametrize(("media_type", "encode"), [
    (mt.OCI_LAYER_TAR, bytes), (mt.OCI_LAYER_GZIP, gz), (mt.OCI_LAYER_ZSTD, zst),
    (mt.DOCKER_LAYER, gz), (mt.DOCKER_FOREIGN_LAYER, gz),
    (mt.OCI_NONDISTRIBUTABLE_TAR, bytes), (mt.OCI_NONDISTRIBUTABLE_GZIP, gz),
    (mt.OCI_NONDISTRIBUTABLE_ZSTD, zst), ("application/vnd.docker.image.rootfs.diff.tar", bytes),
    (mt.OCI_LAYER_GZIP + "; charset=x", gz),
    ("application/octet-stream", gz), ("application/octet-stream", zst),  # sniffed
    ("application/octet-stream", bytes), ("", gz),
    (mt.OCI_LAYER_GZIP, bytes), (mt.OCI_LAYER_TAR, zst),  # data wins over a wrong type
])
def test_compressions(tmp_path: Path, media_type: str, encode: object) -> None:
    assert callable(encode)
    source = Stream(encode(LAYER))
    stats = apply_layer(source, tmp_path / "r", media_type)  # type: ignore[arg-type]
    assert (tmp_path / "r/d/f").read_bytes() == b"hello" * 1000
    assert stats.bytes_written == 5000
    assert source.pos == len(source.data)  # read to the end, for digest checks
    assert source.largest <= 1024 * 1024


def test_multi_frame_zstd_and_multi_member_gzip(tmp_path: Path) -> None:
    half = len(LAYER) // 2
    for media_type, blob in ((mt.OCI_LAYER_ZSTD, zst(LAYER[:half]) + zst(LAYER[half:])),
                             (mt.OCI_LAYER_GZIP, gz(LAYER[:half]) + gz(LAYER[half:]))):
        target = tmp_path / media_type[-4:]
        apply_layer(stream(blob), target, media_type)
        assert (target / "d/f").read_bytes() == b"hello" * 1000


def test_large_file_streams(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = Stream(gz(tar(reg("big", data))))
    apply_layer(source, tmp_path / "r", mt.OCI_LAYER_GZIP)  # type: ignore[arg-type]
    assert (tmp_path / "r/big").read_bytes() == data
    assert source.largest <= 1024 * 1024


@pytest.mark.parametrize(("media_type", "blob", "message"), [
    ("application/octet-stream", b"\x00" * 600, "unknown type"),
    (mt.OCI_LAYER_GZIP + "+encrypted", b"junk" * 200, "unknown type"),
    (mt.OCI_LAYER_GZIP, b"junk" * 200, "not gzip data"),
    (mt.OCI_LAYER_ZSTD, b"junk" * 200, "not zstd data"),
    (mt.OCI_LAYER_GZIP, gz(LAYER)[:-30], "corrupt gzip"),
    (mt.OCI_LAYER_ZSTD, zst(LAYER)[:-30], "corrupt zstd"),
    (mt.OCI_LAYER_GZIP, gz(b"x" * 600), "invalid layer tar"),
    (mt.OCI_LAYER_TAR, LAYER[:1000], "invalid layer tar"),
    (mt.OCI_LAYER_TAR, b"", "invalid layer tar"),
])
def test_bad_data(tmp_path: Path, media_type: str, blob: bytes, message: str) -> None:
    with pytest.raises(UnpackError, match=message):
        apply_layer(stream(blob), tmp_path / "r", media_type)


def _zstd_variants() -> list[bytes]:
    big = tar(reg("d/f", b"hello" * 1000), reg("r", os.urandom(300_000)))
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=19, write_checksum=True).stream_writer(
            out, closefd=False) as writer:  # no content size, many blocks, a checksum
        writer.write(big)
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    return [out.getvalue(), zstandard.ZstdCompressor(write_content_size=False).compress(big),
            skippable + zst(big) + skippable,
            zstandard.ZstdCompressor(write_checksum=True, level=-5).compress(big)]


@pytest.mark.parametrize("blob", _zstd_variants())
def test_zstd_frame_variants(tmp_path: Path, blob: bytes) -> None:
    apply_layer(stream(blob), tmp_path / "r", mt.OCI_LAYER_ZSTD)
    assert (tmp_path / "r/d/f").read_bytes() == b"hello" * 1000
    assert len((tmp_path / "r/r").read_bytes()) == 300_000


class Trickle(Stream):
    """Hands out at most a few bytes a read, so every header straddles reads."""

    def read(self, size: int = -1, /) -> bytes:
        return super().read(min(size, 7))


@pytest.mark.parametrize("blob", [*_zstd_variants()[:3], gz(LAYER), LAYER])
def test_short_reads(tmp_path: Path, blob: bytes) -> None:
    apply_layer(Trickle(blob), tmp_path / "r", "application/octet-stream")  # type: ignore[arg-type]
    assert (tmp_path / "r/d/f").read_bytes() == b"hello" * 1000


@pytest.mark.parametrize(("media_type", "encode"), [
    (mt.OCI_LAYER_ZSTD, zst), (mt.OCI_LAYER_GZIP, gz),
    (mt.OCI_LAYER_ZSTD, lambda data: zstandard.ZstdCompressor(write_checksum=True).compress(data)),
])
def test_every_truncation_refused(tmp_path: Path, media_type: str, encode: Any) -> None:
    blob = encode(tar(reg("a", b"a" * 3000), reg("b", os.urandom(300))))
    for cut in range(len(blob)):
        with pytest.raises(UnpackError):
            apply_layer(stream(blob[:cut]), tmp_path / str(cut), media_type)


def test_corrupt_header_in_the_middle(tmp_path: Path) -> None:
    data = bytearray(tar(reg("a", b"a"), reg("b", b"b"), reg("c", b"c")))
    data[1024 + 10] ^= 0xFF  # the name of "b": its checksum no longer matches
    with pytest.raises(UnpackError, match="invalid layer tar: bad checksum"):
        apply_layer(stream(bytes(data)), tmp_path / "r", mt.OCI_LAYER_TAR)


def test_gzip_trailing_garbage_refused(tmp_path: Path) -> None:
    with pytest.raises(UnpackError, match="corrupt gzip"):
        apply_layer(stream(gz(LAYER) + b"garbage"), tmp_path / "r", mt.OCI_LAYER_GZIP)


def test_errors_of_the_source_stream(tmp_path: Path) -> None:
    class Failing(Stream):
        def __init__(self, data: bytes, error: Exception) -> None:
            super().__init__(data)
            self.error = error

        def read(self, size: int = -1, /) -> bytes:
            if self.pos > 1000:
                raise self.error
            return super().read(min(size, 500))

    blob = gz(tar(reg("big", os.urandom(100_000))))
    with pytest.raises(UnpackError, match="cannot read the layer: boom"):
        apply_layer(Failing(blob, OSError("boom")), tmp_path / "a",  # type: ignore[arg-type]
                    mt.OCI_LAYER_GZIP)
    with pytest.raises(DigestMismatch):  # the caller's own errors pass unchanged
        apply_layer(Failing(blob, DigestMismatch("bad digest")), tmp_path / "b",  # type: ignore[arg-type]
                    mt.OCI_LAYER_GZIP)


def test_target_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UnpackError, match="not a directory"):
        apply_layer(stream(LAYER), tmp_path / "file", mt.OCI_LAYER_TAR)


# --- hostile layers ----------------------------------------------------------------------

def snapshot(top: Path, skip: Path) -> dict[str, tuple[int, bytes]]:
    """Every path below `top` but inside `skip`, with its mode and file content."""
    found: dict[str, tuple[int, bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        if Path(dirpath) == skip:
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            found[str(path.relative_to(top))] = (st.st_mode, data)
    return found


ETC_PROBE = "berth-unpack-test-must-not-exist"

HOSTILE: dict[str, list[list[Member]]] = {
    "dotdot": [[reg("../escape", b"x")]],
    "dotdot-dir": [[dir_("../newdir")]],
    "dotdot-symlink": [[sym("../ln", "x")]],
    "absolute": [[reg("{outside}/abs-pwned", b"x")]],
    "inner-dotdot": [[reg("a/../../x", b"x")]],
    "symlink-etc": [[sym("link", "/etc"), reg(f"link/{ETC_PROBE}", b"x")]],
    "symlink-absolute-outside": [[sym("link", "{outside}"), reg("link/pwned", b"x")]],
    "symlink-relative-outside": [[sym("link", "../outside"), reg("link/pwned", b"x")]],
    "symlink-chain": [[sym("a", "b"), sym("b", ".."), reg("a/outside/pwned", b"x")]],
    "symlink-nested-chain": [[dir_("d"), sym("d/up", ".."), sym("d/up2", "up/.."),
                              reg("d/up2/outside/pwned", b"x")]],
    "symlink-loop": [[sym("loop", "loop"), reg("loop/x", b"x")]],
    "symlink-lower-layer": [[sym("link", "../outside")], [reg("link/pwned", b"x")]],
    "symlink-dir-entry": [[sym("link", "../outside"), dir_("link/newdir")]],
    "symlink-symlink-entry": [[sym("link", "../outside"), sym("link/ln", "/etc")]],
    "symlink-hardlink-entry": [[reg("f"), sym("link", "../outside"), hard("link/h", "f")]],
    "hardlink-etc-passwd": [[hard("h", "/etc/passwd")]],
    "hardlink-dotdot": [[hard("h", "../outside/victim")]],
    "hardlink-through-symlink": [[sym("link", "../outside"), hard("h", "link/victim")]],
    "hardlink-missing": [[hard("h", "nothing")]],
    "hardlink-directory": [[dir_("d"), hard("h", "d")]],
    "char-device": [[special("dev/null", tarfile.CHRTYPE)]],
    "block-device": [[special("dev/sda", tarfile.BLKTYPE)]],
    "whiteout-dotdot": [[reg("../.wh.outside")]],
    "whiteout-dotdot-file": [[reg("../outside/.wh.victim")]],
    "whiteout-through-symlink": [[sym("link", "../outside"), reg("link/.wh.victim")]],
    "opaque-through-symlink": [[sym("link", "../outside"), reg("link/.wh..wh..opq")]],
    "whiteout-name-dotdot": [[reg(".wh..."), reg("x/.wh..")]],
    "replace-target": [[reg(".", b"x")]],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layers_refused(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"safe")
    target = tmp_path / "root"
    target.mkdir()
    layers = [tar(reg("ok.txt", b"fine"),
                  *((_info(i.name.format(outside=outside), i.type, i.mode,
                           linkname=i.linkname.format(outside=outside), size=i.size), d)
                    for i, d in members))
              for members in HOSTILE[case]]
    before = snapshot(tmp_path, target)
    with pytest.raises(UnpackError) as caught:
        apply(target, *layers)
    message = str(caught.value)
    assert "\n" not in message and ("entry" in message or "link" in message
                                    or "whiteout" in message), message
    assert (target / "ok.txt").read_bytes() == b"fine"  # extraction did run
    assert snapshot(tmp_path, target) == before
    assert (outside / "victim").read_bytes() == b"safe"
    assert not os.path.lexists(f"/etc/{ETC_PROBE}")
    assert not os.path.lexists(target / "h")


def test_hostile_message_names_the_entry(tmp_path: Path) -> None:
    with pytest.raises(UnpackError, match=r"layer entry 'link/pwned'.*'link' -> '/etc'"):
        apply(tmp_path / "r", tar(sym("link", "/etc"), reg("link/pwned")))
    with pytest.raises(UnpackError, match=r"layer 1: .*'dev/null': character device"):
        apply(tmp_path / "r", tar(special("dev/null", tarfile.CHRTYPE)))
    with pytest.raises(UnpackError, match=r"hard link 'h' -> '/etc/passwd': absolute"):
        apply(tmp_path / "r", tar(hard("h", "/etc/passwd")))


# --- Windows -----------------------------------------------------------------------------

class WindowsInfo(tarfile.TarInfo):
    """Only the file-type bits in the mode field, as Windows layers have them."""

    def tobuf(self, format: int | None = tarfile.PAX_FORMAT, encoding: str | None = None,
              errors: str = "surrogateescape") -> bytes:
        buf = bytearray(super().tobuf(format, encoding or tarfile.ENCODING, errors))  # type: ignore[arg-type]
        header = len(buf) - tarfile.BLOCKSIZE
        kind = {tarfile.DIRTYPE: 0o40000, tarfile.SYMTYPE: 0o120000}.get(self.type, 0o100000)
        buf[header + 100 : header + 108] = b"%07o\0" % kind
        buf[header + 148 : header + 156] = b" " * 8
        buf[header + 148 : header + 156] = b"%06o\0 " % sum(buf[header : header + 512])
        return bytes(buf)


def windows_tar(*members: Member) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT,
                      tarinfo=WindowsInfo) as t:
        for info, data in members:
            w = WindowsInfo(info.name)
            for attr in ("type", "mode", "mtime", "size", "linkname"):
                setattr(w, attr, getattr(info, attr))
            w.pax_headers = {"MSWINDOWS.fileattr": "16" if info.isdir() else "32",
                             "MSWINDOWS.rawsd": "AQAAgBQAAAAkAAAAAAAAAAAAAAABAgAAAAAABSAAAAA"
                                                "hAgAAAQIAAAAAAAUgAAAAIQIAAA=="}
            t.addfile(w, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def test_windows_layers(tmp_path: Path) -> None:
    target = tmp_path / "C"
    base = windows_tar(
        dir_("Files", 0o555), dir_("Hives", 0o555), dir_("Files/Windows", 0),
        dir_("Files/Windows/System32", 0), reg("Files/Windows/System32/a.dll", b"MZa", 0),
        reg("Files/Windows/System32/b.dll", b"MZb", 0), reg("Files/readme.txt", b"r", 0),
        reg("Files/readme.txt:Zone.Identifier", b"[ZoneTransfer]", 0),
        hard("Files/readme2.txt", "Files/readme.txt"),
        reg("Hives/Software_Delta", b"regf", 0), reg("Hives/System_Delta", b"regf", 0),
        dir_("UtilityVM"), dir_("UtilityVM/Files"), reg("UtilityVM/Files/uvm.sys", b"u", 0),
    )
    stats = apply_layers([(stream(gz(base)), mt.DOCKER_FOREIGN_LAYER)], target, windows=True)
    assert tree(target) == {"Windows/", "Windows/System32/", "Windows/System32/a.dll",
                            "Windows/System32/b.dll", "readme.txt", "readme2.txt"}
    assert (target / "Windows/System32/a.dll").read_bytes() == b"MZa"
    assert mode(target / "Windows/System32/a.dll") == 0o644 and mode(target / "Windows") == 0o755
    assert (target / "readme2.txt").stat().st_ino == (target / "readme.txt").stat().st_ino
    assert (stats.files, stats.dirs, stats.hardlinks, stats.skipped) == (3, 2, 1, 7)

    app = windows_tar(dir_("Files", 0o555), dir_("Hives", 0o555),
                      reg("Files/Windows/System32/.wh.a.dll", b"", 0), reg("Files/app.exe", b"MZ"),
                      reg("Hives/Software_Delta", b"regf", 0))
    apply_layer(stream(app), target, mt.OCI_NONDISTRIBUTABLE_TAR, windows=True)
    assert tree(target) == {"Windows/", "Windows/System32/", "Windows/System32/b.dll",
                            "readme.txt", "readme2.txt", "app.exe"}


def test_windows_layer_unpacked_as_linux_keeps_everything(tmp_path: Path) -> None:
    layer = windows_tar(dir_("Files"), reg("Files/x", b"x"), dir_("Hives"), reg("Hives/h"))
    apply(tmp_path / "r", layer)
    assert tree(tmp_path / "r") == {"Files/", "Files/x", "Hives/", "Hives/h"}


@pytest.mark.parametrize("name", ["Files/../../x", "Files/../Files/../../x"])
def test_windows_escape_refused(tmp_path: Path, name: str) -> None:
    (tmp_path / "r").mkdir()
    with pytest.raises(UnpackError, match="outside the target"):
        apply(tmp_path / "r", windows_tar(reg(name, b"x")), windows=True)
    assert tree(tmp_path) == {"r/"}


def test_windows_hard_link_outside_files_refused(tmp_path: Path) -> None:
    with pytest.raises(UnpackError, match="outside Files/"):
        apply(tmp_path / "r", windows_tar(reg("Hives/h", b"h"), hard("Files/h", "Hives/h")),
              windows=True)
