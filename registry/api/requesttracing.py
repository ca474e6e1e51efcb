"""A SERVER span for every request (installed only while tracing is on: registry/tracing.py),
named by method and route template (`GET /v2/{name}/manifests/{reference}`: never a
repository or a digest), with the OpenTelemetry HTTP server attributes, the repository
and the request id. An incoming `traceparent` (the propagators of `OTEL_PROPAGATORS`)
makes it a child of the caller's span. It is the outermost middleware: the span lasts
until the response has been sent, and the storage operations the request causes are its
children (storage/traced.py)."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Network, IPv6Network, ip_network

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_exceptions import HTTPException
from aiohttp.web_request import BaseRequest
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from .accesslog import client_address
from .requestid import request_id
from .requestmetrics import handler_name, route_match

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                      "CONNECT", "TRACE"})


def route_template(request: BaseRequest) -> str | None:
    """The matched route's template; a fixed path answered outside the router (probes,
    metrics) is its own; None for anything else (no route: the span is named by method)."""
    resource = getattr(getattr(route_match(request), "route", None), "resource", None)
    if resource is not None:
        return str(resource.canonical)
    return request.path if handler_name(request) != "other" else None


def middleware(tracer: trace.Tracer, trusted_proxies: tuple[str, ...] = ()) -> Middleware:
    trusted = tuple(ip_network(p, strict=False) for p in trusted_proxies)

    @web.middleware
    async def traced(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method if request.method in _METHODS else "_OTHER"
        route = route_template(request)
        label = method if method != "_OTHER" else "HTTP"
        name = f"{label} {route}" if route else label
        span = tracer.start_span(
            name, context=propagate.extract(request.headers), kind=SpanKind.SERVER,
            attributes=_request_attributes(request, method, route, trusted),
        )
        token = context.attach(trace.set_span_in_context(span))
        status: int | None = None
        failure: BaseException | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        except HTTPException as exc:
            status = exc.status
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            context.detach(token)
            if span.is_recording():
                _finish(span, request, status, failure)
            span.end()

    return traced


def _request_attributes(request: web.Request, method: str, route: str | None,
                        trusted: tuple[IPv4Network | IPv6Network, ...],
                        ) -> dict[str, AttributeValue]:
    version = request.version
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "url.path": request.path,
        "url.scheme": request.scheme,
        "network.protocol.version": f"{version.major}.{version.minor}",
    }
    if method == "_OTHER":
        attributes["http.request.method_original"] = request.method
    if route:
        attributes["http.route"] = route
    host, _, port = request.host.rpartition(":")
    if not host or not port.isdigit() or host.endswith(":"):  # no port (or IPv6 without)
        host, port = request.host, ("443" if request.scheme == "https" else "80")
    attributes["server.address"] = host.strip("[]")
    attributes["server.port"] = int(port)
    client = client_address(request, trusted)
    if client:
        attributes["client.address"] = client
    if request.remote:
        attributes["network.peer.address"] = request.remote
    agent = request.headers.get("User-Agent")
    if agent:
        attributes["user_agent.original"] = agent
    match = route_match(request)
    repository = match.get("name") if match is not None else None
    if isinstance(repository, str):
        attributes["berth.repository"] = repository
    return attributes


def _finish(span: trace.Span, request: BaseRequest, status: int | None,
            failure: BaseException | None) -> None:
    rid = request_id(request)
    if rid is not None:
        span.set_attribute("berth.request_id", rid)
    if status is not None:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        return
    if failure is not None:  # no response: the handler failed, or the client went away
        cancelled = isinstance(failure, asyncio.CancelledError)
        span.set_attribute("error.type", "cancelled" if cancelled
                           else type(failure).__qualname__)
        if not cancelled:
            span.record_exception(failure)
        span.set_status(Status(StatusCode.ERROR, "cancelled (the client went away)"
                               if cancelled else f"{type(failure).__name__}: {failure}"))
