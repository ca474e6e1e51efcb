"""The access log: one line per request, Apache's combined format plus the duration; and
the request metrics, recorded at the same moment (aiohttp's one hook after a response is
sent), whether the log is on or not.

    127.0.0.1 - alice [01/Dec/2026:23:18:26 +0000] "GET /v2/a/blobs/sha256:… HTTP/1.1"
        200 838860800 "-" "skopeo/1.9.3" 1.532

The user is the one access control identified (`-` when anonymous or without auth); the
byte count is what the body really carried, sendfile included; the duration is seconds
from the request's arrival until its response was sent.
"""

from __future__ import annotations

import time

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from ..auth.access import access
from .requestmetrics import body_bytes, observe


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, duration: float) -> None:
        observe(request, response, duration)
        if self.logger.disabled:  # log.accesslog.disabled
            return
        user = access(request).user
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
        version = request.version
        headers = request.headers
        self.logger.info(
            '%s - %s [%s] "%s %s HTTP/%d.%d" %d %d "%s" "%s" %.3f',
            request.remote or "-", user or "-", when, request.method, request.path_qs,
            version.major, version.minor, response.status, body_bytes(request, response),
            headers.get("Referer", "-"), headers.get("User-Agent", "-"), duration,
        )
