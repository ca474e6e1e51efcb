"""The access log: one line per request, Apache's combined format plus the duration; and
the request metrics, recorded at the same moment (aiohttp's one hook after a response is
sent), whether the log is on or not.

    127.0.0.1 - alice [01/Dec/2026:23:18:26 +0000] "GET /v2/a/blobs/sha256:… HTTP/1.1"
        200 838860800 "-" "skopeo/1.9.3" 1.532

The user is the one access control identified (`-` when anonymous or without auth); the
byte count is what the body really carried, sendfile included; the duration is seconds
from the request's arrival until its response was sent; the address is the client's
(behind `http.trustedproxies`, the one they forwarded for). With `log.formatter: json`
the entry also carries each of these as a field, with the route, the repository and the
request id.
"""

from __future__ import annotations

import logging
import time
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..auth.access import access
from .requestid import request_id
from .requestmetrics import body_bytes, handler_name, observe, route_match


class AccessLogger(AbstractAccessLogger):
    trusted: tuple[IPv4Network | IPv6Network, ...] = ()
    structured = False  # the JSON formatter: the entry's fields go with the line

    def log(self, request: BaseRequest, response: StreamResponse, duration: float) -> None:
        observe(request, response, duration)
        if self.logger.disabled or not self.logger.isEnabledFor(logging.INFO):
            return  # (log.accesslog.disabled, or log.level above info)
        user = access(request).user
        version = request.version
        headers = request.headers
        sent = body_bytes(request, response)
        client = client_address(request, self.trusted)
        line = (f'{client or "-"} - {user or "-"} [{_now()}] "{request.method} '
                f'{request.path_qs} HTTP/{version.major}.{version.minor}" {response.status} '
                f'{sent} "{headers.get("Referer", "-")}" "{headers.get("User-Agent", "-")}" '
                f"{duration:.3f}")
        extra: dict[str, object] = {"request_id": request_id(request)}
        if self.structured:
            extra["access"] = {
                "method": request.method, "path": request.path, "route": handler_name(request),
                "repository": _repository(request), "status": response.status,
                "bytes": sent, "duration": round(duration, 6), "client": client,
                "peer": request.remote, "user": user,
                "user_agent": headers.get("User-Agent"),
            }
        self.logger.info(line, extra=extra)


_stamp: tuple[int, str] = (-1, "")


def _now() -> str:
    """The time in the combined format, made once per second."""
    global _stamp  # (a one-entry cache)
    second = int(time.time())
    if second != _stamp[0]:
        _stamp = (second, time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second)))
    return _stamp[1]


def access_logger(proxies: tuple[str, ...], structured: bool) -> type[AccessLogger]:
    """The access logger for `http.trustedproxies` (from those peers, the client is the
    address they name in `X-Forwarded-For`) and the log's format."""
    networks = tuple(ip_network(p, strict=False) for p in proxies)
    return type("BerthAccessLogger", (AccessLogger,),
                {"trusted": networks, "structured": structured})


def client_address(request: BaseRequest,
                   trusted: tuple[IPv4Network | IPv6Network, ...]) -> str | None:
    """The peer, or, when the peer is a trusted proxy, the nearest address before the
    trusted proxies in `X-Forwarded-For` (each proxy appends the one it heard from)."""
    peer = request.remote
    if not trusted or peer is None or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
            if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _within(address: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        ip = ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def _repository(request: BaseRequest) -> str | None:
    match = route_match(request)
    name = match.get("name") if match is not None else None
    return name if isinstance(name, str) else None
