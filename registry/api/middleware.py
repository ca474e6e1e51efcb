"""Turn every failure into the spec's JSON error body; never leak a traceback."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_exceptions import HTTPException

from .. import errors
from ..storage.drivers.base import StorageError, StorageFull

log = logging.getLogger("registry.api")

API_VERSION = {"Docker-Distribution-API-Version": "registry/2.0"}
FULL_RETRY_AFTER = 60  # seconds: room is made by people (or GC), not in a moment


class OncePerMinute:
    """A condition every request may hit (a full disk) is logged once a minute, with how
    many requests met it meanwhile, not once per request."""

    def __init__(self, message: str, interval: float = 60.0) -> None:
        self.message, self.interval = message, interval
        self._last = -interval
        self._since = 0

    def report(self, example: str) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last >= self.interval:
            log.error("%s (%d since the last report; latest: %s)",
                      self.message, self._since, example)
            self._last, self._since = now, 0


_storage_full = OncePerMinute("storage is full: writes are refused with 503")


def error_response(exc: errors.RegistryError) -> web.Response:
    response = exc.response()
    response.headers.update(API_VERSION)
    return response


def _from_http(exc: HTTPException) -> errors.RegistryError:
    if exc.status == 404:
        return errors.NotFound()
    if exc.status == 405:
        allowed = exc.headers.get("Allow", "")
        return errors.Unsupported(
            "method not allowed", detail={"allowed": allowed}, headers={"Allow": allowed}
        )
    if exc.status == 413:
        return errors.SizeInvalid("request entity too large")
    other = errors.Unsupported(exc.reason) if exc.status < 500 else errors.RegistryError(exc.reason)
    other.status = exc.status  # type: ignore[misc]
    return other


@web.middleware
async def spec_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except errors.RegistryError as exc:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.path, exc.message)
        return error_response(exc)
    except HTTPException as exc:
        if exc.status < 400:
            exc.headers.update(API_VERSION)
            raise
        return error_response(_from_http(exc))
    except StorageFull as exc:
        _storage_full.report(f"{request.method} {request.path}: {exc}")
        return error_response(errors.Unavailable(
            "the registry's storage is full: nothing was stored, try again later",
            retry_after=FULL_RETRY_AFTER))
    except StorageError as exc:
        log.error("%s %s: storage failed: %s", request.method, request.path, exc)
        return error_response(errors.Unavailable())
    except (ConnectionResetError, ConnectionError) as exc:
        log.info("%s %s: client went away: %s", request.method, request.path, exc)
        return error_response(errors.BlobUploadInvalid("incomplete request body"))
    except Exception:
        log.exception("%s %s: internal error", request.method, request.path)
        return error_response(errors.RegistryError("internal server error"))
    response.headers.update(API_VERSION)
    return response
