"""An in-memory driver: the storage interface and nothing else, for tests and throw-away
registries (`storage: {inmemory: {}}`, as distribution names it). Content is lost on exit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from .base import (
    Appender,
    FileInfo,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    key_parts,
    page_of,
    walk_keys,
)

_CHUNK = 1024 * 1024


def _clean(path: str) -> str:
    return "/".join(key_parts(path))


class _MemoryAppender(Appender):
    def __init__(self, driver: MemoryDriver, path: str, start: bytes) -> None:
        self._driver, self._path = driver, path
        self._buffer = bytearray(start)
        self._opened_at = len(start)
        self.size = len(start)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size = len(self._buffer)

    async def commit(self) -> None:
        self._driver._store(self._path, bytes(self._buffer))

    async def abort(self) -> None:
        self.size = self._opened_at


class MemoryDriver(StorageDriver):
    name = "inmemory"
    has_versions = True

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, float]] = {}

    def _store(self, path: str, data: bytes) -> None:
        self._objects[path] = (data, time.time())

    def _object(self, path: str) -> bytes:
        try:
            return self._objects[_clean(path)][0]
        except KeyError:
            raise PathNotFoundError(path) from None

    def _children(self, path: str) -> set[str]:
        prefix = _clean(path) + "/"
        return {key[len(prefix):].split("/", 1)[0] for key in self._objects
                if key.startswith(prefix)}

    async def get(self, path: str) -> bytes:
        return self._object(path)

    def version(self, path: str) -> tuple[bytes, float]:
        """The stored content and time themselves: equal only while unchanged."""
        try:
            return self._objects[_clean(path)]
        except KeyError:
            raise PathNotFoundError(path) from None

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        self._store(_clean(path), bytes(data))

    async def stat(self, path: str) -> FileInfo:
        key = _clean(path)
        if key in self._objects:
            data, modified = self._objects[key]
            return FileInfo(key, len(data), modified, False)
        inside = [m for k, (_, m) in self._objects.items() if k.startswith(key + "/")]
        if not inside:
            raise PathNotFoundError(path)
        return FileInfo(key, 0, max(inside), True)

    async def list_dir(self, path: str) -> list[str]:
        children = self._children(path)
        if not children:
            raise PathNotFoundError(path)
        return sorted(children)

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        prefix = _clean(path) + "/"
        keys = (k[len(prefix):] for k in self._objects if k.startswith(prefix))
        return page_of(keys, start_after, limit)

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        prefix = _clean(path) + "/"
        found = walk_keys((k[len(prefix):].split("/") for k in self._objects
                           if k.startswith(prefix)), prune)
        if not found:
            raise PathNotFoundError(path)
        return found

    async def move(self, source: str, destination: str) -> None:
        data = self._object(source)
        self._store(_clean(destination), data)
        del self._objects[_clean(source)]

    async def delete(self, path: str) -> None:
        key = _clean(path)
        self._objects.pop(key, None)
        for other in [k for k in self._objects if k.startswith(key + "/")]:
            del self._objects[other]

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        data = self._object(path)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, _CHUNK):
            yield data[start : min(start + _CHUNK, end)]

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        key = _clean(path)
        current = self._objects.get(key, (b"", 0.0))[0]
        if resume_at is not None:
            if resume_at > len(current):
                raise StorageError(f"resume offset {resume_at} beyond the end of {path}")
            current = current[:resume_at]
        return _MemoryAppender(self, key, current)
