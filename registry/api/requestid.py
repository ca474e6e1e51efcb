"""A request id for every request: the client's `X-Request-Id` when it sent a usable one,
else a new one; it is on every log line the request causes, in the access log, and in the
response's `X-Request-Id`."""

from __future__ import annotations

import itertools
import re
import secrets

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_request import BaseRequest

from ..logs import REQUEST_ID

HEADER = "X-Request-Id"
# A new id: this process's random half and a serial number (unique without a system
# call per request, as uuid4 would make; the same 32 hex digits)
_PROCESS = secrets.token_hex(8)
_SERIAL = itertools.count(1)
_USABLE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(request: BaseRequest) -> str | None:
    found = request.get(HEADER)
    return found if isinstance(found, str) else None


@web.middleware
async def assign(request: web.Request, handler: Handler) -> web.StreamResponse:
    given = request.headers.get(HEADER, "")
    rid = given if given and _USABLE.fullmatch(given) else f"{_PROCESS}{next(_SERIAL):016x}"
    request[HEADER] = rid
    token = REQUEST_ID.set(rid)
    try:
        response = await handler(request)
    finally:
        REQUEST_ID.reset(token)
    response.headers[HEADER] = rid
    return response
