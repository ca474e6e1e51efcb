"""Where images come from and go to: the source/destination interfaces of copy, push, pull.

A source yields manifests (the root by reference, children by digest) and blob streams
from any offset; a destination takes blobs (skipping or mounting what it has) and then
manifests. Registries, OCI image layouts and `docker save` archives implement them, so
one copy engine serves every pair.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from .content import BlobOpener, ManifestBytes, Progress, verified
from .errors import ImageError, UsageError
from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .oci.jsondoc import JSONDocumentError, loads_object
from .oci.manifest import Manifest, ManifestError, parse_manifest

CONFIG_LIMIT = 16 * 1024 * 1024  # image configs are read whole; refuse absurd ones


class ImageSource(abc.ABC):
    """Somewhere to read an image from."""

    def origin(self, desc: Descriptor) -> tuple[str, str] | None:
        """The (registry host, repository) a blob can be mounted from, when it has one."""
        return None

    def local_file(self, desc: Descriptor) -> Path | None:
        """A local file already known to hold exactly this blob (verified), if any."""
        return None

    @abc.abstractmethod
    async def root(self) -> ManifestBytes:
        """The manifest or index the source reference names."""

    @abc.abstractmethod
    async def manifest(self, digest: Digest) -> ManifestBytes:
        """A child manifest of an index, by digest."""

    @abc.abstractmethod
    def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        """A blob's bytes from `offset`; may raise NotFoundError for foreign layers."""

    async def holds(self, desc: Descriptor) -> bool:
        """Whether the source itself has this blob at hand (a local file or archive member;
        False when finding out would cost a request)."""
        return False

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""


class ImageDestination(abc.ABC):
    """Somewhere to write an image to."""

    registry_repository: tuple[str, str] | None = None
    #: False for formats that hold one platform's image (docker-archive)
    accepts_index: bool = True

    @abc.abstractmethod
    async def has_blob(self, desc: Descriptor) -> bool: ...

    async def mount(self, desc: Descriptor, source_repository: str) -> bool:
        """Link a blob from another repository of the same registry; False if not possible."""
        return False

    @abc.abstractmethod
    async def put_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None
    ) -> None: ...

    async def put_file(self, desc: Descriptor, path: Path) -> bool:
        """Take a blob from a verified local file (link or fast copy); False: not supported."""
        return False

    @abc.abstractmethod
    async def has_manifest(self, desc: Descriptor) -> bool: ...

    @abc.abstractmethod
    async def put_manifest(self, manifest: ManifestBytes, root: bool) -> None:
        """Store a manifest; the root (the image or index copied) gets the destination's
        tag, children of an index are stored by digest."""

    async def commit(self) -> None:  # noqa: B027 - optional hook
        """Finish writing (e.g. close an archive) once everything is in."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""


def manifest_of(fetched: ManifestBytes) -> Manifest:
    """The parsed manifest or index; a malformed one is a one-line error."""
    try:
        return parse_manifest(fetched.data, fetched.media_type)
    except ManifestError as exc:
        raise ImageError(f"manifest {fetched.digest}: {exc}") from None


def parse_config(data: bytes, digest: Digest | str) -> dict[str, Any]:
    """An image config's JSON object; anything else is a one-line error."""
    try:
        return loads_object(data, "config")
    except JSONDocumentError as exc:
        raise ImageError(f"config {digest}: {exc}") from None


async def read_config(source: ImageSource, desc: Descriptor) -> dict[str, Any]:
    """An image config from its source, digest and size verified."""
    if desc.size > CONFIG_LIMIT:
        raise UsageError(f"config {desc.digest} is {desc.size} bytes, too large to read")
    data = b"".join([chunk async for chunk in verified(desc, source.blob(desc))])
    return parse_config(data, desc.digest)
