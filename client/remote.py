"""One repository on a registry: manifests, blobs (with resumable uploads), tags, catalog.

Everything here speaks the distribution-spec only, so it works against any conforming
registry, not just Berth.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from yarl import URL

from .errors import DigestMismatch, NetworkError, NotFoundError, RegistryError
from .oci import mediatypes as mt
from .oci.descriptor import Descriptor
from .oci.digest import Digest, DigestError, new_hasher
from .oci.manifest import declared_media_type
from .session import RegistrySession

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)
READ_CHUNK = 1024 * 1024
MONOLITHIC_MAX = 16 * 1024 * 1024
DEFAULT_CHUNK = 64 * 1024 * 1024

# A blob's bytes from an offset: how push re-reads its source after an interruption.
BlobOpener = Callable[[int], AsyncIterator[bytes]]
# Told the number of bytes of one blob done so far (it may go back after a resume).
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    data: bytes
    media_type: str
    digest: Digest

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.data))


class UploadInterrupted(Exception):
    """A PATCH or PUT failed mid-body; the registry may hold part of it."""


class RemoteRepository:
    def __init__(self, session: RegistrySession, name: str) -> None:
        self.session = session
        self.name = name

    @property
    def pull(self) -> list[str]:
        return [f"repository:{self.name}:pull"]

    @property
    def push(self) -> list[str]:
        return [f"repository:{self.name}:pull,push"]

    def __str__(self) -> str:
        return f"{self.session.host}/{self.name}"

    # -- manifests ----------------------------------------------------------------

    async def _manifest_request(self, method: str, reference: str) -> aiohttp.ClientResponse:
        try:
            return await self.session.request(
                method, f"/v2/{self.name}/manifests/{reference}", scopes=self.pull,
                headers={"Accept": MANIFEST_ACCEPT},
            )
        except RegistryError as exc:
            if exc.status == 404:
                raise NotFoundError(f"{self}:{reference}: manifest not found") from None
            raise

    async def get_manifest(self, reference: str) -> FetchedManifest:
        """Fetch a manifest by tag or digest, verifying its digest."""
        response = await self._manifest_request("GET", reference)
        async with response:
            data = await response.read()
            content_type = mt.base_type(response.headers.get("Content-Type"))
            header = response.headers.get("Docker-Content-Digest")
        expected = _reference_digest(reference) or _parse_digest(header)
        actual = Digest.from_bytes(data, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise DigestMismatch(
                f"{self}:{reference}: manifest digest is {actual}, expected {expected}"
            )
        media_type = content_type if content_type in mt.MANIFESTS else declared_media_type(data)
        return FetchedManifest(data, media_type, actual)

    async def resolve(self, reference: str) -> Descriptor:
        """A manifest's descriptor by HEAD (falls back to GET when the registry sends no digest)."""
        response = await self._manifest_request("HEAD", reference)
        async with response:
            header = _parse_digest(response.headers.get("Docker-Content-Digest"))
            media_type = mt.base_type(response.headers.get("Content-Type"))
            length = response.headers.get("Content-Length")
        if header is None or not length or media_type not in mt.MANIFESTS:
            return (await self.get_manifest(reference)).descriptor()
        return Descriptor(media_type, header, int(length))

    async def manifest_exists(self, digest: Digest) -> bool:
        try:
            response = await self.session.request(
                "HEAD", f"/v2/{self.name}/manifests/{digest}", scopes=self.pull,
                headers={"Accept": MANIFEST_ACCEPT}, expect=(200, 404),
            )
        except RegistryError:
            return False
        response.release()
        return response.status == 200

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        response = await self.session.request(
            "PUT", f"/v2/{self.name}/manifests/{reference}", scopes=self.push,
            headers={"Content-Type": media_type}, data=data, expect=(201, 200, 202),
        )
        response.release()
        digest = Digest.from_bytes(data)
        header = _parse_digest(response.headers.get("Docker-Content-Digest"))
        if header is not None and header.algorithm == "sha256" and header != digest:
            raise DigestMismatch(f"{self}: registry stored manifest as {header}, sent {digest}")
        return digest

    async def delete_manifest(self, reference: str) -> None:
        scopes = [f"repository:{self.name}:delete", *self.pull]
        try:
            response = await self.session.request(
                "DELETE", f"/v2/{self.name}/manifests/{reference}", scopes=scopes,
                expect=(200, 202, 204),
            )
        except RegistryError as exc:
            if exc.status == 404:
                raise NotFoundError(f"{self}:{reference}: manifest not found") from None
            raise
        response.release()

    # -- blobs --------------------------------------------------------------------

    async def blob_size(self, digest: Digest) -> int | None:
        """The blob's size when the repository has it, else None."""
        response = await self.session.request(
            "HEAD", f"/v2/{self.name}/blobs/{digest}", scopes=self.pull, expect=(200, 404),
        )
        response.release()
        if response.status == 404:
            return None
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else 0

    async def open_blob(self, digest: Digest, offset: int = 0) -> AsyncIterator[bytes]:
        """Stream a blob's bytes from `offset` (Range request; redirects followed)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            response = await self.session.request(
                "GET", f"/v2/{self.name}/blobs/{digest}", scopes=self.pull, headers=headers,
                expect=(200, 206),
            )
        except RegistryError as exc:
            if exc.status == 404:
                raise NotFoundError(f"{self}: blob {digest} not found") from None
            raise
        async with response:
            skip = offset if (offset and response.status == 200) else 0
            try:
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    yield chunk
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                raise NetworkError(f"{self}: reading blob {digest}: {exc}") from None

    async def mount(self, digest: Digest, source: str | None) -> bool:
        """Cross-repository mount; False when the registry starts an upload instead."""
        params = {"mount": str(digest)}
        scopes = list(self.push)
        if source is not None:
            params["from"] = source
            scopes.append(f"repository:{source}:pull")
        response = await self.session.request(
            "POST", f"/v2/{self.name}/blobs/uploads/", scopes=scopes, params=params,
            expect=(201, 202),
        )
        response.release()
        if response.status == 202:
            await self._cancel(response.headers.get("Location"))
        return response.status == 201

    async def _cancel(self, location: str | None) -> None:
        if not location:
            return
        try:
            response = await self.session.request(
                "DELETE", location, scopes=self.push, expect=(200, 202, 204, 404, 405)
            )
            response.release()
        except (RegistryError, NetworkError):
            pass

    async def upload_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None,
        chunk_size: int = DEFAULT_CHUNK, attempts: int = 5,
    ) -> None:
        """Upload a blob: one PUT when small, chunked PATCHes otherwise. After a failure the
        upload continues from the offset the registry reports, not from zero."""
        response = await self.session.request(
            "POST", f"/v2/{self.name}/blobs/uploads/", scopes=self.push, expect=(202, 201),
        )
        response.release()
        if response.status == 201:  # the registry took a shortcut (e.g. it already has it)
            if progress:
                progress(desc.size)
            return
        location = _location(response)
        min_chunk = _int_header(response, "OCI-Chunk-Min-Length") or 0
        chunk_size = max(chunk_size, min_chunk)
        offset = 0
        for attempt in range(attempts):
            try:
                if desc.size <= MONOLITHIC_MAX and offset == 0:
                    await self._put_whole(location, desc, opener)
                else:
                    location = await self._put_chunked(
                        location, desc, opener, offset, chunk_size, progress
                    )
                if progress and desc.size <= MONOLITHIC_MAX and offset == 0:
                    progress(desc.size)
                return
            except UploadInterrupted as exc:
                if attempt + 1 >= attempts:
                    raise NetworkError(f"{self}: upload of {desc.digest} failed: {exc}") from None
                location, offset = await self._status(location)
                log.info("%s: resuming upload of %s at offset %d", self, desc.digest, offset)
                if progress:
                    progress(offset)

    async def _put_whole(self, location: str, desc: Descriptor, opener: BlobOpener) -> None:
        data = b"".join([chunk async for chunk in opener(0)])
        _check(desc, data)
        await self._finish(location, desc.digest, data, None)

    async def _put_chunked(
        self, location: str, desc: Descriptor, opener: BlobOpener, offset: int,
        chunk_size: int, progress: Progress | None,
    ) -> str:
        stream = opener(offset)
        buffer = bytearray()
        async for chunk in stream:
            buffer += chunk
            while len(buffer) >= chunk_size:
                location = await self._patch(location, bytes(buffer[:chunk_size]), offset)
                offset += chunk_size
                del buffer[:chunk_size]
                if progress:
                    progress(offset)
        if offset + len(buffer) != desc.size:
            raise DigestMismatch(
                f"{desc.digest}: source has {offset + len(buffer)} bytes, descriptor says "
                f"{desc.size}"
            )
        tail = bytes(buffer)
        await self._finish(location, desc.digest, tail, offset if tail else None)
        if progress:
            progress(desc.size)
        return location

    async def _patch(self, location: str, data: bytes, offset: int) -> str:
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{offset}-{offset + len(data) - 1}",
                   "Content-Length": str(len(data))}
        try:
            response = await self.session.request(
                "PATCH", location, scopes=self.push, headers=headers, data=_once(data),
                expect=(202, 204), retry=False,
            )
        except (NetworkError, RegistryError) as exc:
            if isinstance(exc, RegistryError) and exc.status not in (416, 500, 502, 503, 504):
                raise
            raise UploadInterrupted(str(exc)) from None
        response.release()
        return _location(response, location)

    async def _finish(self, location: str, digest: Digest, data: bytes, offset: int | None) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(data))}
        if offset is not None:
            headers["Content-Range"] = f"{offset}-{offset + len(data) - 1}"
        try:
            response = await self.session.request(
                "PUT", location, scopes=self.push, headers=headers, data=_once(data),
                params=_with_param(location, "digest", str(digest)), expect=(201, 204),
                retry=False,
            )
        except NetworkError as exc:
            raise UploadInterrupted(str(exc)) from None
        except RegistryError as exc:
            if exc.status in (416, 500, 502, 503, 504):
                raise UploadInterrupted(str(exc)) from None
            raise
        response.release()

    async def _status(self, location: str) -> tuple[str, int]:
        response = await self.session.request(
            "GET", location, scopes=self.push, expect=(204, 200),
        )
        response.release()
        value = response.headers.get("Range", "")
        end = value.rpartition("-")[2]
        offset = int(end) + 1 if end.isdigit() else 0
        if value in ("", "0-0") and offset == 1:
            offset = 0  # "0-0" is what registries send for an empty session
        return _location(response, location), offset

    # -- listings -----------------------------------------------------------------

    async def tags(self, page_size: int | None = None) -> list[str]:
        found: list[str] = []
        path: str | None = f"/v2/{self.name}/tags/list"
        params: dict[str, Any] | None = {"n": page_size} if page_size else None
        while path:
            try:
                response = await self.session.request("GET", path, scopes=self.pull,
                                                      params=params)
            except RegistryError as exc:
                if exc.status == 404:
                    raise NotFoundError(f"{self}: repository not found") from None
                raise
            async with response:
                body = await response.json(content_type=None)
                found += (body or {}).get("tags") or []
                path = _next_link(response)
                params = None
        return found

    async def referrers(
        self, subject: Digest, artifact_type: str | None = None
    ) -> list[Descriptor]:
        params = {"artifactType": artifact_type} if artifact_type else None
        response = await self.session.request(
            "GET", f"/v2/{self.name}/referrers/{subject}", scopes=self.pull, params=params,
        )
        async with response:
            body = await response.json(content_type=None)
        return [Descriptor.from_json(m) for m in (body or {}).get("manifests", [])]


async def catalog(session: RegistrySession, page_size: int | None = None) -> list[str]:
    found: list[str] = []
    path: str | None = "/v2/_catalog"
    params: dict[str, Any] | None = {"n": page_size} if page_size else None
    while path:
        response = await session.request("GET", path, scopes=["registry:catalog:*"],
                                         params=params)
        async with response:
            body = await response.json(content_type=None)
            found += (body or {}).get("repositories") or []
            path = _next_link(response)
            params = None
    return found


async def verified(desc: Descriptor, stream: AsyncIterator[bytes],
                   progress: Progress | None = None) -> AsyncIterator[bytes]:
    """Pass a blob's bytes through, failing at the end if digest or size differ."""
    hasher = new_hasher(desc.digest.algorithm)
    size = 0
    async for chunk in stream:
        hasher.update(chunk)
        size += len(chunk)
        if size > desc.size:
            raise DigestMismatch(f"{desc.digest}: more than the {desc.size} bytes announced")
        if progress:
            progress(size)
        yield chunk
    if size != desc.size or hasher.hexdigest() != desc.digest.hex:
        raise DigestMismatch(f"{desc.digest}: content does not match (got {size} bytes)")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """A body that cannot be replayed: after a broken connection the registry may hold part
    of it, so the upload asks where it stands instead of letting HTTP resend it whole."""
    view = memoryview(data)
    for start in range(0, len(data), READ_CHUNK):
        yield bytes(view[start : start + READ_CHUNK])


