"""A storage driver that times every action of the driver it wraps, by driver and action
(`registry_storage_action_seconds`, as distribution names it) and counts failures — so
no driver carries metrics code of its own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import BinaryIO, TypeVar

from .. import metrics
from .drivers.base import Appender, FileInfo, PathNotFoundError, StorageDriver

T = TypeVar("T")


class MeteredDriver(StorageDriver):
    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name
        self.time_resolution = inner.time_resolution
        self.has_versions = inner.has_versions
        self._timers = {a: metrics.STORAGE_ACTION.labels(inner.name, a) for a in _ACTIONS}
        self._errors = {a: metrics.STORAGE_ERRORS.labels(inner.name, a) for a in _ACTIONS}

    @property
    def location(self) -> str:
        return self.inner.location

    async def _timed(self, action: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            return await call()
        except PathNotFoundError:
            raise
        except Exception:
            self._errors[action].inc()
            raise
        finally:
            self._timers[action].observe(time.perf_counter() - started)

    async def get(self, path: str) -> bytes:
        return await self._timed("GetContent", lambda: self.inner.get(path))

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        await self._timed("PutContent", lambda: self.inner.put(path, data, durable))

    async def stat(self, path: str) -> FileInfo:
        return await self._timed("Stat", lambda: self.inner.stat(path))

    async def is_object(self, path: str) -> bool:
        return await self._timed("Stat", lambda: self.inner.is_object(path))

    def version(self, path: str) -> Hashable | None:
        return self.inner.version(path)  # (not an action: no I/O to time)

    async def list_dir(self, path: str) -> list[str]:
        return await self._timed("List", lambda: self.inner.list_dir(path))

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        return await self._timed("Walk", lambda: self.inner.walk(path, prune))

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        return await self._timed("List", lambda: self.inner.list_keys(path, start_after, limit))

    async def move(self, source: str, destination: str) -> None:
        await self._timed("Move", lambda: self.inner.move(source, destination))

    async def delete(self, path: str) -> None:
        await self._timed("Delete", lambda: self.inner.delete(path))

    async def delete_object(self, path: str) -> None:
        await self._timed("Delete", lambda: self.inner.delete_object(path))

    async def reader(self, path: str, offset: int = 0,
                     length: int | None = None) -> AsyncIterator[bytes]:
        """Timed until the first bytes arrive (what the backend costs; the rest is the
        client's pace)."""
        started = time.perf_counter()
        first = True
        try:
            async for chunk in self.inner.reader(path, offset, length):
                if first:
                    self._timers["Reader"].observe(time.perf_counter() - started)
                    first = False
                yield chunk
        except PathNotFoundError:
            raise
        except Exception:
            self._errors["Reader"].inc()
            raise

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        return await self._timed("Writer", lambda: self.inner.appender(path, resume_at, fresh))

    async def open_local(self, path: str) -> BinaryIO | None:
        return await self.inner.open_local(path)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        return await self._timed("RedirectURL", lambda: self.inner.redirect_url(path, method))

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return await self.inner.abort_stale_writes(path, older_than)

    async def close(self) -> None:
        await self.inner.close()


_ACTIONS = ("GetContent", "PutContent", "Stat", "List", "Walk", "Move", "Delete", "Reader",
            "Writer", "RedirectURL")
