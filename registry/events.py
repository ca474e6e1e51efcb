"""Webhook notifications, as the distribution registry sends them (docs/events.md): each
endpoint has its own bounded queue and one sender, so a slow or dead endpoint delays only
its own events, never a push; a failed delivery is retried, with a pause of `backoff`
once `threshold` attempts in a row have failed; events a full queue cannot take are
dropped, logged once a minute and counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from . import metrics
from .config import EndpointSettings, NotificationsSettings

log = logging.getLogger("registry.events")

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
BATCH = 100  # events in one envelope at most
SHUTDOWN_FLUSH = 5.0  # seconds given to queued events when the server stops

Event = dict[str, Any]


class Endpoint:
    def __init__(self, settings: EndpointSettings) -> None:
        self.settings = settings
        self.queue: asyncio.Queue[Event] = asyncio.Queue(settings.queuesizelimit)
        self._ignored_types = {*settings.ignoredmediatypes, *settings.ignore.mediatypes}
        self._ignored_actions = set(settings.ignore.actions)
        self._dropped = 0
        self._last_warning = -60.0
        name = settings.name
        self._sent = metrics.EVENTS_SENT.labels(name)
        self._failed = metrics.EVENTS_FAILED.labels(name)
        self._dropped_metric = metrics.EVENTS_DROPPED.labels(name)
        self._pending = metrics.EVENTS_PENDING.labels(name)

    def wants(self, event: Event) -> bool:
        return (event["action"] not in self._ignored_actions
                and event["target"].get("mediaType") not in self._ignored_types)

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self._dropped += 1
            self._dropped_metric.inc()
            now = time.monotonic()
            if now - self._last_warning >= 60:
                log.warning("events: %s's queue is full (%d events): dropped %d since the "
                            "last report", self.settings.name, self.queue.maxsize,
                            self._dropped)
                self._last_warning, self._dropped = now, 0
        self._pending.set(self.queue.qsize())

    def _batch(self, first: Event) -> list[Event]:
        batch = [first]
        while len(batch) < BATCH and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        return batch

    async def send(self, session: aiohttp.ClientSession) -> None:
        """Deliver events in order, for as long as the server runs."""
        settings = self.settings
        headers = {"Content-Type": MEDIA_TYPE}
        extra = [(k, v) for k, values in settings.headers.items() for v in values]
        while True:
            batch = self._batch(await self.queue.get())
            body = json.dumps({"events": batch}).encode()
            failures = 0
            while True:
                try:
                    async with session.post(
                            settings.url, data=body, headers=[*headers.items(), *extra],
                            timeout=aiohttp.ClientTimeout(total=settings.timeout)) as reply:
                        if 200 <= reply.status < 400:
                            break
                        reason = f"answered {reply.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    reason = str(exc) or type(exc).__name__
                failures += 1
                self._failed.inc()
                if failures == 1 or failures == settings.threshold:
                    log.warning("events: delivery to %s failed (%s); retrying", settings.name,
                                reason)
                await asyncio.sleep(settings.backoff if failures >= settings.threshold
                                    else min(settings.backoff, 0.1 * failures))
            for _ in batch:
                self.queue.task_done()
            self._sent.inc(len(batch))
            self._pending.set(self.queue.qsize())


class Notifier:
    """Hands each event to every endpoint that wants it; `run` delivers them."""

    def __init__(self, settings: NotificationsSettings) -> None:
        self.settings = settings
        self.endpoints = [Endpoint(e) for e in settings.endpoints if not e.disabled]

    @property
    def enabled(self) -> bool:
        return bool(self.endpoints)

    def emit(self, events: Iterable[Event]) -> None:
        for event in events:
            for endpoint in self.endpoints:
                if endpoint.wants(event):
                    endpoint.offer(event)

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            senders = [asyncio.create_task(e.send(session)) for e in self.endpoints]
            try:
                await asyncio.gather(*senders)
            finally:
                for sender in senders:
                    sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(*senders, return_exceptions=True)

    async def drained(self) -> None:
        """Return once every queued event is delivered (the caller bounds the wait)."""
        await asyncio.gather(*(e.queue.join() for e in self.endpoints))
