"""Access control: users (htpasswd), bearer tokens (verification and the built-in token
server), the access policy, and the gate that applies them to `/v2/` requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from ..config import AuthSettings
from .access import ACCESS, OPEN, Access, access
from .guard import TOKEN_PATH, Auth
from .tokenserver import TokenServer

AUTH = web.AppKey("auth", Auth)


def install(app: web.Application, settings: AuthSettings, body_timeout: float) -> Auth:
    """Add the gate's routes and file watcher to `app`; the caller adds `auth.middleware`.
    `body_timeout`: how long the token server waits for a form that stops arriving."""
    auth = Auth(settings)
    app[AUTH] = auth
    if auth.signer is not None:
        TokenServer(auth, body_timeout).routes(app)

    async def watcher(app: web.Application) -> AsyncIterator[None]:
        task = (asyncio.create_task(auth.files.watch(settings.reloadinterval))
                if settings.reloadinterval > 0 else None)
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.cleanup_ctx.append(watcher)
    return auth


__all__ = ["ACCESS", "AUTH", "OPEN", "TOKEN_PATH", "Access", "Auth", "access", "install"]
