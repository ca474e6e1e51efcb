"""The server's background work, each piece a cleanup context of the application (it
starts with the app and is cancelled when the app stops): building the catalog index,
upload purging, scheduled garbage collection, the scrub, writing pull records. Each
pauses while the registry is read-only where it would write."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from aiohttp import web

from . import metrics
from .api.common import CONFIG, REGISTRY
from .api.notify import NOTIFIER
from .events import SHUTDOWN_FLUSH
from .storage import layout
from .storage.drivers.base import StorageError

log = logging.getLogger("registry")


@contextlib.asynccontextmanager
async def running(work: Coroutine[Any, Any, None] | None) -> AsyncIterator[None]:
    """Run `work` (when there is any) as a task for the duration of the block."""
    task = asyncio.create_task(work) if work is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def catalog_index(app: web.Application) -> AsyncIterator[None]:
    """Make the catalog index whole in the background (a root written without it is
    walked once); `_catalog` is answered from the tree meanwhile."""

    async def prepare() -> None:
        if app[REGISTRY].read_only:
            return  # (it writes; answered from the tree meanwhile)
        try:
            indexed = await app[REGISTRY].repositories.prepare()
        except StorageError as exc:  # answered from the tree until a restart succeeds
            log.warning("could not index the catalog at start: %s", exc)
            return
        if indexed is not None:
            log.info("catalog index built: %d repositories", indexed)

    async with running(prepare()):
        yield


async def close_registry(app: web.Application) -> None:
    await app[REGISTRY].close()


async def upload_purging(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONFIG].storage.maintenance.uploadpurging

    async def loop() -> None:
        delay = min(settings.interval, 60.0)  # first pass soon after start, then each interval
        while True:
            await asyncio.sleep(delay)
            delay = settings.interval
            if app[REGISTRY].read_only:
                log.info("upload purging skipped: the registry is read-only")
                continue
            try:
                purged = await app[REGISTRY].uploads.purge(settings.age, settings.dryrun)
            except Exception:
                log.exception("upload purging failed")
                continue
            if not settings.dryrun:
                metrics.PURGED_UPLOADS.inc(len(purged))
            if purged:
                verb = "would purge" if settings.dryrun else "purged"
                log.info("%s %d stale uploads", verb, len(purged))

    async with running(loop() if settings.enabled else None):
        yield


async def scheduled_gc(app: web.Application) -> AsyncIterator[None]:
    """`berth.gc.enabled`: collect every `interval`. With several replicas on one storage,
    a replica skips its turn when another started a collection within half the interval
    (the lease); two running at once is safe too (docs/gc.md)."""
    settings = app[CONFIG].berth.gc

    async def loop() -> None:
        from .storage.gc import GarbageCollector

        while True:
            await asyncio.sleep(settings.interval)
            if app[REGISTRY].read_only:
                log.info("garbage collection skipped: the registry is read-only")
                metrics.GC_RUNS.labels("skipped").inc()
                continue
            collector = GarbageCollector(app[REGISTRY])
            try:
                last = await collector.last_run()
                if last is not None and time.time() - last < settings.interval / 2:
                    metrics.GC_RUNS.labels("skipped").inc()  # another replica's turn
                    continue
                report = await collector.collect(delete_untagged=settings.deleteuntagged)
            except Exception:
                log.exception("garbage collection failed")
                metrics.GC_RUNS.labels("failed").inc()
                continue
            log.info("garbage collection: %s", report.summary())
            metrics.GC_RUNS.labels("done").inc()
            metrics.GC_SECONDS.observe(report.seconds)
            metrics.GC_FREED_BYTES.inc(report.freed_bytes)
            metrics.GC_DELETED.labels("blob").inc(len(report.deleted_blobs))
            metrics.GC_DELETED.labels("manifest").inc(len(report.deleted_manifests))

    async with running(loop() if settings.enabled else None):
        yield


async def scheduled_scrub(app: web.Application) -> AsyncIterator[None]:
    """`berth.scrub.enabled`: every `interval`, verify storage as `berth fsck` does (no
    repair) at no more than `rate` bytes/s, and log what is wrong."""
    settings = app[CONFIG].berth.scrub

    async def loop() -> None:
        from .storage.fsck import Checker, log_problems

        while True:
            await asyncio.sleep(settings.interval)
            try:
                report = await Checker(app[REGISTRY], rate=settings.rate).check()
            except Exception:
                log.exception("scrub failed")
                metrics.SCRUB_RUNS.labels("failed").inc()
                continue
            metrics.SCRUB_RUNS.labels("done").inc()
            metrics.SCRUB_PROBLEMS.set(len(report.problems))
            metrics.SCRUB_BYTES.inc(report.bytes)
            log_problems(report, "scrub")
            log.log(logging.WARNING if report.problems else logging.INFO,
                    "scrub: %s", report.summary())

    async with running(loop() if settings.enabled else None):
        yield


async def pull_records(app: web.Application) -> AsyncIterator[None]:
    """With pull retention rules: write the pulls noted in memory every
    `berth.retention.pullflush`, and once more at shutdown (storage/pulls.py)."""
    pulls = app[REGISTRY].pulls

    async def flush() -> None:
        if app[REGISTRY].read_only:
            return  # (kept in memory until writes are allowed again)
        try:
            await pulls.flush()
        except Exception:
            log.exception("writing pull records failed")

    async def loop() -> None:
        while True:
            await asyncio.sleep(app[CONFIG].berth.retention.pullflush)
            await flush()

    async with running(loop() if pulls.enabled else None):
        yield
    if pulls.enabled:
        await flush()


async def notifications(app: web.Application) -> AsyncIterator[None]:
    """Deliver webhook events while the app runs; at its end, give what is queued a few
    seconds to go out (docs/events.md)."""
    notifier = app[NOTIFIER]
    async with running(notifier.run() if notifier.enabled else None):
        yield
        if notifier.enabled:
            try:
                async with asyncio.timeout(SHUTDOWN_FLUSH):
                    await notifier.drained()
            except TimeoutError:
                log.warning("events: stopping with undelivered events")


async def layout_check(app: web.Application) -> None:
    """on_startup: refuse a root written by a newer Berth before serving anything."""
    await layout.check(app[REGISTRY].driver, write=not app[REGISTRY].read_only)
