"""Per-repository usage (stored bytes, tags), kept incrementally by many processes that
share one storage, with no locks and no conditional writes (the argument: docs/quotas.md).

Each process writes only its own delta object per repository and epoch
(`_usage/<epoch>/<process>`: what it added and removed since the epoch began); an exact
recount (after garbage collection) writes `_usage/baseline` with a new epoch, so deltas of
older epochs stop counting. A repository's usage is its baseline plus every delta of the
baseline's epoch or later: one listing and a few small reads.

A change is counted only when a link is new (it did not exist just before it was written):
a blob pushed twice is counted once; two processes linking the same blob at the same moment
may both count it (an overcount, until the next recount).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
import weakref
from dataclasses import dataclass

from client.oci.digest import Digest

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import link_exists, list_digests
from .parallel import each

log = logging.getLogger(__name__)

EPOCH_TRUSTED = 1.0  # seconds a process counts changes in the epoch it last read
RECOUNT_WAIT = EPOCH_TRUSTED + 0.25  # a recount waits this long after starting an epoch
CACHED = 3.0  # seconds a repository's usage is reused for quota decisions
IN_FLIGHT = 16


@dataclass(frozen=True, slots=True)
class Usage:
    bytes: int = 0
    tags: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.bytes + other.bytes, self.tags + other.tags)


def _parse(data: bytes) -> tuple[Usage, int]:
    """(usage, epoch) from a baseline or delta object; nothing for a corrupt one."""
    try:
        doc = json.loads(data)
        return Usage(int(doc["bytes"]), int(doc["tags"])), int(doc.get("epoch", 0))
    except (ValueError, KeyError, TypeError):
        log.error("corrupt usage object: %r", data[:100])
        return Usage(), 0


def _in_epoch(epoch: int | None, since: int) -> bool:
    return epoch is not None and epoch >= since


def _dump(usage: Usage, epoch: int | None = None) -> bytes:
    doc: dict[str, int] = {"bytes": usage.bytes, "tags": usage.tags}
    if epoch is not None:
        doc["epoch"] = epoch
    return json.dumps(doc).encode()


async def held(driver: StorageDriver, name: str, digest: Digest) -> bool:
    """Whether `name` holds a blob already: a layer link or a manifest revision."""
    return (await link_exists(driver, paths.layer_link(name, digest))
            or await link_exists(driver, paths.revision_link(name, digest)))


async def blob_size(driver: StorageDriver, digest: Digest) -> int | None:
    try:
        return (await driver.stat(paths.blob_data(digest))).size
    except PathNotFoundError:
        return None


async def linked_digests(driver: StorageDriver, name: str) -> set[Digest]:
    """Every blob linked into `name`: layers and manifest revisions."""
    return {*await list_digests(driver, paths.layers(name)),
            *await list_digests(driver, paths.revisions(name))}


async def tag_count(driver: StorageDriver, name: str) -> int:
    try:
        return len(await driver.list_dir(paths.tags(name)))
    except PathNotFoundError:
        return 0


async def count(driver: StorageDriver, name: str) -> Usage:
    """A repository's usage from its tree (exact at the moment each part is read)."""
    digests = sorted(await linked_digests(driver, name), key=str)
    sizes = await each(IN_FLIGHT, digests, lambda d: blob_size(driver, d))
    return Usage(sum(s for s in sizes if s is not None), await tag_count(driver, name))


async def read_epoch(driver: StorageDriver) -> int:
    try:
        text = (await driver.get(paths.USAGE_EPOCH)).decode("ascii", "replace").strip()
    except PathNotFoundError:
        return 0
    return int(text) if text.isdigit() else 0


class UsageCounter:
    """This process's side: its deltas, and reading the sums (cached for quota checks)."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver
        self.process = uuid.uuid4().hex
        self._epoch: tuple[int, float] | None = None  # (epoch, monotonic time asked)
        self._mine: dict[tuple[str, int], Usage] = {}  # (repository, epoch) -> changes
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        self._cache: dict[str, tuple[Usage, float]] = {}

    async def epoch(self) -> int:
        """The epoch to count a change in that has just been made in storage. Read at most
        EPOCH_TRUSTED seconds before: a recount waits longer than that after starting a
        new epoch, so every change counted in an older one is in the tree it walks."""
        now = time.monotonic()
        if self._epoch is None or now - self._epoch[1] >= EPOCH_TRUSTED:
            self._epoch = (await read_epoch(self.driver), now)  # `now`: before the read
            current = self._epoch[0]
            self._mine = {k: v for k, v in self._mine.items() if k[1] >= current}
        return self._epoch[0]

    async def change(self, name: str, size: int = 0, tags: int = 0) -> None:
        """Count a change already made in storage (a link written or removed)."""
        if not size and not tags:
            return
        epoch = await self.epoch()
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        async with lock:  # this process's writes of one object in order: the last holds all
            key = (name, epoch)
            mine = self._mine[key] = self._mine.get(key, Usage()) + Usage(size, tags)
            try:
                await self.driver.put(paths.usage_delta(name, epoch, self.process),
                                      _dump(mine))
            finally:
                self._cache.pop(name, None)

    async def current(self, name: str) -> Usage:
        """A repository's usage as a quota decision sees it: at most CACHED seconds old
        for changes of other processes, this process's own always included."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached is not None and now - cached[1] < CACHED:
            return cached[0]
        usage = await self.read(name)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[name] = (usage, now)
        return usage

    async def read(self, name: str) -> Usage:
        """Baseline plus the deltas of its epoch or later (no cache)."""
        keys = await self.driver.list_keys(paths.usage(name))
        baseline, since = Usage(), 0
        if "baseline" in keys:
            with contextlib.suppress(PathNotFoundError):  # (a recount rewrites it)
                baseline, since = _parse(await self.driver.get(paths.usage_baseline(name)))
        deltas = [k for k in keys if _in_epoch(paths.usage_epoch_of(k), since)]

        async def delta(key: str) -> Usage:
            try:
                return _parse(await self.driver.get(f"{paths.usage(name)}/{key}"))[0]
            except PathNotFoundError:  # (a recount removed it: its epoch is over)
                return Usage()

        total = baseline
        for found in await each(IN_FLIGHT, deltas, delta):
            total += found
        return total

    async def recount(self, names: list[str], wait: float = RECOUNT_WAIT) -> dict[str, Usage]:
        """Count repositories exactly from the tree and make that their baseline, in a new
        epoch; remove the deltas it replaces. Returns what it counted."""
        epoch = await read_epoch(self.driver) + 1
        await self.driver.put(paths.USAGE_EPOCH, str(epoch).encode())
        await asyncio.sleep(wait)  # every process now counts its changes in `epoch`
        counted: dict[str, Usage] = {}
        for name in names:
            usage = counted[name] = await count(self.driver, name)
            try:
                _, written = _parse(await self.driver.get(paths.usage_baseline(name)))
            except PathNotFoundError:
                written = 0
            if written > epoch:
                continue  # a later recount got here first
            await self.driver.put(paths.usage_baseline(name), _dump(usage, epoch))
            self._cache.pop(name, None)
            if await read_epoch(self.driver) != epoch:
                continue  # a later recount has begun: what it needs stays
            for key in await self.driver.list_keys(paths.usage(name)):
                old = paths.usage_epoch_of(key)
                if old is not None and old < epoch:
                    await self.driver.delete_object(paths.usage_listed(name, key))
        return counted
