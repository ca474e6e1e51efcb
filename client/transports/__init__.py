"""Image locations by name: a registry reference (`REF`, `docker://REF`, `http(s)://REF`:
see `client.oci.reference`), `oci:PATH[:TAG]`
(an OCI image layout directory), `docker-archive:FILE[:NAME:TAG]` (a `docker save` tarball;
the file name ends at the first ':')."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from ..image import ImageDestination, ImageSource
from ..oci.reference import Reference, ReferenceError, Registry

if TYPE_CHECKING:
    from ..client import Client


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


def parse_reference(text: str) -> Reference:
    """An image reference (`docker://`, `http(s)://` or none; tag and/or digest)."""
    try:
        return Reference.parse(text)
    except ReferenceError as exc:
        raise UsageError(str(exc)) from None


def parse_registry(text: str) -> Registry:
    """A registry host: HOST[:PORT], http(s)://HOST[:PORT] or docker://HOST[:PORT]."""
    try:
        return Registry.parse(text)
    except ReferenceError as exc:
        raise UsageError(str(exc)) from None


async def open_source(client: Client, spec: str) -> ImageSource:
    from .archive import ArchiveSource, split_archive_spec
    from .layout import LayoutSource
    from .registry import RegistrySource

    if spec.startswith(ARCHIVE):
        return await ArchiveSource.open(*split_archive_spec(spec.removeprefix(ARCHIVE)))
    if spec.startswith("oci:"):
        path, tag = split_path_tag(spec[4:])
        return await LayoutSource.open(path, tag)
    ref = parse_reference(spec)
    return RegistrySource(client, ref)


async def open_destination(client: Client, spec: str) -> ImageDestination:
    from .archive import ArchiveDestination, split_archive_spec
    from .layout import LayoutDestination
    from .registry import RegistryDestination

    if spec.startswith(ARCHIVE):
        return await ArchiveDestination.open(*split_archive_spec(spec.removeprefix(ARCHIVE)))
    if spec.startswith("oci:"):
        path, tag = split_path_tag(spec[4:])
        return await LayoutDestination.open(path, tag)
    ref = parse_reference(spec)
    return RegistryDestination(client, ref)
