"""Read-only mode (`storage.maintenance.readonly.enabled`): every write the API offers is
refused with 405 UNSUPPORTED before access control runs, reads go on. The flag lives on
the Registry, so a config reload (SIGHUP) switches it and background writers see it."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import errors
from .common import REGISTRY

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MESSAGE = ("the registry is read-only for maintenance (storage.maintenance.readonly): "
           "pulls work, pushes and deletes do not")


@web.middleware
async def read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if (request.method in WRITES and request.path.startswith("/v2/")
            and request.app[REGISTRY].read_only):
        raise errors.Unsupported(MESSAGE)
    return await handler(request)
