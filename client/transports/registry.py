"""A registry repository as a copy source or destination."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ..content import BlobOpener, ManifestBytes, Progress
from ..image import ImageDestination, ImageSource
from ..oci.descriptor import Descriptor
from ..oci.digest import Digest
from ..oci.reference import Reference
from ..remote import RemoteRepository

# The repository a reference names, over its host's session (`Client.repository`).
RepositoryOpener = Callable[[Reference], RemoteRepository]


class RegistrySource(ImageSource):
    def __init__(self, repository: RemoteRepository, reference: Reference) -> None:
        self.reference = reference
        self.repo = repository

    def origin(self, desc: Descriptor) -> tuple[str, str] | None:
        return (self.reference.api_host, self.reference.repository)

    async def root(self) -> ManifestBytes:
        return await self.repo.get_manifest(self.reference.identifier)

    async def manifest(self, digest: Digest) -> ManifestBytes:
        return await self.repo.get_manifest(str(digest))

    def blob(self, desc: Descriptor, offset: int = 0) -> AsyncIterator[bytes]:
        return self.repo.open_blob(desc.digest, offset)


class RegistryDestination(ImageDestination):
    def __init__(self, repository: RemoteRepository, reference: Reference) -> None:
        self.reference = reference
        self.repo = repository
        self.registry_repository = (reference.api_host, reference.repository)

    async def has_blob(self, desc: Descriptor) -> bool:
        return await self.repo.blob_size(desc.digest) is not None

    async def mount(self, desc: Descriptor, source_repository: str) -> bool:
        return await self.repo.mount(desc.digest, source_repository)

    async def put_blob(
        self, desc: Descriptor, opener: BlobOpener, progress: Progress | None = None
    ) -> None:
        await self.repo.upload_blob(desc, opener, progress)

    async def has_manifest(self, desc: Descriptor) -> bool:
        return await self.repo.manifest_exists(desc.digest)

    async def put_manifest(self, manifest: ManifestBytes, root: bool) -> None:
        tag = self.reference.tag if root else None
        await self.repo.put_manifest(tag or str(manifest.digest), manifest.data,
                                     manifest.media_type)