def _check(desc: Descriptor, data: bytes) -> None:
    if len(data) != desc.size or Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
        raise DigestMismatch(f"{desc.digest}: source content does not match its descriptor")


def _reference_digest(reference: str) -> Digest | None:
    return _parse_digest(reference) if ":" in reference else None


def _parse_digest(value: str | None) -> Digest | None:
    if not value:
        return None
    try:
        return Digest.parse(value.strip())
    except DigestError:
        return None


def _location(response: aiohttp.ClientResponse, default: str | None = None) -> str:
    location = response.headers.get("Location") or default
    if not location:
        raise RegistryError(response.status, response.method, str(response.url),
                            {"errors": [{"code": "NO_LOCATION",
                                         "message": "upload response without Location"}]})
    return str(response.url.join(URL(location)))


def _with_param(location: str, key: str, value: str) -> dict[str, str]:
    """Query parameters for a request to `location` (keeping its own, e.g. `_state`)."""
    params = {k: v[-1] for k, v in parse_qs(urlsplit(location).query).items()}
    params[key] = value
    return params


def _int_header(response: aiohttp.ClientResponse, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isdigit() else None


def _next_link(response: aiohttp.ClientResponse) -> str | None:
    link = response.headers.get("Link")
    if not link or 'rel="next"' not in link:
        return None
    start, end = link.find("<"), link.find(">")
    return link[start + 1 : end] if 0 <= start < end else None


