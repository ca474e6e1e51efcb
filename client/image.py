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

from .oci.descriptor import Descriptor
from .oci.digest import Digest
from .remote import BlobOpener, FetchedManifest, Progress


class ImageSource(abc.ABC):
    """Somewhere to read an image from."""

    def origin(self, desc: Descriptor) -> tuple[str, str] | None:
        """The (registry host, repository) a blob can be mounted from, when it has one."""
        return None

    def local_file(self, desc: Descriptor) -> Path | None:
        """A local file already known to hold exactly this blob (verified), if any."""
        return None

    @abc.abstractmethod
    async def root(self) -> FetchedManifest:
        """The manifest or index the source reference names."""

    @abc.abstractmethod
    async def manifest(self, digest: Digest) -> FetchedManifest:
        """A child manifest of an index, by digest."""

    @abc.abstractmethod
    def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        """A blob's bytes from `offset`; may raise NotFoundError for foreign layers."""

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
    async def put_manifest(self, manifest: FetchedManifest, root: bool) -> None:
        """Store a manifest; the root (the image or index copied) gets the destination's
        tag, children of an index are stored by digest."""

    async def commit(self) -> None:  # noqa: B027 - optional hook
        """Finish writing (e.g. close an archive) once everything is in."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""
