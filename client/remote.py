"""One repository on a registry: manifests, blobs (with resumable uploads), tags, catalog.

Everything here speaks the distribution-spec only, so it works against any conforming
registry, not just Berth.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from yarl import URL

from .content import BlobOpener, ManifestBytes, Progress
from .errors import (
    AuthError,
    BerthError,
    DigestMismatch,
    NetworkError,
    NotFoundError,
    RegistryResponseError,
)
from .oci import mediatypes as mt
from .oci import scope
from .oci.descriptor import Descriptor
from .oci.digest import Digest, DigestError
from .oci.jsondoc import JSONDocumentError, loads_object
from .oci.manifest import declared_media_type
from .oci.reference import display
from .session import RegistrySession

log = logging.getLogger(__name__)

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)
READ_CHUNK = 1024 * 1024
MONOLITHIC_MAX = 16 * 1024 * 1024
DEFAULT_CHUNK = 64 * 1024 * 1024


class UploadInterrupted(Exception):
    """A PATCH or PUT failed mid-body; the registry may hold part of it."""


class RemoteRepository:
    def __init__(self, session: RegistrySession, name: str) -> None:
        self.session = session
        self.name = name

    @property
    def pull(self) -> list[str]:
        return [scope.repository(self.name, "pull")]

    @property
    def push(self) -> list[str]:
        return [scope.repository(self.name, "pull", "push")]

    def __str__(self) -> str:
        return display(self.session.host, self.name)

    def at(self, reference: str) -> str:
        """A manifest of this repository, printed: `host/name:tag` or `host/name@digest`."""
        return display(self.session.host, self.name, reference)

    # -- manifests ----------------------------------------------------------------

    async def _manifest_request(self, method: str, reference: str) -> aiohttp.ClientResponse:
        try:
            return await self.session.request(
                method, f"/v2/{self.name}/manifests/{reference}", scopes=self.pull,
                headers={"Accept": MANIFEST_ACCEPT},
            )
        except RegistryResponseError as exc:
            if exc.status == 404:
                raise NotFoundError(f"{self.at(reference)}: manifest not found") from None
            raise

    async def get_manifest(self, reference: str) -> ManifestBytes:
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
                f"{self.at(reference)}: manifest digest is {actual}, expected {expected}"
            )
        media_type = content_type if content_type in mt.MANIFESTS else declared_media_type(data)
        return ManifestBytes(data, media_type, actual)

    async def manifest_exists(self, digest: Digest) -> bool:
        try:
            response = await self.session.request(
                "HEAD", f"/v2/{self.name}/manifests/{digest}", scopes=self.pull,
                headers={"Accept": MANIFEST_ACCEPT}, expect=(200, 404),
            )
        except RegistryResponseError:
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
        scopes = [scope.repository(self.name, "delete"), *self.pull]
        try:
            response = await self.session.request(
                "DELETE", f"/v2/{self.name}/manifests/{reference}", scopes=scopes,
                expect=(200, 202, 204),
            )
        except RegistryResponseError as exc:
            if exc.status == 404:
                raise NotFoundError(f"{self.at(reference)}: manifest not found") from None
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
        except RegistryResponseError as exc:
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
            scopes.append(scope.repository(source, "pull"))
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
        except (RegistryResponseError, NetworkError):
            pass

    async def upload_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None,
        chunk_size: int = DEFAULT_CHUNK, attempts: int = 5,
    ) -> None:
        """Upload a blob, streamed from its source: one PUT when small, else PATCHes of
        `chunk_size` (at least the registry's OCI-Chunk-Min-Length) and a final PUT with the
        last chunk. After a failure the upload continues from the offset the registry
        reports, not from zero."""
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
        chunk = desc.size if desc.size <= MONOLITHIC_MAX else max(chunk_size, min_chunk)
        offset = 0
        for attempt in range(attempts):
            try:
                await self._send_chunks(location, desc, opener, offset, chunk, progress)
                return
            except UploadInterrupted as exc:
                if attempt + 1 >= attempts:
                    raise NetworkError(f"{self}: upload of {desc.digest} failed: {exc}") from None
                location, offset = await self._status(location)
                log.info("%s: resuming upload of %s at offset %d", self, desc.digest, offset)
                if progress:
                    progress(offset)

    async def _send_chunks(
        self, location: str, desc: Descriptor, opener: BlobOpener, offset: int,
        chunk_size: int, progress: Progress | None,
    ) -> None:
        source = _Slicer(opener(offset), desc)
        try:
            while True:
                length = min(chunk_size, desc.size - offset)
                final = offset + length == desc.size
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Length": str(length)}
                whole = offset == 0 and final
                if length and not whole:
                    headers["Content-Range"] = f"{offset}-{offset + length - 1}"
                params = _with_param(location, "digest", str(desc.digest)) if final else None
                try:
                    response = await self.session.request(
                        "PUT" if final else "PATCH", location, scopes=self.push,
                        headers=headers, data=source.take(length), params=params,
                        expect=(201, 204) if final else (202, 204), retry=False,
                    )
                except (NetworkError, AuthError) as exc:
                    # A refused token (it expired while the source was slow) is forgotten by
                    # the session; the resume asks for a new one, and a real refusal then
                    # surfaces from the status request.
                    raise UploadInterrupted(str(exc)) from None
                except RegistryResponseError as exc:
                    if exc.status in (416, 500, 502, 503, 504):
                        raise UploadInterrupted(str(exc)) from None
                    raise
                response.release()
                offset += length
                if progress:
                    progress(offset)
                if final:
                    return
                location = _location(response, location)
        finally:
            await source.close()

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
            except RegistryResponseError as exc:
                if exc.status == 404:
                    raise NotFoundError(f"{self}: repository not found") from None
                raise
            async with response:
                body = await json_body(response, "tag list")
                found += _strings(body, "tags", response)
                path = _next_link(response)
                params = None
        return found


async def catalog(session: RegistrySession, page_size: int | None = None) -> list[str]:
    found: list[str] = []
    path: str | None = "/v2/_catalog"
    params: dict[str, Any] | None = {"n": page_size} if page_size else None
    while path:
        response = await session.request("GET", path, scopes=[scope.CATALOG_SCOPE],
                                         params=params)
        async with response:
            body = await json_body(response, "catalog")
            found += _strings(body, "repositories", response)
            path = _next_link(response)
            params = None
    return found


class _Slicer:
    """Cuts a blob's stream into request bodies of exact lengths, without buffering more
    than one network chunk. Bodies are one-shot async iterators: after a broken connection
    the registry may hold part of one, so the upload asks where it stands rather than
    letting an HTTP layer resend it."""

    def __init__(self, stream: AsyncIterator[bytes], desc: Descriptor) -> None:
        self.stream, self.desc = stream, desc
        self.pending = b""

    async def take(self, length: int) -> AsyncIterator[bytes]:
        while length > 0:
            if not self.pending:
                try:
                    self.pending = await anext(self.stream)
                except StopAsyncIteration:
                    raise DigestMismatch(
                        f"{self.desc.digest}: the source ended before {self.desc.size} bytes"
                    ) from None
            piece, self.pending = self.pending[:length], self.pending[length:]
            length -= len(piece)
            yield piece

    async def close(self) -> None:
        await self.stream.aclose()  # type: ignore[attr-defined]


async def json_body(response: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    """A response's JSON object; anything else (malformed, nested too deeply) is a one-line
    error naming the URL."""
    try:
        return loads_object(await response.read(), what)
    except JSONDocumentError as exc:
        raise BerthError(f"{response.url}: {what}: {exc}") from None


def _strings(body: dict[str, Any], key: str, response: aiohttp.ClientResponse) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BerthError(f"{response.url}: '{key}' is not a list of strings")
    return value


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
        raise RegistryResponseError(
            response.status, response.method, str(response.url),
            {"errors": [{"code": "NO_LOCATION", "message": "upload response without Location"}]})
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


