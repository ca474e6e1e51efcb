"""The entry point of the library: one `Client` holds options, credentials and sessions.

    async with Client() as client:
        await client.copy("oci:./layout:v1", "127.0.0.1:5000/app:v1")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .auth import Credentials, load_credentials
from .oci.reference import Reference
from .remote import RemoteRepository
from .session import RegistrySession, TransportOptions

if TYPE_CHECKING:
    from .copy import CopyOptions, CopyResult
    from .events import Events


class Client:
    def __init__(
        self, options: TransportOptions | None = None,
        credentials: dict[str, Credentials] | None = None, auth_file: Path | None = None,
    ) -> None:
        self.options = options or TransportOptions()
        self.credentials = dict(credentials or {})
        self.auth_file = auth_file
        self._sessions: dict[str, RegistrySession] = {}

    def session(self, host: str) -> RegistrySession:
        session = self._sessions.get(host)
        if session is None:
            creds = self.credentials.get(host)
            if creds is None:
                creds = load_credentials(host, self.auth_file)
            session = self._sessions[host] = RegistrySession(host, creds, self.options)
        return session

    def repository(self, reference: Reference) -> RemoteRepository:
        return RemoteRepository(self.session(reference.api_host), reference.repository)

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def copy(
        self, source: str, destination: str, options: CopyOptions | None = None,
        events: Events | None = None,
    ) -> CopyResult:
        """Copy an image (every platform of an index) between any two transports."""
        from .copy import copy_image
        from .transports import open_destination, open_source

        src = await open_source(self, source)
        try:
            dst = await open_destination(self, destination)
            try:
                return await copy_image(src, dst, options, events)
            finally:
                await dst.close()
        finally:
            await src.close()


