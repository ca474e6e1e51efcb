"""A blocking facade over `Client` for scripts: the same methods, without `await`.

    from client.sync import SyncClient
    with SyncClient() as client:
        client.copy("oci:./layout:v1", "127.0.0.1:5000/app:v1")
        print(client.tags("127.0.0.1:5000/app"))

It owns a private event loop; use one SyncClient per thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from .auth import Credentials
from .build import ImageSpec
from .client import Client
from .content import ManifestBytes
from .copy import CopyOptions, CopyResult
from .events import Events
from .oci.digest import Digest
from .pack import PackOptions
from .session import TransportOptions

T = TypeVar("T")


class SyncClient:
    def __init__(
        self, options: TransportOptions | None = None,
        credentials: dict[str, Credentials] | None = None, auth_file: Path | None = None,
        default_credentials: Credentials | None = None,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = Client(options, credentials, auth_file, default_credentials)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def copy(self, source: str, destination: str, options: CopyOptions | None = None,
             events: Events | None = None) -> CopyResult:
        return self._run(self._client.copy(source, destination, options, events))

    def build(self, directories: list[Path], destination: str, pack: PackOptions | None = None,
              spec: ImageSpec | None = None, base: str | None = None,
              options: CopyOptions | None = None, events: Events | None = None) -> CopyResult:
        return self._run(
            self._client.build(directories, destination, pack, spec, base, options, events)
        )

    def manifest(self, reference: str) -> ManifestBytes:
        return self._run(self._client.manifest(reference))

    def blob(self, reference: str, digest: Digest, limit: int = 64 << 20) -> bytes:
        return self._run(self._client.blob(reference, digest, limit))

    def tags(self, repository: str) -> list[str]:
        return self._run(self._client.tags(repository))

    def catalog(self, host: str) -> list[str]:
        return self._run(self._client.catalog(host))

    def delete(self, reference: str) -> str:
        return self._run(self._client.delete(reference))

    def check_login(self, host: str) -> None:
        self._run(self._client.check_login(host))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._client.close())
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
