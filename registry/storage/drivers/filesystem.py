"""Local-disk driver: every blocking call runs on the driver's own thread pool.

Directories are implied by the files in them, as keys in an object store: deleting the last
file of a directory removes the directory (and its emptied parents).

Writes are crash-safe: content goes to a temporary file in the destination directory,
is fsynced, renamed over the destination, and the directory is fsynced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from .base import (
    Appender,
    FileInfo,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    StorageFull,
    key_parts,
    page_of,
)

T = TypeVar("T")
READ_CHUNK = 1024 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)
# A file modified less than this long ago has no trusted version (see `version`)
_RACY = 1.0
_CREATE_ATTEMPTS = 100  # each lost only to a prune that fell between two system calls


def _fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable. A directory already pruned (what was written there
    was deleted meanwhile) has nothing left to make durable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FileAppender(Appender):
    """Appends through an unbuffered file: what `write` returns for is in the file, and
    `abort` truncates back to where it started (a buffered file could still flush a
    refused chunk's tail after the truncation, e.g. on a full disk)."""

    def __init__(self, driver: FilesystemDriver, fobj: io.FileIO, size: int) -> None:
        self._driver, self._file, self.size = driver, fobj, size
        self._opened_at = size

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                if written is None:  # not for regular files; kept honest
                    raise OSError(errno.EAGAIN, "write would block", self._file.name)
                view = view[written:]
                self.size += written
        except OSError:
            self.size = self._file.tell()  # what a failed write left in the file
            raise

    async def write(self, data: bytes) -> None:
        await self._driver.run(self._write, data)

    def _commit(self) -> None:
        if self._driver.fsync:
            os.fsync(self._file.fileno())  # failing, the file stays open for `abort`
        self._file.close()

    async def commit(self) -> None:
        await self._driver.run(self._commit)

    def _abort(self) -> None:
        try:
            os.ftruncate(self._file.fileno(), self._opened_at)
        finally:
            self._file.close()

    async def abort(self) -> None:
        await self._driver.run(self._abort)
        self.size = self._opened_at


class FilesystemDriver(StorageDriver):
    name = "filesystem"
    has_versions = True

    def __init__(self, root: str | Path, max_threads: int = 32, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self.fsync = fsync
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="berth-fs")

    @property
    def location(self) -> str:
        return str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key_parts(key))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except FileNotFoundError as exc:
            raise PathNotFoundError(str(exc.filename)) from None
        except NotADirectoryError as exc:
            raise PathNotFoundError(str(exc.filename)) from None
        except OSError as exc:
            if exc.errno in _FULL:
                raise StorageFull(f"{exc.strerror}: {exc.filename or self.root}") from exc
            raise StorageError(f"{exc.strerror}: {exc.filename}") from exc

    async def get(self, path: str) -> bytes:
        return await self.run(self._path(path).read_bytes)

    def version(self, path: str) -> tuple[int, int, int, int] | None:
        """A `stat` on the event loop (metadata the kernel has cached: microseconds).
        Every `put` renames a new file into place, so the inode changes; but a freed
        inode number can come back, and timestamps are coarse (a few milliseconds), so a
        file replaced twice within one tick could look unchanged. Hence no token for a
        file modified within the last second: any later replacement then has a later
        modification time than the one recorded."""
        try:
            found = os.stat(f"{self._root}/{'/'.join(key_parts(path))}")
        except (FileNotFoundError, NotADirectoryError):
            raise PathNotFoundError(path) from None
        except OSError:
            return None  # (the read that follows reports it)
        if not stat.S_ISREG(found.st_mode):
            raise PathNotFoundError(path)
        if time.time() - found.st_mtime < _RACY:
            return None
        return found.st_ino, found.st_mtime_ns, found.st_ctime_ns, found.st_size

    def _in_directory(self, target: Path, operation: Callable[[], T],
                      retry: Callable[[], bool] = lambda: True) -> T:
        """Run `operation`, which creates `target`, once `target`'s directory exists.

        Directories are implied by the objects in them: a delete prunes the directories it
        empties, so another request's prune may remove a parent between our mkdir of it
        and of its child (inside `os.makedirs`), or the directory itself before the
        operation fills it. Either shows as FileNotFoundError: make the directories again.
        `retry` says whether a FileNotFoundError may be that race (a move whose source is
        gone is not). A prune only ever removes an empty directory, so each attempt has a
        fresh chance and the loop ends as soon as no prune falls in the window."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                os.makedirs(target.parent, exist_ok=True)
                return operation()
            except FileNotFoundError:
                if attempt == _CREATE_ATTEMPTS - 1 or not retry():
                    raise
                if attempt >= 10:  # losing in a row (a busy machine): let the pruner finish
                    time.sleep(0.001 * min(attempt, 50))
        raise AssertionError("unreachable")

    def _prune(self, directory: Path) -> None:
        """Remove empty directories from `directory` up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty (or already gone): stop
                return
            directory = directory.parent

    def _put(self, target: Path, data: bytes, durable: bool) -> None:
        self._in_directory(target, lambda: self._put_in(target, data, durable))

    def _put_in(self, target: Path, data: bytes, durable: bool) -> None:
        durable = durable and self.fsync
        tmp = target.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            with open(tmp, "wb") as fobj:
                fobj.write(data)
                if durable:
                    fobj.flush()
                    os.fsync(fobj.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        if durable:
            _fsync_dir(target.parent)

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        await self.run(self._put, self._path(path), data, durable)

    @staticmethod
    def _stat(key: str, target: Path) -> FileInfo:
        st = target.stat()
        return FileInfo(key, st.st_size, st.st_mtime, target.is_dir())

    async def stat(self, path: str) -> FileInfo:
        return await self.run(self._stat, path, self._path(path))

    @staticmethod
    def _list(target: Path) -> list[str]:
        return sorted(name for name in os.listdir(target) if not name.startswith(".tmp-"))

    async def list_dir(self, path: str) -> list[str]:
        return await self.run(self._list, self._path(path))

    @staticmethod
    def _walk(top: Path, prune: Callable[[str], bool], files_only: bool = False) -> list[str]:
        # os.scandir directly: os.walk's per-entry islink checks and relpath calls cost
        # more than the directory reads themselves on a catalog of thousands.
        found: list[str] = []
        stack: list[tuple[str, str]] = [(str(top), "")]
        while stack:
            directory, prefix = stack.pop()
            try:
                entries = os.scandir(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".tmp-"):
                        continue
                    relative = prefix + name
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not (files_only and is_dir):
                        found.append(relative)
                    if is_dir and not prune(name):
                        stack.append((entry.path, relative + "/"))
        return found

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        keys = await self.run(self._walk, self._path(path), lambda _: False, True)
        return page_of(keys, start_after, limit)

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        top = self._path(path)
        if not await self.run(top.is_dir):
            raise PathNotFoundError(path)
        return await self.run(self._walk, top, prune)

    def _move(self, source: Path, destination: Path) -> None:
        if not source.exists():
            raise FileNotFoundError(2, "No such file or directory", str(source))
        self._in_directory(destination, lambda: os.replace(source, destination),
                           retry=source.exists)
        if self.fsync:
            _fsync_dir(destination.parent)
        self._prune(source.parent)

    async def move(self, source: str, destination: str) -> None:
        await self.run(self._move, self._path(source), self._path(destination))

    def _delete(self, target: Path) -> None:
        """Remove `target` whole. A writer may be adding to the directory (a tag pushed
        while it is deleted) or another delete removing parts of it: go on until it is
        gone, whichever request finishes first."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
                break
            except FileNotFoundError:
                if not target.exists():
                    break
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or attempt == _CREATE_ATTEMPTS - 1:
                    raise
        self._prune(target.parent)

    async def delete(self, path: str) -> None:
        await self.run(self._delete, self._path(path))

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        fobj: BinaryIO = await self.run(open, self._path(path), "rb")
        try:
            await self.run(fobj.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                chunk = await self.run(fobj.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await self.run(fobj.close)

    def _open_append(self, target: Path, resume_at: int | None) -> tuple[io.FileIO, int]:
        fobj = self._in_directory(target, lambda: io.FileIO(target, "a"))
        try:
            size = fobj.seek(0, os.SEEK_END)
            if resume_at is not None and resume_at != size:
                if resume_at > size:
                    raise OSError(errno.EINVAL, "resume offset beyond end", str(target))
                fobj.truncate(resume_at)
                size = resume_at
        except BaseException:
            fobj.close()
            raise
        return fobj, size

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        fobj, size = await self.run(self._open_append, self._path(path), resume_at)
        return _FileAppender(self, fobj, size)

    async def open_local(self, path: str) -> BinaryIO | None:
        target = self._path(path)
        return await self.run(lambda: open(target, "rb"))

    async def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
