"""OpenTelemetry tracing, the `otel` extra (`pip install 'berth[otel]'`), set up by the
standard `OTEL_*` environment variables (docs/tracing.md).

Traces are wanted when the environment says so explicitly: `OTEL_TRACES_EXPORTER` names
an exporter other than `none`, or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the exporter is then `otlp`); never while
`OTEL_SDK_DISABLED` is true. Without that this module imports nothing of OpenTelemetry and
`berth serve` installs no middleware and no driver wrapper: untraced, Berth pays nothing.

Everything else is the SDK's own reading of the environment: the sampler
(`OTEL_TRACES_SAMPLER`), the resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`;
`service.name` is `berth` unless they say otherwise), the batch processor
(`OTEL_BSP_*`), the exporter's endpoint, headers, TLS, timeout and compression
(`OTEL_EXPORTER_OTLP_*`), the propagators (`OTEL_PROPAGATORS`). Only the choice of
exporter is made here, as the specification says (the SDK leaves it to its
auto-instrumentation): `otlp` is OTLP/HTTP with protobuf unless the protocol
(`OTEL_EXPORTER_OTLP_PROTOCOL`, `…_TRACES_PROTOCOL`) is `grpc`, which needs
`opentelemetry-exporter-otlp-proto-grpc`; any other name is an
`opentelemetry_traces_exporter` entry point (`console`, …).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (imported for real only once tracing is set up)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

log = logging.getLogger("registry")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
_INSTALL = "pip install 'berth[otel]'"
FLUSH_TIMEOUT = 10.0  # seconds, at shutdown

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def requested(environ: Mapping[str, str] = os.environ) -> str | None:
    """The variable that asks for traces (for messages), or None when none does."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporters:
        names = {n.strip().lower() for n in exporters.split(",")} - {"", "none"}
        return "OTEL_TRACES_EXPORTER" if names else None
    return next((var for var in ENDPOINTS if environ.get(var, "").strip()), None)


def tracer() -> Tracer | None:
    """Berth's tracer once `setup` turned tracing on, else None (nothing to do)."""
    return _tracer


def setup(announce: bool = True, environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on when the environment asks for it and the extra is installed; say so
    (or why not) when `announce` (one process of a host's workers speaks for all)."""
    global _provider, _tracer
    wanted = requested(environ)
    if wanted is None:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        if announce:
            log.warning("tracing: %s asks for traces, but the otel extra is not installed "
                        "(%s; %s): serving without tracing", wanted, _INSTALL, exc)
        return False
    exporters = _exporters(environ, announce)
    if not exporters:
        return False
    provider = TracerProvider(resource=_resource())
    for exporter in exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # (for any other instrumentation too)
    _provider, _tracer = provider, provider.get_tracer("berth", _version())
    if announce:
        log.info("tracing: spans of every request to %s (service %s)", ", ".join(exporters),
                 provider.resource.attributes.get("service.name"))
    return True


def shutdown(timeout: float = FLUSH_TIMEOUT) -> None:
    """Export the spans not sent yet and stop the exporters (after the last request),
    waiting `timeout` seconds at most: an unreachable collector, retried by the exporter,
    does not hold the exit up for long (the SDK's own shutdown has no limit to give)."""
    global _provider, _tracer
    provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return
    flushing = threading.Thread(target=provider.shutdown, name="tracing-shutdown",
                                daemon=True)
    flushing.start()
    flushing.join(timeout)
    if flushing.is_alive():
        log.warning("tracing: the spans not exported %.0fs after shutdown are dropped", timeout)


def _exporters(environ: Mapping[str, str], announce: bool) -> dict[str, SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names (default `otlp`), by entry point name;
    those that cannot be had are warned about and left out."""
    from importlib.metadata import entry_points

    found: dict[str, SpanExporter] = {}
    for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf")
            name = _BY_PROTOCOL.get(protocol.strip().lower(), "")
            if not name:
                if announce:
                    log.warning("tracing: OTLP protocol %r is not supported (%s are): no "
                                "traces", protocol, " or ".join(_BY_PROTOCOL))
                continue
        points = entry_points(group="opentelemetry_traces_exporter", name=name)
        if not points:
            if announce:
                needs = ("opentelemetry-exporter-otlp-proto-grpc" if name == "otlp_proto_grpc"
                         else "a package that provides it")
                log.warning("tracing: no trace exporter %r is installed (%s): its traces "
                            "are not sent", name, needs)
            continue
        try:
            found[name] = next(iter(points)).load()()
        except Exception as exc:  # (a broken install, or the environment refused)
            if announce:
                log.warning("tracing: trace exporter %r cannot start: %s", name, exc)
    return found


def _resource() -> Resource:
    """Berth's name and version, under what the environment says of the service."""
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource

    defaults = Resource.create({"service.name": "berth", "service.version": _version()})
    return defaults.merge(OTELResourceDetector().detect())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("berth")
    except PackageNotFoundError:
        return "unknown"
