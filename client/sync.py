"""A blocking facade over `Client` for scripts: the same methods, without `await`.

    from client import SyncClient
    with SyncClient() as client:
        client.copy("oci:./layout:v1", "127.0.0.1:5000/app:v1")
        print(client.tags("127.0.0.1:5000/app"))

It owns a private event loop; use one SyncClient per thread. Its methods are made from
Client's (signature and documentation included), so the two have one shape: a coroutine
method of Client runs to completion on that loop, any other is Client's own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from .auth import Credentials
from .client import Client
from .session import TransportOptions

P = ParamSpec("P")
T = TypeVar("T")


def _blocking(
    method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[SyncClient, P], T]:
    """A coroutine method of Client, run to completion on the SyncClient's loop."""

    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._loop.run_until_complete(method(self._client, *args, **kwargs))

    call.__qualname__ = f"SyncClient.{method.__name__}"
    return call


def _delegated(
    method: Callable[Concatenate[Client, P], T],
) -> Callable[Concatenate[SyncClient, P], T]:
    """A plain method of Client, called on the SyncClient's Client."""

    @functools.wraps(method)
    def call(self: SyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return method(self._client, *args, **kwargs)

    call.__qualname__ = f"SyncClient.{method.__name__}"
    return call


class SyncClient:
    """Client's methods, blocking: one line each below, made from Client's own."""

    def __init__(
        self, options: TransportOptions | None = None,
        credentials: dict[str, Credentials] | None = None, auth_file: Path | None = None,
        default_credentials: Credentials | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = Client(options, credentials, auth_file, default_credentials)

    copy = _blocking(Client.copy)
    build = _blocking(Client.build)
    unpack = _blocking(Client.unpack)
    manifest = _blocking(Client.manifest)
    blob = _blocking(Client.blob)
    tags = _blocking(Client.tags)
    catalog = _blocking(Client.catalog)
    delete = _blocking(Client.delete)
    check_login = _blocking(Client.check_login)
    session = _delegated(Client.session)
    repository = _delegated(Client.repository)

    def close(self) -> None:
        """Close the sessions, then the loop."""
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
