"""Link files: small objects whose content is a digest (`sha256:…`)."""

from __future__ import annotations

import logging

from client.oci.digest import Digest, DigestError

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver

log = logging.getLogger(__name__)


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link holds, or None when the link does not exist (or is unreadable)."""
    try:
        text = (await driver.get(path)).decode("ascii", "replace").strip()
    except PathNotFoundError:
        return None
    try:
        return Digest.parse(text)
    except DigestError:
        log.error("corrupt link %s: %r", path, text[:100])
        return None


async def write_link(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put(path, str(digest).encode("ascii"))


async def link_exists(driver: StorageDriver, path: str) -> bool:
    return await driver.is_object(path)


async def delete_link(driver: StorageDriver, path: str) -> None:
    """Remove a link together with the directory named after its digest."""
    await driver.delete(path.rsplit("/", 1)[0])


async def list_digests(driver: StorageDriver, base: str) -> list[Digest]:
    """The digests of a `<base>/<alg>/<hex>/` tree of links, in order."""
    found: list[Digest] = []
    try:
        algorithms = await driver.list_dir(base)
    except PathNotFoundError:
        return []
    for algorithm in algorithms:
        try:
            names = await driver.list_dir(paths.digest_tree(base, algorithm))
        except PathNotFoundError:
            continue
        found.extend(d for d in (paths.digest_named(algorithm, n) for n in names) if d)
    return found
