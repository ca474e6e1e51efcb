"""Builds the aiohttp application (config → storage → routes → middlewares) and serves it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import auth, background, tracing
from .api import (
    blobs,
    catalog,
    manifests,
    metricsexport,
    notify,
    referrers,
    requestid,
    requestmetrics,
    tags,
    uploads,
)
from .api.accesslog import access_logger
from .api.common import CONFIG, REGISTRY
from .api.framing import SpecRunner
from .api.health import Health
from .api.inflight import InFlight
from .api.maintenance import read_only
from .api.middleware import spec_errors
from .config import Config, ConfigError, TLSSettings, split_address
from .events import Notifier
from .logs import configure_logging
from .storage import Registry, open_registry

log = logging.getLogger("registry")
HEALTH = web.AppKey("health", Health)
IN_FLIGHT = web.AppKey("in_flight", InFlight)

# The spec forbids limiting how many `?tag=` a manifest push carries: allow long URLs.
HANDLER_ARGS = {"max_line_size": 1 << 20, "max_field_size": 1 << 16}


def build_app(config: Config, registry: Registry | None = None,
              host_jobs: bool = True) -> web.Application:
    """The application; `host_jobs`: also run the background work that one process per
    host does (catalog index, upload purging, scheduled GC, the scrub: worker 0's)."""
    gate: list[Middleware] = []
    app = web.Application(handler_args=HANDLER_ARGS)
    if config.auth is not None:
        gate.append(auth.install(app, config.auth, config.http.bodytimeout).middleware)
    app[CONFIG] = config
    app[REGISTRY] = registry or open_registry(config)
    health = app[HEALTH] = Health(app[REGISTRY], config.health.storagedriver)
    app[notify.NOTIFIER] = Notifier(config.notifications)
    operators: list[Middleware] = [health.middleware]  # first: no credentials asked
    prometheus = config.http.debug.prometheus
    if prometheus.enabled and prometheus.mainlistener:
        operators.append(metricsexport.serving(prometheus.path))
        requestmetrics.name_path(prometheus.path, "metrics")
    if (tracer := tracing.tracer()) is not None:  # outermost: a span ends once sent
        from .api import requesttracing

        app.middlewares.append(requesttracing.middleware(tracer, config.http.trustedproxies))
    # read-only refusals before access control
    # (the request id inside `in_flight`, which sends the response: it adds a header)
    in_flight = app[IN_FLIGHT] = InFlight()
    app.middlewares.extend([in_flight.middleware, *operators, requestid.assign, spec_errors,
                            read_only, *gate])
    # Each route is told apart by its last path segments, so only uploads-before-blobs
    # matters; manifests first: the most frequent request is routed soonest.
    manifests.routes(app)
    catalog.routes(app)
    uploads.routes(app)  # before blobs: /blobs/uploads/ must win over /blobs/<digest>
    blobs.routes(app)
    tags.routes(app)
    referrers.routes(app)
    app.cleanup_ctx.append(health.checking)
    if host_jobs:
        app.cleanup_ctx.extend([background.catalog_index, background.upload_purging,
                                background.scheduled_gc, background.scheduled_scrub])
    app.cleanup_ctx.extend([background.pull_records, background.notifications])
    app.on_startup.insert(0, background.layout_check)  # before any background work
    app.on_cleanup.append(background.close_registry)
    return app


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """A worker whose supervisor is gone (killed: it could not pass SIGTERM on) stops
    as if told to, rather than serve on unsupervised."""
    while os.getppid() == parent:  # noqa: ASYNC110 - polled: no event says a parent died
        await asyncio.sleep(1.0)
    log.error("the supervisor (pid %d) is gone: stopping", parent)
    stop.set()


def tls_context(settings: TLSSettings) -> ssl.SSLContext:
    """Server-side TLS: 1.2 or newer, the certificate chain and key from PEM files, and
    client certificates required when `clientcas` is set."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = (ssl.TLSVersion.TLSv1_3 if settings.minimumtls == "tls1.3"
                               else ssl.TLSVersion.TLSv1_2)
    try:
        context.load_cert_chain(settings.certificate, settings.key)
        for bundle in settings.clientcas:
            context.load_verify_locations(bundle)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"http.tls: cannot load {settings.certificate} / {settings.key} "
                          f"or the client CAs: {exc.strerror or exc}") from None
    if settings.clientcas:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def debug_app(app: web.Application) -> web.Application:
    """What `http.debug.addr` serves: the probes (and the metrics), never the API."""
    debug = web.Application()
    for path, handler in app[HEALTH].routes().items():
        debug.router.add_get(path, handler)
    prometheus = app[CONFIG].http.debug.prometheus
    if prometheus.enabled:
        debug.router.add_get(prometheus.path, metricsexport.export)
    return debug


def _apply_reload(app: web.Application, reload: Callable[[], Config] | None) -> None:
    """SIGHUP: re-read the config file and apply what can change while serving (read-only
    mode); the auth files are re-read as well. Anything else takes a restart."""
    if reload is None:
        return
    try:
        config = reload()
    except ConfigError as exc:
        log.error("config reload failed, keeping the running settings: %s", exc)
        return
    registry = app[REGISTRY]
    read_only = config.storage.maintenance.readonly.enabled
    if read_only != registry.read_only:
        registry.read_only = read_only
        log.warning("read-only mode is %s", "on: writes are refused" if read_only else "off")
    else:
        log.info("config reloaded (read-only mode %s)", "on" if read_only else "off")


@dataclasses.dataclass
class Worker:
    """One of `count` processes (registry/workers.py), serving sockets it inherited: the
    main listener's, then the debug listener's."""

    index: int
    count: int
    sockets: list[socket.socket]
    parent: int  # the supervisor
    ready: int  # a pipe: one byte once serving


async def _run(config: Config, reload: Callable[[], Config] | None = None,
               worker: Worker | None = None) -> None:
    host, port = split_address(config.http.addr)
    app = build_app(config, host_jobs=worker is None or worker.index == 0)
    in_flight = app[IN_FLIGHT]
    access_log = logging.getLogger("registry.access")  # (the metrics need it even when off)
    access_log.disabled = config.log.accesslog.disabled
    runner = SpecRunner(app, access_log=access_log,
                        access_log_class=access_logger(config.http.trustedproxies,
                                                        config.log.formatter == "json"),
                        shutdown_timeout=5.0,
                        head_timeout=config.http.readheadertimeout,
                        keepalive_timeout=config.http.idletimeout)
    await runner.setup()
    debug_runner: web.AppRunner | None = None
    try:
        tls = tls_context(config.http.tls) if config.http.tls else None
        site: web.BaseSite
        if worker is not None:
            site = web.SockSite(runner, worker.sockets[0], ssl_context=tls)
        else:
            site = web.TCPSite(runner, host, port, reuse_address=True, ssl_context=tls)
        await site.start()
        if config.http.debug.addr is not None:
            debug_host, debug_port = split_address(config.http.debug.addr)
            debug_runner = web.AppRunner(debug_app(app), access_log=None)
            await debug_runner.setup()
            if worker is not None:
                await web.SockSite(debug_runner, worker.sockets[1]).start()
            else:
                await web.TCPSite(debug_runner, debug_host, debug_port,
                                  reuse_address=True).start()
            if worker is None or worker.index == 0:
                log.info("debug listener (health, metrics) on http://%s:%d", debug_host,
                         debug_port)
        if worker is None or worker.index == 0:
            log.info("berth registry listening on %s://%s:%d (storage: %s%s%s%s)",
                     "https" if tls else "http", host, port, app[REGISTRY].driver.name,
                     ", auth" if config.auth else "",
                     ", read-only" if app[REGISTRY].read_only else "",
                     f", {worker.count} workers" if worker else "")
        if worker is not None:
            with contextlib.suppress(OSError):  # (a restarted worker: nobody waits)
                os.write(worker.ready, b".")
            os.close(worker.ready)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        reloads: set[asyncio.Task[bool]] = set()

        def hangup() -> None:
            _apply_reload(app, reload)
            if auth.AUTH in app:
                task = asyncio.create_task(app[auth.AUTH].files.reload(force=True))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hangup)
        watch = _orphaned(worker.parent, stop) if worker is not None else None
        async with background.running(watch):
            await stop.wait()
        app[HEALTH].draining = True  # /readyz says so first
        log.info("shutting down: %d requests in flight", in_flight.count)
        if config.http.shutdowndelay > 0:
            await asyncio.sleep(config.http.shutdowndelay)  # still serving everything
        await site.stop()  # no new connections
        try:
            async with asyncio.timeout(config.http.draintimeout):
                await in_flight.drain()
        except TimeoutError:
            log.warning("shutdown: %d requests still running after %.0fs, closing them",
                        in_flight.count, config.http.draintimeout)
    finally:
        if debug_runner is not None:
            await debug_runner.cleanup()
        await runner.cleanup()
    log.info("stopped")


def serve(config: Config, reload: Callable[[], Config] | None = None,
          worker: Worker | None = None) -> None:
    """Run until SIGINT/SIGTERM; requests in flight get `http.draintimeout` to finish.
    `reload` reads the configuration again (on SIGHUP)."""
    configure_logging(config, worker.index if worker is not None else None)
    traced = tracing.setup(announce=worker is None or worker.index == 0)
    try:
        asyncio.run(_run(config, reload, worker))
    finally:
        if traced:
            tracing.shutdown()  # the last spans go out
    for sig in (signal.SIGINT, signal.SIGTERM):  # stopped already: exiting, say 0
        signal.signal(sig, signal.SIG_IGN)
