"""The entry point of the library: one `Client` holds options, credentials and sessions.

    async with Client() as client:
        await client.copy("oci:./layout:v1", "127.0.0.1:5000/app:v1")
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .auth import Credentials, load_credentials
from .errors import NotFoundError, UsageError
from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .oci.reference import Reference
from .remote import FetchedManifest, RemoteRepository, catalog, verified
from .session import RegistrySession, TransportOptions
from .transports import parse_reference

if TYPE_CHECKING:
    from .copy import CopyOptions, CopyResult
    from .events import Events


class Client:
    def __init__(
        self, options: TransportOptions | None = None,
        credentials: dict[str, Credentials] | None = None, auth_file: Path | None = None,
        default_credentials: Credentials | None = None,
    ) -> None:
        """`credentials` per registry host; `default_credentials` for any other host (else
        the Docker config file is asked, `auth_file` or ~/.docker/config.json)."""
        self.options = options or TransportOptions()
        self.credentials = dict(credentials or {})
        self.default_credentials = default_credentials
        self.auth_file = auth_file
        self._sessions: dict[str, RegistrySession] = {}

    def session(self, host: str) -> RegistrySession:
        session = self._sessions.get(host)
        if session is None:
            creds = self.credentials.get(host) or self.default_credentials
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

    async def manifest(self, reference: str) -> FetchedManifest:
        ref = parse_reference(reference)
        return await self.repository(ref).get_manifest(ref.identifier)

    async def blob(self, reference: str, digest: Digest, limit: int = 64 << 20) -> bytes:
        """A small blob (a config) in memory, verified; refuses blobs over `limit`."""
        ref = parse_reference(reference)
        repo = self.repository(ref)
        size = await repo.blob_size(digest)
        if size is None:
            raise NotFoundError(f"{ref.registry}/{ref.repository}: blob {digest} not found")
        if size > limit:
            raise UsageError(f"blob {digest} is {size} bytes, too large to read into memory")
        desc = Descriptor("application/octet-stream", digest, size)
        return b"".join([c async for c in verified(desc, repo.open_blob(digest))])

    async def tags(self, repository: str) -> list[str]:
        ref = parse_reference(repository)
        return await self.repository(ref).tags()

    async def catalog(self, host: str) -> list[str]:
        return await catalog(self.session(host))

    async def delete(self, reference: str) -> str:
        """Delete a tag (registries that support it) or, for a digest, the manifest."""
        ref = parse_reference(reference)
        await self.repository(ref).delete_manifest(ref.identifier)
        return ref.identifier

    async def check_login(self, host: str) -> None:
        """Authenticate against a registry once; raises AuthError when refused."""
        response = await self.session(host).request("GET", "/v2/", scopes=[], expect=(200,))
        response.release()

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


