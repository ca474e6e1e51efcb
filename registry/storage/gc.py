"""Garbage collection: mark every blob a manifest references, sweep the rest.

Mark walks each repository's manifest revisions (optionally forgetting first the manifests
no tag reaches, directly, through an index, or as a referrer of a reached manifest).
Sweep deletes blobs nobody marked, but only those older than a grace period, so a blob
whose manifest is still being pushed survives a collection that runs while the registry
serves. Foreign layers that were pushed count as referenced like any other blob.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from client.oci.digest import Digest
from client.oci.manifest import ManifestError, parse_manifest

from . import paths
from .drivers.base import PathNotFoundError
from .links import delete_link, list_digests, read_link

if TYPE_CHECKING:
    from . import Registry


@dataclass(frozen=True, slots=True)
class _Refs:
    blobs: tuple[Digest, ...] = ()
    children: tuple[Digest, ...] = ()
    subject: Digest | None = None


@dataclass
class GCReport:
    repositories: int = 0
    manifests: int = 0
    marked: int = 0
    deleted_manifests: list[str] = field(default_factory=list)
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_young: int = 0
    warnings: list[str] = field(default_factory=list)


class GarbageCollector:
    def __init__(self, registry: Registry, grace: float = 3600.0) -> None:
        self.registry = registry
        self.driver = registry.driver
        self.grace = grace

    async def collect(self, dry_run: bool = False, delete_untagged: bool = False) -> GCReport:
        report = GCReport()
        marked: set[Digest] = set()
        for name in await self.registry.repositories.walk_names():
            report.repositories += 1
            revisions = await list_digests(self.driver, paths.revisions(name))
            refs = {d: await self._references(d) for d in revisions}
            keep = set(revisions)
            if delete_untagged:
                keep = await self._reachable(name, refs)
                for digest in sorted(set(revisions) - keep):
                    report.deleted_manifests.append(f"{name}@{digest}")
                    if not dry_run:
                        await self.registry.manifests.remove_revision(
                            name, digest, refs[digest].subject
                        )
            for digest in keep:
                report.manifests += 1
                marked.add(digest)
                marked.update(refs[digest].blobs)
        report.marked = len(marked)
        await self._sweep(marked, report, dry_run)
        if report.repositories == 0:
            report.warnings.append(
                f"no repositories in {self.driver.location}"
                + ("" if report.deleted_blobs or report.kept_young
                   else " (and no blobs): is that the registry's storage root?"))
        if not dry_run:
            for name in await self.registry.repositories.names():
                if not await self.registry.repositories.exists(name):
                    await self.registry.repositories.forget(name)
        return report

    async def _references(self, digest: Digest) -> _Refs:
        try:
            manifest = parse_manifest(await self.driver.get(paths.blob_data(digest)))
        except (PathNotFoundError, ManifestError):
            return _Refs()
        return _Refs(
            tuple(d.digest for d in manifest.blobs()),
            tuple(d.digest for d in manifest.manifests),
            manifest.subject.digest if manifest.subject else None,
        )

    async def _reachable(self, name: str, refs: dict[Digest, _Refs]) -> set[Digest]:
        pending = []
        for tag in await self.registry.tags.names(name):
            target = await read_link(self.driver, paths.tag_link(name, tag))
            if target is not None:
                pending.append(target)
        referrers: dict[Digest, list[Digest]] = {}
        for digest, ref in refs.items():
            if ref.subject is not None:
                referrers.setdefault(ref.subject, []).append(digest)
        reached: set[Digest] = set()
        while pending:
            digest = pending.pop()
            if digest in reached or digest not in refs:
                continue
            reached.add(digest)
            pending.extend(refs[digest].children)
            pending.extend(referrers.get(digest, []))
        return reached

    async def _sweep(self, marked: set[Digest], report: GCReport, dry_run: bool) -> None:
        cutoff = time.time() - self.grace
        for algorithm in await self._list(paths.blob_tree()):
            for prefix in await self._list(paths.blob_tree(algorithm)):
                for hex_ in await self._list(paths.blob_tree(algorithm, prefix)):
                    digest = paths.digest_named(algorithm, hex_)
                    if digest is None or digest in marked:
                        continue
                    try:
                        info = await self.driver.stat(paths.blob_data(digest))
                    except PathNotFoundError:
                        continue
                    if info.modified > cutoff:
                        report.kept_young += 1
                        continue
                    report.deleted_blobs.append(str(digest))
                    report.freed_bytes += info.size
                    if not dry_run:
                        await self.driver.delete(paths.blob_dir(digest))
        if not dry_run and report.deleted_blobs:
            await self._unlink(set(report.deleted_blobs))

    async def _unlink(self, deleted: set[str]) -> None:
        """Remove per-repository links to the blobs just deleted."""
        for name in await self.registry.repositories.walk_names():
            for digest in await list_digests(self.driver, paths.layers(name)):
                if str(digest) in deleted:
                    await delete_link(self.driver, paths.layer_link(name, digest))

    async def _list(self, path: str) -> list[str]:
        try:
            return await self.driver.list_dir(path)
        except PathNotFoundError:
            return []
