"""Applying image layers to a directory, as `berth pull --unpack DIR` does.

A layer blob is read once, as a stream (never whole in memory): decompressed by
`client.compression` (by its media type, `+gzip` / `.tar.gzip`, `+zstd`, plain `.tar`, or
its magic bytes), and read by `tarfile` in stream mode. Blocking: callers run it in a
thread. The stream is read to its end, so a digest-verifying wrapper sees every byte;
truncated gzip, zstd or tar data and corrupt tar headers are errors, not a quiet early end.

Whiteouts follow the OCI image-spec: `dir/.wh.name` removes `dir/name` as lower layers left
it, `dir/.wh..wh..opq` removes every child of `dir` that lower layers put there. Neither
touches what the same layer writes, whichever comes first in the tar: the paths the layer
wrote are remembered, and removal keeps them (and descends into the directories holding
them). Other `.wh..wh.` names (AUFS metadata) are skipped.

Safety: paths are resolved here, component by component with `os.lstat`/`os.readlink`,
never by `tarfile` extraction. Refused with UnpackError, before anything is written for the
entry: absolute names, `..` leading out of the target, a path through a symlink that leads
out of it (an absolute symlink is never followed; a relative one only while it stays
inside), hard links whose target is absolute, outside, missing or a directory, device
files, and unknown entry types. The last component is never followed: an existing file,
symlink or directory there is replaced (a directory entry merges into an existing
directory). Symlinks are created as they are, pointing anywhere. FIFOs are skipped with a
warning (counted in `skipped`): they are harmless to create, but a FIFO left in an unpacked
tree blocks whatever later opens it. The threat is hostile layer content, not processes
changing the target while it is being unpacked.

Modes come from the tar without setuid, setgid and sticky bits (unless
`preserve_special_bits`); directories get theirs, and every mtime, after the whole layer.
Owners are set only when running as root and asked to (`preserve_owners`). When not root, a
lower directory without owner rwx is opened up while the layer writes into it and given its
mode back afterwards.

Windows layers (`windows=True`): only `Files/…` is unpacked, onto the target root; `Hives/`,
`UtilityVM/` and alternate data streams (`name:stream`) are skipped, `MSWINDOWS.*` PAX
records ignored, modes fixed (0o755 directories, 0o644 files: the tar carries only type bits).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import BinaryIO, Self

from .compression import decompressed
from .errors import UnpackError

log = logging.getLogger(__name__)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
_AUFS_META = ".wh..wh."  # .wh..wh.plnk, .wh..wh.aufs, ...: never unpacked

_BUFFER = 1024 * 1024
_MAX_SYMLINKS = 40  # as Linux's ELOOP limit
_CREATE = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
           | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
# Separators of the host other than "/": inside a tar name they are ordinary characters.
_HOST_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep and sep != "/")


@dataclass
class LayerStats:
    layers: int = 0
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    whiteouts: int = 0  # whiteout and opaque markers applied
    skipped: int = 0  # entries deliberately not unpacked (FIFOs, Hives/, AUFS metadata, ...)
    bytes_written: int = 0

    @property
    def links(self) -> int:
        return self.symlinks + self.hardlinks

    def __add__(self, other: LayerStats) -> LayerStats:
        return LayerStats(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def apply_layer(
    stream: BinaryIO, target: Path, media_type: str, *, windows: bool = False,
    preserve_owners: bool = False, preserve_special_bits: bool = False,
) -> LayerStats:
    """Apply one layer blob, read from `stream` to its end, onto `target` (made if missing)."""
    root = _prepare(target)
    decoded = decompressed(stream, media_type)
    layer = _Layer(root, windows=windows, owners=preserve_owners and _is_root() and not windows,
                   special_bits=preserve_special_bits)
    try:
        with tarfile.open(fileobj=decoded, mode="r|", tarinfo=_TarInfo) as tar:
            layer.apply(tar)
        while decoded.read(_BUFFER):  # the end of the tar, then checksums and trailing data
            pass
        while stream.read(_BUFFER):
            pass
    except tarfile.TarError as e:
        raise UnpackError(f"invalid layer tar: {e}") from e
    except RecursionError as e:
        raise UnpackError("the layer's directory tree is too deep to remove") from e
    return layer.stats


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _prepare(target: Path) -> str:
    try:
        target.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UnpackError(f"{target} is not a directory") from None
    except OSError as e:
        raise UnpackError(f"cannot create {target}: {e.strerror or e}") from e
    return os.path.realpath(target)


class _TarInfo(tarfile.TarInfo):
    """A truncated or corrupt header is an error, where tarfile would end the archive there."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        try:
            return super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            if buf and (len(buf) < tarfile.BLOCKSIZE or buf.count(0) != len(buf)):
                raise UnpackError(f"invalid layer tar: {e}") from e
            raise  # no more data, or a zero block: the end of the archive


