"""Builds the aiohttp application (config → storage → routes → middlewares) and serves it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .api import blobs, catalog, manifests, referrers, tags, uploads
from .api.common import CONFIG, REGISTRY
from .api.middleware import spec_errors
from .config import Config, split_address
from .storage import Registry, open_registry

log = logging.getLogger("registry")


def build_app(config: Config, registry: Registry | None = None) -> web.Application:
    app = web.Application(middlewares=[spec_errors], handler_args={"max_field_size": 65536})
    app[CONFIG] = config
    app[REGISTRY] = registry or open_registry(config)
    catalog.routes(app)
    uploads.routes(app)  # before blobs: /blobs/uploads/ must win over /blobs/<digest>
    blobs.routes(app)
    manifests.routes(app)
    tags.routes(app)
    referrers.routes(app)
    app.cleanup_ctx.append(_upload_purging)
    app.on_cleanup.append(_close_registry)
    return app


async def _close_registry(app: web.Application) -> None:
    await app[REGISTRY].close()


async def _upload_purging(app: web.Application) -> AsyncIterator[None]:
    settings = app[CONFIG].storage.maintenance.uploadpurging

    async def loop() -> None:
        delay = min(settings.interval, 60.0)  # first pass soon after start, then each interval
        while True:
            await asyncio.sleep(delay)
            delay = settings.interval
            try:
                purged = await app[REGISTRY].uploads.purge(settings.age, settings.dryrun)
            except Exception:
                log.exception("upload purging failed")
                continue
            if purged:
                verb = "would purge" if settings.dryrun else "purged"
                log.info("%s %d stale uploads", verb, len(purged))

    task = asyncio.create_task(loop()) if settings.enabled else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record), "level": record.levelname.lower(),
            "logger": record.name, "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(config: Config) -> None:
    level = {"warn": "WARNING"}.get(config.log.level, config.log.level.upper())
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if config.log.formatter == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)


def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM (handled by aiohttp's runner); in-flight requests get
    `http.draintimeout` seconds to finish."""
    configure_logging(config)
    host, port = split_address(config.http.addr)
    app = build_app(config)
    log.info(
        "berth registry listening on %s:%d (storage: %s)",
        host, port, app[REGISTRY].driver.name,
    )
    web.run_app(
        app, host=host, port=port, print=None,
        shutdown_timeout=config.http.draintimeout,
        access_log=None if config.log.accesslog.disabled else logging.getLogger("registry.access"),
        handle_signals=True,
    )
