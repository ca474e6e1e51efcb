"""Image locations by name: a registry reference (`REF`, `docker://REF`, `http(s)://REF`:
see `client.oci.reference`), `oci:PATH[:TAG]`
(an OCI image layout directory), `docker-archive:FILE[:NAME:TAG]` (a `docker save` tarball;
the file name ends at the first ':')."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..image import ImageDestination, ImageSource
from ..oci.reference import InvalidReferenceError, Reference, Registry

if TYPE_CHECKING:
    from .registry import RepositoryOpener


ARCHIVE = "docker-archive:"
LOCAL_PREFIXES = ("oci:", ARCHIVE)


def is_local(spec: str) -> bool:
    return spec.startswith(LOCAL_PREFIXES)


def split_path_tag(spec: str) -> tuple[str, str | None]:
    """`PATH[:TAG]` — the tag is what follows the last ':' when it looks like a tag."""
    path, sep, tag = spec.rpartition(":")
    if sep and path and tag and "/" not in tag:
        return path, tag
    return spec, None


def parse_image_reference(text: str) -> Reference:
    """An image reference a person gave (`docker://`, `http(s)://` or none; tag and/or
    digest); an invalid one is a usage error."""
    try:
        return Reference.parse(text)
    except InvalidReferenceError as exc:
        raise UsageError(str(exc)) from None


def parse_registry(text: str) -> Registry:
    """A registry host: HOST[:PORT], http(s)://HOST[:PORT] or docker://HOST[:PORT]."""
    try:
        return Registry.parse(text)
    except InvalidReferenceError as exc:
        raise UsageError(str(exc)) from None


async def open_source(spec: str, repositories: RepositoryOpener) -> ImageSource:
    """The image `spec` names, to read; a registry reference's repository comes from
    `repositories` (`Client.repository`)."""
    from .archive import split_archive_spec
    from .archive_reader import ArchiveSource
    from .layout import LayoutSource
    from .registry import RegistrySource

    if spec.startswith(ARCHIVE):
        return await ArchiveSource.open(*split_archive_spec(spec.removeprefix(ARCHIVE)))
    if spec.startswith("oci:"):
        path, tag = split_path_tag(spec[4:])
        return await LayoutSource.open(path, tag)
    ref = parse_image_reference(spec)
    return RegistrySource(repositories(ref), ref)


async def open_destination(spec: str, repositories: RepositoryOpener) -> ImageDestination:
    """Where `spec` names, to write an image to (see `open_source`)."""
    from .archive import split_archive_spec
    from .archive_writer import ArchiveDestination
    from .layout import LayoutDestination
    from .registry import RegistryDestination

    if spec.startswith(ARCHIVE):
        return await ArchiveDestination.open(*split_archive_spec(spec.removeprefix(ARCHIVE)))
    if spec.startswith("oci:"):
        path, tag = split_path_tag(spec[4:])
        return await LayoutDestination.open(path, tag)
    ref = parse_image_reference(spec)
    return RegistryDestination(repositories(ref), ref)
