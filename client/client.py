"""The entry point of the library: one `Client` holds options, credentials and sessions.

    async with Client() as client:
        await client.copy("oci:./layout:v1", "127.0.0.1:5000/app:v1")
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from .auth import Credentials, load_credentials
from .content import ManifestBytes, verified
from .errors import NotFoundError, UsageError
from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .oci.reference import Reference
from .remote import RemoteRepository, catalog
from .session import RegistrySession, TransportOptions
from .transports import parse_image_reference, parse_registry

if TYPE_CHECKING:
    from collections.abc import Callable

    from .build import ImageSpec
    from .copy import CopyOptions, CopyResult
    from .events import Events
    from .pack import PackOptions
    from .platforms import PlatformMatcher
    from .pull import UnpackResult


class Client:
    """Copy, build and unpack images, and ask registries about theirs. Every reference
    is a string in the forms of docs/client.md; one session per registry host is kept
    until `close`."""

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
        self._sessions: dict[tuple[str, str | None], RegistrySession] = {}

    def session(self, host: str, scheme: str | None = None) -> RegistrySession:
        """The session to `host` (HOST[:PORT]); `scheme` "http" or "https" when the
        reference named one (else the options decide: loopback probes, others use TLS)."""
        session = self._sessions.get((host, scheme))
        if session is None:
            creds = self.credentials.get(host) or self.default_credentials
            found = creds if creds is not None else (
                lambda: load_credentials(host, self.auth_file))
            options = self.options
            if scheme is not None:
                options = dataclasses.replace(options, plain_http=scheme == "http")
            session = self._sessions[(host, scheme)] = RegistrySession(host, found, options)
        return session

    def repository(self, reference: Reference) -> RemoteRepository:
        """The repository `reference` names, over its host's session."""
        return RemoteRepository(self.session(reference.api_host, reference.scheme),
                                reference.repository)

    async def close(self) -> None:
        """Close every session."""
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def manifest(self, reference: str) -> ManifestBytes:
        """The manifest or index a registry reference names, its digest verified."""
        ref = parse_image_reference(reference)
        return await self.repository(ref).get_manifest(ref.identifier)

    async def blob(self, reference: str, digest: Digest, limit: int = 64 << 20) -> bytes:
        """A small blob (a config) in memory, verified; refuses blobs over `limit`."""
        ref = parse_image_reference(reference)
        repo = self.repository(ref)
        size = await repo.blob_size(digest)
        if size is None:
            raise NotFoundError(f"{repo}: blob {digest} not found")
        if size > limit:
            raise UsageError(f"blob {digest} is {size} bytes, too large to read into memory")
        desc = Descriptor("application/octet-stream", digest, size)
        return b"".join([c async for c in verified(desc, repo.open_blob(digest))])

    async def tags(self, repository: str) -> list[str]:
        """The tags of a repository (`[SCHEME]HOST[:PORT]/NAME`)."""
        ref = parse_image_reference(repository)
        return await self.repository(ref).tags()

    async def catalog(self, registry: str) -> list[str]:
        """The repositories of `registry` (HOST[:PORT], http(s)://HOST[:PORT])."""
        host = parse_registry(registry)
        return await catalog(self.session(host.api_host, host.scheme))

    async def delete(self, reference: str) -> str:
        """Delete a tag (registries that support it) or, for a digest, the manifest;
        returns what was deleted, printed as a reference."""
        ref = parse_image_reference(reference)
        await self.repository(ref).delete_manifest(ref.identifier)
        return str(ref)

    async def check_login(self, registry: str) -> None:
        """Authenticate against a registry once; raises AuthError when refused."""
        host = parse_registry(registry)
        response = await self.session(host.api_host, host.scheme).request(
            "GET", "/v2/", scopes=[], expect=(200,))
        response.release()

    async def build(
        self, directories: list[Path], destination: str, pack: PackOptions | None = None,
        spec: ImageSpec | None = None, base: str | None = None,
        options: CopyOptions | None = None, events: Events | None = None,
    ) -> CopyResult:
        """Pack directories into layers, build an image (on `base`, if given) and copy it
        to `destination` (a registry reference or oci:PATH[:TAG])."""
        import asyncio
        import tempfile

        from .build import BuiltImage, ImageSpec, resolve_base
        from .copy import copy_image
        from .events import Events
        from .pack import PackOptions, pack_directory
        from .transports import open_destination, open_source

        events = events or Events()
        pack = pack or PackOptions.from_environment()
        spec = spec or ImageSpec(source_date_epoch=pack.source_date_epoch)
        base_image = None
        if base is not None:
            base_source = await open_source(base, self.repository)
            base_image = await resolve_base(base_source, spec.platform(), events)
            if base_image.config.get("os") == "windows" and pack.os != "windows":
                pack = dataclasses.replace(pack, os="windows")
        elif spec.platform().os == "windows" and pack.os != "windows":
            pack = dataclasses.replace(pack, os="windows")
        with tempfile.TemporaryDirectory(prefix="berth-pack-") as scratch:
            layers = []
            for number, directory in enumerate(directories):
                layer = await asyncio.to_thread(
                    pack_directory, Path(directory), Path(scratch) / f"layer-{number}", pack,
                    _pack_reporter(events, str(directory)),
                )
                events.pack_done(str(directory), layer.entries, layer.size)
                layers.append(dataclasses.replace(layer, history=f"berth pack {directory}"))
            image = BuiltImage.build(spec, layers, base_image, events.warning)
            try:
                dst = await open_destination(destination, self.repository)
                try:
                    return await copy_image(image, dst, options, events)
                finally:
                    await dst.close()
            finally:
                await image.close()

    async def unpack(self, source: str, target: Path, platform: PlatformMatcher | None = None,
                     events: Events | None = None) -> UnpackResult:
        """Unpack an image's layers, in order, into the directory `target`."""
        from .pull import unpack_image
        from .transports import open_source

        src = await open_source(source, self.repository)
        try:
            return await unpack_image(src, target, platform, events)
        finally:
            await src.close()

    async def copy(
        self, source: str, destination: str, options: CopyOptions | None = None,
        events: Events | None = None,
    ) -> CopyResult:
        """Copy an image (every platform of an index) between any two transports."""
        from .copy import copy_image
        from .transports import open_destination, open_source

        src = await open_source(source, self.repository)
        try:
            dst = await open_destination(destination, self.repository)
            try:
                return await copy_image(src, dst, options, events)
            finally:
                await dst.close()
        finally:
            await src.close()


def _pack_reporter(events: Events, directory: str) -> Callable[[int, int], None]:
    """Packing progress from the packing thread to `events`, on the event loop, at most
    ten times a second."""
    import asyncio
    import time

    loop = asyncio.get_running_loop()
    last = 0.0

    def report(files: int, done: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 0.1:
            last = now
            loop.call_soon_threadsafe(events.pack_progress, directory, files, done)

    return report
