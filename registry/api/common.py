"""What every handler shares: the registry handle, name checks, pagination, bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn
from urllib.parse import urlencode

from aiohttp import web

from client.oci.digest import Digest, DigestError
from client.oci.reference import is_valid_name

from .. import errors
from ..config import Config
from ..storage import Registry

REGISTRY = web.AppKey("registry", Registry)
CONFIG = web.AppKey("config", Config)

class PaginationInvalid(errors.RegistryError):
    code, status = "UNSUPPORTED", 400
    default_message = "n must be a non-negative integer number of results"


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def config(request: web.Request) -> Config:
    return request.app[CONFIG]


def repository(request: web.Request) -> str:
    name = request.match_info["name"]
    if not is_valid_name(name):
        raise errors.NameInvalid(detail={"name": name})
    return name


def digest_param(value: str | None, what: str = "digest") -> Digest:
    if value is None:
        raise errors.DigestInvalid(f"the {what} parameter is required")
    try:
        return Digest.parse(value)
    except DigestError as exc:
        raise errors.DigestInvalid(str(exc), detail={what: value}) from None


async def raise_not_found(
    request: web.Request, name: str, exc: errors.RegistryError
) -> NoReturn:
    """Raise a 404 for something `name` lacks: NAME_UNKNOWN when the repository itself
    does not exist, else `exc`."""
    if not await registry(request).repositories.exists(name):
        raise errors.NameUnknown(detail={"name": name}) from exc
    raise exc


def page_query(request: web.Request) -> tuple[str | None, int | None]:
    """`last` and `n` of a listing request (n: a non-negative integer, or absent)."""
    last = request.query.get("last") or None
    raw_n = request.query.get("n")
    if raw_n is None or raw_n == "":
        return last, None
    try:
        n = int(raw_n)
        if n < 0:
            raise ValueError
    except ValueError:
        raise PaginationInvalid(detail={"n": raw_n}) from None
    return last, n


def next_link(path: str, n: int | None, page: list[str], more: bool) -> dict[str, str]:
    """The RFC 5988 `Link` header to the next page, when there is one."""
    if not more or not n or not page:
        return {}
    return {"Link": f'<{path}?{urlencode({"n": n, "last": page[-1]})}>; rel="next"'}


def json_response(body: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(body, status=status, **kwargs)


async def body_stream(request: web.Request) -> AsyncIterator[bytes]:
    """A request's body as it arrives. A body that stops for `http.bodytimeout` ends the
    request (and its connection): what an upload received by then stays, to resume."""
    timeout = config(request).http.bodytimeout
    while True:
        try:
            async with asyncio.timeout(timeout):
                chunk = await request.content.readany()
        except TimeoutError:
            raise errors.BodyStalled(
                f"no request body data for {timeout:g}s", detail={"timeout": timeout}
            ) from None
        if not chunk:
            return
        yield chunk


def has_body(request: web.Request) -> bool:
    return bool(request.content_length) or (
        request.content_length is None and request.headers.get("Transfer-Encoding") is not None
    )
