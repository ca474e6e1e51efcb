"""`berth du`: what each repository occupies, from a walk of the tree (docs/quotas.md).

A repository holds the distinct blobs linked into it (layers, manifest revisions) and those
its manifests name that the content store has (foreign layers left at their URLs are not
stored and do not count). Its logical size is all of them; unique, those no other
repository holds; shared, the rest. The total is the content store's, each blob once.
The walk reads only; it also shows the usage the quotas count, for comparison.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from client.oci.digest import Digest
from client.oci.manifest import ManifestError, parse_manifest

from . import paths
from .drivers.base import PathNotFoundError, StorageDriver
from .links import list_digests
from .parallel import each
from .usage import IN_FLIGHT, UsageCounter, blob_size, linked_digests, tag_count


@dataclass
class RepositoryUsage:
    name: str
    logical: int = 0
    unique: int = 0
    shared: int = 0
    blobs: int = 0
    tags: int = 0
    counted_bytes: int | None = None  # what quotas see (baseline and deltas); None:
    counted_tags: int | None = None  # no quotas configured, nothing counted


@dataclass
class DiskUsage:
    repositories: list[RepositoryUsage] = field(default_factory=list)
    total: int = 0  # the content store's bytes, each blob once
    total_blobs: int = 0


async def _named_by_manifests(driver: StorageDriver, name: str) -> set[Digest]:
    """The blobs and child manifests the repository's manifests name."""
    named: set[Digest] = set()
    loop = asyncio.get_running_loop()

    async def references(digest: Digest) -> list[Digest]:
        try:
            data = await driver.get(paths.blob_data(digest))
            manifest = await loop.run_in_executor(None, parse_manifest, data)
        except (PathNotFoundError, ManifestError):
            return []
        return [d.digest for d in (*manifest.blobs(), *manifest.manifests)]

    revisions = await list_digests(driver, paths.revisions(name))
    for found in await each(IN_FLIGHT, revisions, references):
        named.update(found)
    return named


async def disk_usage(driver: StorageDriver, names: list[str], wanted: list[str] | None,
                     usage: UsageCounter | None) -> DiskUsage:
    """Usage of the `wanted` repositories (all when None) among all `names`: the whole
    tree is walked, since whether a blob is unique depends on every repository."""
    sizes: dict[Digest, int | None] = {}

    async def size(digest: Digest) -> int | None:
        if digest not in sizes:
            sizes[digest] = await blob_size(driver, digest)
        return sizes[digest]

    held: dict[str, set[Digest]] = {}
    holders: Counter[Digest] = Counter()
    for name in names:
        digests = await linked_digests(driver, name) | await _named_by_manifests(driver, name)
        ordered = sorted(digests, key=str)
        stored = {d for d, s in zip(ordered, await each(IN_FLIGHT, ordered, size), strict=True)
                  if s is not None}
        held[name] = stored
        holders.update(stored)
    report = DiskUsage()
    for name in names if wanted is None else wanted:
        row = RepositoryUsage(name, tags=await tag_count(driver, name))
        for digest in held.get(name, set()):
            blob = sizes[digest] or 0
            row.blobs += 1
            row.logical += blob
            if holders[digest] > 1:
                row.shared += blob
            else:
                row.unique += blob
        if usage is not None:
            counted = await usage.read(name)
            row.counted_bytes, row.counted_tags = counted.bytes, counted.tags
        report.repositories.append(row)
    listed = await driver.list_keys(paths.blob_tree())
    everything = [d for d in map(paths.blob_of_data, listed) if d is not None]
    for found in await each(IN_FLIGHT, everything, size):
        if found is not None:
            report.total += found
            report.total_blobs += 1
    return report