# --- paths --------------------------------------------------------------------------------

def _clean(name: str, what: str) -> list[str]:
    """The components of a tar name with `.` and `..` resolved lexically; refuses escapes."""
    if name.startswith("/"):
        raise UnpackError(f"{what}: absolute path")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnpackError(f"{what}: path leads outside the target")
            parts.pop()
        elif "\0" in part or any(sep in part for sep in _HOST_SEPARATORS):
            raise UnpackError(f"{what}: invalid character in {part!r}")
        else:
            parts.append(part)
    return parts


def _set_mtime(where: str | int, mtime: float, *, follow: bool = True) -> None:
    try:
        if isinstance(where, int):
            os.utime(where, (mtime, mtime))
        else:
            os.utime(where, (mtime, mtime), follow_symlinks=follow)
    except (OverflowError, ValueError):  # a timestamp the host cannot store: left as it is
        pass


def _open_up(top: str) -> None:
    """Give owner rwx to every directory under `top` (not root: so it can be removed)."""
    stack = [top]
    while stack:
        path = stack.pop()
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            continue
        if st.st_mode & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
        with os.scandir(path) as entries:
            stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))


class _Layer:
    """Applying one layer: what it wrote, and the directory metadata set at its end."""

    def __init__(self, root: str, *, windows: bool, owners: bool, special_bits: bool) -> None:
        self.root = root
        self.windows = windows
        self.owners = owners
        self.mask = 0o7777 if special_bits else 0o777
        self.as_root = _is_root()
        self.stats = LayerStats(layers=1)
        self.written: set[str] = {root}  # paths this layer wrote, and their ancestors
        # Set at the end: path: (mode, mtime, when), unless the directory was removed since.
        self.dirs: dict[str, tuple[int, float | None, int]] = {}
        self.removed: dict[str, int] = {}  # directory path: when last removed
        self.clock = 0
        self.fifos: set[tuple[str, ...]] = set()  # skipped: hard links to them are skipped too

    def apply(self, tar: tarfile.TarFile) -> None:
        while (member := tar.next()) is not None:
            tar.members.clear()  # type: ignore[attr-defined]  # stream mode: flat memory
            try:
                self._entry(tar, member)
            except OSError as e:
                raise UnpackError(f"layer entry {member.name!r}: {e.strerror or e}") from e
        try:
            self._finish()
        except OSError as e:
            raise UnpackError(f"setting directory modes: {e.strerror or e}") from e

    # entries

    def _parts(self, member: tarfile.TarInfo) -> list[str] | None:
        """Where an entry goes, as components under the root; None if it is not unpacked."""
        parts = _clean(member.name, f"layer entry {member.name!r}")
        if self.windows:
            if not parts or parts[0].lower() != "files":
                return None  # Hives/, UtilityVM/, ...
            parts = parts[1:]
            if parts and ":" in parts[-1]:
                return None  # an alternate data stream
        return parts

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        what = f"layer entry {member.name!r}"
        parts = self._parts(member)
        if parts is None or any(p.startswith(_AUFS_META) for p in parts[:-1]) or (
                parts and parts[-1].startswith(_AUFS_META) and parts[-1] != OPAQUE):
            self.stats.skipped += 1
            return
        if not parts:
            if member.isdir():
                return  # the target keeps its own mode and times
            raise UnpackError(f"{what}: would replace the target directory")
        leaf = parts[-1]
        if leaf.startswith(WHITEOUT):
            self._whiteout(member, parts)
            return
        if member.ischr() or member.isblk():
            kind = "character" if member.ischr() else "block"
            raise UnpackError(f"{what}: {kind} device (device files are not unpacked)")
        if member.isfifo():
            log.warning("skipping FIFO %r: FIFOs are not unpacked", member.name)
            self.fifos.add(tuple(parts))
            self.stats.skipped += 1
            return
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise UnpackError(f"{what}: unsupported entry type {member.type!r}")
        source = self._link_source(member) if member.islnk() else None
        if source == "":
            self.stats.skipped += 1  # a hard link to a skipped FIFO
            return
        parent = self._resolve(parts[:-1], what, create=True)
        assert parent is not None
        path = os.path.join(parent, leaf)
        if member.isdir():
            self._dir(member, path)
        elif member.issym():
            self._remove(path)
            os.symlink(member.linkname, path)
            if self.owners:
                os.chown(path, member.uid, member.gid, follow_symlinks=False)
            if os.utime in os.supports_follow_symlinks:
                _set_mtime(path, member.mtime, follow=False)
            self.stats.symlinks += 1
        elif source is not None:
            if source == path:
                raise UnpackError(f"{what}: hard link to itself")
            self._remove(path)
            os.link(source, path, follow_symlinks=False)  # a symlink source: the link itself
            self.stats.hardlinks += 1
        else:
            self._file(tar, member, path)
        while path not in self.written:
            self.written.add(path)
            path = os.path.dirname(path)

    def _mode(self, member: tarfile.TarInfo) -> int:
        if self.windows:
            return 0o755 if member.isdir() else 0o644
        return stat.S_IMODE(member.mode) & self.mask

    def _dir(self, member: tarfile.TarInfo, path: str) -> None:
        try:
            st: os.stat_result | None = os.lstat(path)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISDIR(st.st_mode):
            os.unlink(path)
            st = None
        if st is None:
            os.mkdir(path, 0o700)
        elif not self.as_root and st.st_mode & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
        if self.owners:
            os.chown(path, member.uid, member.gid, follow_symlinks=False)
        self.dirs[path] = (self._mode(member), member.mtime, self._tick())
        self.stats.dirs += 1

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        data = tar.extractfile(member)
        if data is None:
            raise UnpackError(f"layer entry {member.name!r}: no data")
        self._remove(path)
        with data, open(os.open(path, _CREATE, 0o600), "wb") as out:
            shutil.copyfileobj(data, out, _BUFFER)
            out.flush()
            fd = out.fileno()
            if self.owners:
                os.fchown(fd, member.uid, member.gid)  # before chmod: chown clears setuid
            os.fchmod(fd, self._mode(member))
            _set_mtime(fd, member.mtime)
            self.stats.bytes_written += out.tell()
        self.stats.files += 1

    def _link_source(self, member: tarfile.TarInfo) -> str:
        """The existing path a hard link entry links to, checked ("" for a skipped FIFO)."""
        what = f"hard link {member.name!r} -> {member.linkname!r}"
        parts = _clean(member.linkname, what)
        if self.windows:
            if not parts or parts[0].lower() != "files":
                raise UnpackError(f"{what}: link target outside Files/")
            parts = parts[1:]
        if not parts:
            raise UnpackError(f"{what}: link target is the target directory")
        if tuple(parts) in self.fifos:
            return ""
        parent = self._resolve(parts[:-1], what, create=False)
        source = os.path.join(parent, parts[-1]) if parent is not None else None
        try:
            st = os.lstat(source) if source is not None else None
        except FileNotFoundError:
            st = None
        if source is None or st is None:
            raise UnpackError(f"{what}: link target missing (it must come first)")
        if stat.S_ISDIR(st.st_mode):
            raise UnpackError(f"{what}: link target is a directory")
        return source

    def _whiteout(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        what = f"whiteout {member.name!r}"
        leaf = parts[-1]
        hidden = leaf[len(WHITEOUT):]
        if leaf != OPAQUE and hidden in ("", ".", ".."):
            raise UnpackError(f"{what}: invalid whiteout name")
        parent = self._resolve(parts[:-1], what, create=False)
        self.stats.whiteouts += 1
        if parent is None:
            return  # nothing below to hide
        if leaf == OPAQUE:
            for child in os.listdir(parent):
                self._purge(os.path.join(parent, child))
        else:
            self._purge(os.path.join(parent, hidden))

    # the tree

    def _resolve(self, parts: list[str], what: str, *, create: bool) -> str | None:
        """The real directory `parts` names under the root, following symlinks only while
        they stay inside it. Missing directories are made when `create`; else None."""
        current, pending, links, via = self.root, parts[::-1], 0, ""
        while pending:
            part = pending.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if current == self.root:
                    raise UnpackError(f"{what}: goes through symlink {via}, "
                                      "which leads outside the target")
                current = os.path.dirname(current)
                continue
            if "\0" in part or any(sep in part for sep in _HOST_SEPARATORS):
                raise UnpackError(f"{what}: invalid character in {part!r}")
            path = os.path.join(current, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(path, 0o755)
                current = path
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    raise UnpackError(f"{what}: too many levels of symlinks")
                link = os.readlink(path)
                via = f"{os.path.relpath(path, self.root)!r} -> {link!r}"
                if link.startswith("/") or os.path.isabs(link):
                    raise UnpackError(f"{what}: goes through symlink {via}, "
                                      "which points outside the target")
                pending.extend(reversed(link.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                if not create:
                    return None
                raise UnpackError(f"{what}: {os.path.relpath(path, self.root)!r} "
                                  "is not a directory")
            self._writable(path, st)
            current = path
        return current

    def _writable(self, path: str, st: os.stat_result) -> None:
        """Not root: owner rwx on a directory we write into, its mode given back at the end."""
        if not self.as_root and st.st_mode & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
            self.dirs.setdefault(path, (stat.S_IMODE(st.st_mode), None, self._tick()))

    def _tick(self) -> int:
        self.clock += 1
        return self.clock

    def _remove(self, path: str) -> None:
        """Clear the way for a new entry; the last component is never followed."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            self._rmtree(path)
            self.removed[path] = self._tick()
        else:
            os.unlink(path)

    def _rmtree(self, path: str) -> None:
        try:
            shutil.rmtree(path)
        except PermissionError:
            if self.as_root:
                raise
            _open_up(path)
            shutil.rmtree(path)

    def _purge(self, top: str) -> None:
        """Remove what lower layers left at `top`, keeping what this layer wrote."""
        stack = [top]
        while stack:
            path = stack.pop()
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if path not in self.written:
                self._remove(path)
            elif stat.S_ISDIR(st.st_mode):
                self._writable(path, st)
                stack.extend(os.path.join(path, child) for child in os.listdir(path))

    def _finish(self) -> None:
        """Directory modes and mtimes, deepest first, on the directories they were for."""
        for path, (mode, mtime, when) in sorted(
                self.dirs.items(), key=lambda item: item[0].count(os.sep), reverse=True):
            if self._removed_since(path, when) or os.path.realpath(path) != path:
                continue  # a directory made since, or a path now through a symlink
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                os.chmod(path, mode)
                if mtime is not None:
                    _set_mtime(path, mtime)

    def _removed_since(self, path: str, when: int) -> bool:
        """Whether `path` or a directory above it was removed after `when`."""
        if not self.removed:
            return False
        while path != self.root:
            if self.removed.get(path, 0) > when:
                return True
            path = os.path.dirname(path)
        return False
