"""The storage-driver interface every backend implements.

Paths are `/`-separated keys relative to the driver's root, e.g.
`docker/registry/v2/blobs/sha256/ab/ab12…/data`. Directories are implied by keys.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import BinaryIO


class StorageError(Exception):
    """The backend failed (I/O error, unreachable service): not the caller's fault."""


class StorageFull(StorageError):
    """The backend has no room for the write (disk full, quota reached)."""


class PathNotFoundError(StorageError):
    def __init__(self, path: str) -> None:
        super().__init__(f"path not found: {path}")
        self.path = path


@dataclass(frozen=True, slots=True)
class FileInfo:
    path: str
    size: int
    modified: float  # seconds since the epoch
    is_dir: bool


class Appender(abc.ABC):
    """An open stream that appends to one object. What is written counts once `commit`
    returns; `abort` drops it, leaving the object as it was when opened."""

    size: int  # bytes in the object, including those there before it was opened

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> None:
        """Make everything written durable and release the stream. When it fails the
        caller aborts."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Drop what was written since opening and release the stream."""


def key_parts(path: str) -> list[str]:
    """The components of a storage path, refusing any that could leave the driver's root
    or alias another key (empty, `.`, `..`): the one check every driver makes."""
    parts = path.strip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe storage path {path!r}")
    return parts


def page_of(keys: Iterable[str], start_after: str | None, limit: int | None) -> list[str]:
    """`list_keys` over keys at hand: sorted, after `start_after`, at most `limit`."""
    ordered = sorted(k for k in keys if start_after is None or k > start_after)
    return ordered if limit is None else ordered[:limit]


def walk_keys(relative_keys: Iterable[list[str]], prune: Callable[[str], bool]) -> list[str]:
    """`walk` for flat key spaces: each key (as its path components below the walked path)
    contributes itself and the directories it implies, stopping below a pruned directory."""
    found: set[str] = set()
    for parts in relative_keys:
        for depth in range(len(parts)):
            found.add("/".join(parts[: depth + 1]))
            if depth < len(parts) - 1 and prune(parts[depth]):
                break
    return sorted(found)


class StorageDriver(abc.ABC):
    name: str
    # How coarse the modification times of `stat` are, in seconds (S3's HEAD: whole
    # seconds); garbage collection widens its margins by it.
    time_resolution: float = 0.0
    # Whether `version` gives tokens (local storage); without, readers' caches use a TTL
    has_versions: bool = False

    @property
    def location(self) -> str:
        """Where the data lives, for messages (a directory, a bucket and prefix)."""
        return self.name

    @abc.abstractmethod
    async def get(self, path: str) -> bytes:
        """The whole content of a small object (links, manifests)."""

    @abc.abstractmethod
    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        """Replace an object atomically: readers see the old content or the new.
        `durable=False`: the caller does not need it to survive a crash of the machine
        (a drive may skip its fsyncs)."""

    @abc.abstractmethod
    async def stat(self, path: str) -> FileInfo: ...

    async def is_object(self, path: str) -> bool:
        """Whether an object written by `put` is at `path` (not a directory): the cheap
        question link lookups ask, one request on object stores. (Appended objects are
        asked about with `stat`.)"""
        try:
            return not (await self.stat(path)).is_dir
        except PathNotFoundError:
            return False

    def version(self, path: str) -> Hashable | None:
        """A token that stays equal while the object at `path` is unchanged, answered
        without I/O that could block (a `stat` of a local file), so that readers can keep
        what they read of a small object (a tag link) and only re-read it when the token
        changes. None: the driver cannot vouch for the object at the moment (an object
        store, or a file written too recently for its timestamps to tell two versions
        apart); the caller reads it. Raises PathNotFoundError when the driver can tell
        cheaply that nothing is there."""
        return None

    @abc.abstractmethod
    async def list_dir(self, path: str) -> list[str]:
        """Names of the direct children of a directory, sorted."""

    @abc.abstractmethod
    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        """Every path below `path` (relative to it), not descending into directories
        whose name satisfies `prune` (those directories are still listed)."""

    @abc.abstractmethod
    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        """Objects below `path` (relative keys, `/` inside), in byte order, those after
        `start_after` only, at most `limit`: a page of a flat index, one request on object
        stores. A missing `path` has no keys."""

    @abc.abstractmethod
    async def move(self, source: str, destination: str) -> None:
        """Atomically replace `destination` with `source`."""

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Delete an object or a whole directory; a missing path is not an error."""

    async def delete_object(self, path: str) -> None:
        """Delete the one object `put` or `move` wrote at `path` (not a directory, not an
        upload session); a missing one is not an error. Where `delete` must look for what
        lies below a path (S3: two listings and the multipart uploads), this is one
        request."""
        await self.delete(path)

    @abc.abstractmethod
    def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Stream an object's bytes from `offset`, `length` of them (all when None)."""

    @abc.abstractmethod
    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        """Open an object for appending, creating it when missing. With `resume_at`, data
        past that offset (a torn earlier write) is discarded first. `fresh`: the caller
        knows nothing is there yet (a driver may skip looking)."""

    async def open_local(self, path: str) -> BinaryIO | None:
        """A local file object for zero-copy `sendfile`, when the backend has one."""
        return None

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL a client may fetch the object from directly (e.g. presigned), if any."""
        return None

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        """Clean up writes below `path` that a crashed process left half done (e.g. S3
        multipart uploads) and that started more than `older_than` seconds ago; returns how
        many. Drivers whose writes cannot be left half done have nothing to do."""
        return 0

    async def close(self) -> None:  # noqa: B027 - optional hook, most drivers need nothing
        """Release pools and connections."""
