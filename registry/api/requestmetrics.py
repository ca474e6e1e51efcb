"""Request metrics by route name (distribution's: base, blob, blob-upload,
blob-upload-chunk, manifest, tags, catalog, referrers; and token, health, metrics,
other), never by repository or digest."""

from __future__ import annotations

from functools import lru_cache

from aiohttp import web
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from prometheus_client.metrics import Counter, Histogram

from .. import metrics
from ..auth import TOKEN_PATH
from .health import DEBUG_HEALTH, LIVE, READY

_BY_TEMPLATE = {
    "/v2/": "base", "/v2": "base", "/v2/_catalog": "catalog",
    "/v2/{name}/blobs/{digest}": "blob",
    "/v2/{name}/blobs/uploads/": "blob-upload", "/v2/{name}/blobs/uploads": "blob-upload",
    "/v2/{name}/blobs/uploads/{uuid}": "blob-upload-chunk",
    "/v2/{name}/manifests/{reference}": "manifest",
    "/v2/{name}/tags/list": "tags",
    "/v2/{name}/referrers/{digest}": "referrers",
    TOKEN_PATH: "token",
}
_BY_PATH = {LIVE: "health", READY: "health", DEBUG_HEALTH: "health"}


def route_match(request: BaseRequest) -> UrlMappingMatchInfo | None:
    """The request's route match; None for a request never routed (one the HTTP parser
    refused, answered by the connection itself)."""
    try:
        found = getattr(request, "match_info", None)
    except AssertionError:  # (aiohttp asserts a match exists when asked for it)
        return None
    return found if isinstance(found, UrlMappingMatchInfo) else None


def name_path(path: str, name: str) -> None:
    """Label requests to `path` (answered outside the router: the metrics) as `name`."""
    _BY_PATH[path] = name


def handler_name(request: BaseRequest) -> str:
    named = _BY_PATH.get(request.path)
    if named is not None:
        return named
    route = getattr(route_match(request), "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "other"
    return _BY_TEMPLATE.get(resource.canonical, "other")


def body_bytes(request: BaseRequest, response: StreamResponse) -> int:
    """The bytes the response body carried, sendfile included."""
    if type(response) is web.Response:  # a body in memory (most answers): its length
        body = response.body
        if isinstance(body, bytes):
            bodiless = request.method == "HEAD" or response.status in (204, 304)
            return 0 if bodiless else len(body)
    # Otherwise what aiohttp counted as written, less the status line and headers
    # (serialized as it does).
    version = request.version
    head = len(f"HTTP/{version.major}.{version.minor} {response.status} "
               f"{response.reason}\r\n".encode()) + 2
    head += sum(len(k.encode()) + len(v.encode()) + 4 for k, v in response.headers.items())
    return max(response.body_length - head, 0)


# The labelled series, looked up once (prometheus_client's `labels` takes a lock and
# builds a key each time). Bounded: route names, status codes, methods.
@lru_cache(maxsize=1024)
def _series(name: str, code: int, method: str) -> tuple[Counter, Histogram, Histogram,
                                                        Histogram]:
    return (metrics.HTTP_REQUESTS.labels(name, str(code), method),
            metrics.HTTP_DURATION.labels(name, method),
            metrics.HTTP_REQUEST_SIZE.labels(name), metrics.HTTP_RESPONSE_SIZE.labels(name))


def observe(request: BaseRequest, response: StreamResponse, duration: float) -> None:
    """After the response went out (called by the access logger: aiohttp's one hook that
    sees the bytes really sent, sendfile included)."""
    requests, durations, request_size, response_size = _series(
        handler_name(request), response.status, request.method.lower())
    requests.inc()
    durations.observe(duration)
    request_size.observe(getattr(request.content, "total_bytes", 0))
    response_size.observe(body_bytes(request, response))
