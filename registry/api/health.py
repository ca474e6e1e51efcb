"""Probes for operators and orchestrators: `/livez` (the process serves), `/readyz`
(storage answers and takes a write, the process is not shutting down), and the
distribution registry's `/debug/health` (a JSON object of failing checks). They need no
credentials and never touch blob data; the storage check runs in the background every
`health.storagedriver.interval`, so a probe costs nothing but reading its result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler

from ..config import StorageDriverHealth
from ..storage import Registry

log = logging.getLogger("registry.health")

LIVE, READY, DEBUG_HEALTH = "/livez", "/readyz", "/debug/health"
_PROBES = frozenset({LIVE, READY, DEBUG_HEALTH})
PROBE_TIMEOUT = 10.0  # seconds a storage check may take before it counts as failed


class Health:
    def __init__(self, registry: Registry, settings: StorageDriverHealth) -> None:
        self.registry, self.settings = registry, settings
        self.check_name = f"storagedriver_{registry.driver.name}"
        self.draining = False  # set first thing on SIGTERM
        self.failures = 0  # storage checks failed in a row
        self.error: str | None = None  # the latest failure's reason
        self._checked = False

    @property
    def storage_failing(self) -> bool:
        return self.failures > 0 and self.failures >= max(self.settings.threshold, 1)

    async def check_storage(self) -> None:
        try:
            async with asyncio.timeout(min(self.settings.interval, PROBE_TIMEOUT)):
                await self.registry.probe()
        except Exception as exc:  # any failure is the check's answer
            self.failures += 1
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = "storage did not answer in time"
            if self.error != reason:
                log.error("storage health check failed: %s", reason)
            self.error = reason
        else:
            if self.error is not None:
                log.info("storage health check passes again")
            self.failures, self.error = 0, None
        self._checked = True

    async def run(self) -> None:
        while True:
            await self.check_storage()
            await asyncio.sleep(self.settings.interval)

    async def _first_check(self) -> None:
        if not self._checked:
            await self.check_storage()

    # -- the answers -------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def ready(self, request: web.Request) -> web.Response:
        await self._first_check()
        reasons = []
        if self.draining:
            reasons.append("shutting down")
        if self.storage_failing:
            reasons.append(f"{self.check_name}: {self.error}")
        if reasons:
            return web.Response(status=503, text="".join(f"{r}\n" for r in reasons))
        # (read-only is ready: reads are served)
        return web.Response(text="ok (read-only)\n" if self.registry.read_only else "ok\n")

    async def debug_health(self, request: web.Request) -> web.Response:
        """distribution's format: `{}` and 200 when all is well, else 503 and
        `{"<check>": "<error>"}`."""
        await self._first_check()
        failing: dict[str, str] = {}
        if self.settings.enabled and self.storage_failing:
            failing[self.check_name] = self.error or "failing"
        return web.Response(status=503 if failing else 200, text=json.dumps(failing),
                            content_type="application/json")

    def routes(self) -> dict[str, Handler]:
        """The probes by path (every path is in _PROBES)."""
        return {LIVE: self.live, READY: self.ready, DEBUG_HEALTH: self.debug_health}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answers the probes ahead of access control (they need no credentials)."""
        if request.path not in _PROBES or request.method not in ("GET", "HEAD"):
            return await handler(request)
        return await self.routes()[request.path](request)

    async def checking(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: the background storage check, while the app runs."""
        task = asyncio.create_task(self.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
