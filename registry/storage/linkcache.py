"""What manifest reads learned from links (a tag's digest, a revision being there), kept
in memory so that a pull of a popular tag does no storage I/O but a `stat`.

An entry is trusted while the driver's version token for the link is the one seen when
it was read (local disk: a `stat` on the event loop, so another process's or replica's
retag is seen by the next request). Where the driver has no tokens (S3), an entry is
trusted for `ttl` seconds: the documented bound on how long another process's change
can go unseen (docs/consistency.md). This process's own writes drop their entries at
once. Only reads use this: pushes, deletes and garbage collection ask storage.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import NamedTuple

from client.oci.digest import Digest

from .drivers.base import PathNotFoundError, StorageDriver
from .links import link_exists, read_link

_LIMIT = 65_536  # entries; the oldest half is dropped beyond


class _Entry(NamedTuple):
    digest: Digest | None  # a link's content (None: only its presence was asked)
    token: Hashable | None
    at: float


class LinkCache:
    def __init__(self, driver: StorageDriver, ttl: float) -> None:
        self.driver = driver
        self.ttl = ttl if not driver.has_versions else 0.0
        self._entries: dict[str, _Entry] = {}

    def _cached(self, path: str) -> tuple[_Entry | None, Hashable | None]:
        """The entry still valid for `path` (if any), and the link's current token.
        Raises PathNotFoundError when the driver can tell the link is gone."""
        entry = self._entries.get(path)
        try:
            token = self.driver.version(path)
        except PathNotFoundError:
            if entry is not None:
                del self._entries[path]
            raise
        if entry is not None:
            if token is not None and token == entry.token:
                return entry, token
            if self.ttl > 0 and time.monotonic() - entry.at < self.ttl:
                return entry, token
        return None, token

    def _keep(self, path: str, entry: _Entry) -> None:
        if entry.token is None and self.ttl <= 0:
            return  # nothing would make it trustworthy
        if len(self._entries) >= _LIMIT:
            for old in list(self._entries)[: _LIMIT // 2]:
                del self._entries[old]
        self._entries[path] = entry

    async def digest(self, path: str) -> Digest | None:
        """The digest a link holds, None when there is no link."""
        try:
            entry, token = self._cached(path)
        except PathNotFoundError:
            return None
        if entry is not None and entry.digest is not None:
            return entry.digest
        digest = await read_link(self.driver, path)
        if digest is not None:
            self._keep(path, _Entry(digest, token, time.monotonic()))
        return digest

    async def present(self, path: str) -> bool:
        """Whether a link is there."""
        try:
            entry, token = self._cached(path)
        except PathNotFoundError:
            return False
        if entry is not None or token is not None:
            return True  # (a token is only given for a file that is there)
        if not await link_exists(self.driver, path):
            return False
        self._keep(path, _Entry(None, None, time.monotonic()))
        return True

    def forget(self, path: str) -> None:
        """This process changed or removed the link."""
        self._entries.pop(path, None)
