"""Garbage collection, safe while any number of processes serve (the argument, with the
exact order of writes, is docs/gc.md).

A run: write the lease (its time, on storage's clock, is the run's `t0`); put back what
crashed runs left set aside; per repository, delete the tags its retention policy does
not keep (retention.py, docs/retention.md); mark every blob a kept manifest names (all
manifests, or with `delete_untagged` or the policy's `deleteuntagged` those a tag
reaches directly, through indexes or as referrers);
forget untagged manifests in two steps (remove the revision, re-read its use record,
restore when a push named it since); then for every unmarked blob older than the grace
period and not named by a push within it: set it aside, re-read its use record, and
delete it only if no push named it meanwhile (else put it back). Last, the leftovers:
use records of long-gone blobs, referrer links whose referrer is gone, catalog entries of
emptied repositories.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from client.oci.digest import Digest
from client.oci.manifest import ManifestError, parse_manifest

from . import paths
from .drivers.base import PathNotFoundError
from .links import delete_link, list_digests, read_link, write_link
from .parallel import each
from .retention import Retention

if TYPE_CHECKING:
    from . import Registry

log = logging.getLogger(__name__)
IN_FLIGHT = 16  # storage requests of one collection at once
_REFS_REMEMBERED = 65536  # manifests whose references this process remembers


@dataclass(frozen=True, slots=True)
class _Refs:
    blobs: tuple[Digest, ...] = ()
    children: tuple[Digest, ...] = ()
    subject: Digest | None = None


@dataclass
class GCReport:
    repositories: int = 0
    manifests: int = 0  # examined
    marked: int = 0  # blobs a kept manifest names
    blobs: int = 0  # examined
    deleted_manifests: list[str] = field(default_factory=list)
    deleted_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    kept_young: int = 0  # unreferenced, but younger than the grace period
    kept_named: int = 0  # unreferenced, but a push named them within the grace period
    restored: int = 0  # set aside, then named by a push meanwhile: put back
    cleaned: int = 0  # leftovers removed (use records, referrer links, catalog entries)
    retention_deleted_tags: list[str] = field(default_factory=list)  # `name:tag`
    retention_kept_immutable: list[str] = field(default_factory=list)  # rules said delete
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.repositories} repositories, {self.manifests} manifests and "
                f"{self.blobs} blobs examined; deleted {len(self.deleted_blobs)} blobs "
                f"({self.freed_bytes} bytes) and {len(self.deleted_manifests)} untagged "
                f"manifests; kept {self.kept_young} young and {self.kept_named} recently "
                f"named unreferenced blobs, restored {self.restored}, cleaned "
                f"{self.cleaned} leftovers in {self.seconds:.1f}s"
                + (f"; retention deleted {len(self.retention_deleted_tags)} tags, kept "
                   f"{len(self.retention_kept_immutable)} immutable ones"
                   if self.retention_deleted_tags or self.retention_kept_immutable else ""))


_refs: OrderedDict[Digest, _Refs] = OrderedDict()


class GarbageCollector:
    def __init__(self, registry: Registry, grace: float | None = None) -> None:
        self.registry = registry
        self.driver = registry.driver
        self.grace = registry.gc.grace if grace is None else grace
        self.run = uuid.uuid4().hex[:16]
        self._repositories: list[str] = []  # walked once per run
        self._stored: set[Digest] = set()  # what the content store held when swept
        self._deleted: set[str] = set()  # what this run deleted
        self._retention = Retention(registry, registry.retention)
        self._t0 = 0.0

    async def last_run(self) -> float | None:
        """When the latest collection (by any process) started, on storage's clock."""
        try:
            return (await self.driver.stat(paths.GC_LEASE)).modified
        except PathNotFoundError:
            return None

    async def collect(self, dry_run: bool = False, delete_untagged: bool = False) -> GCReport:
        began = time.monotonic()
        report = GCReport()
        if not await self._is_registry_root():
            report.warnings.append(f"no repositories in {self.driver.location} (and no "
                                   "blobs): is that the registry's storage root?")
            return report  # and nothing written there
        if dry_run:
            t0 = time.time()
        else:
            await self.driver.put(paths.GC_LEASE, self.run.encode())
            t0 = (await self.driver.stat(paths.GC_LEASE)).modified
            await self._recover()
        # (a time read as up to `time_resolution` older than it was must not pass as
        # older than the cutoff: docs/gc.md)
        self._t0, cutoff = t0, t0 - self.grace - self.driver.time_resolution
        self._repositories = await self.registry.repositories.walk_names()
        marked = await self._mark(report, cutoff, dry_run, delete_untagged)
        report.marked = len(marked)
        await self._sweep(marked, report, cutoff, dry_run)
        if not dry_run:
            await self._clean(report, cutoff)
            if self.registry.usage is not None:  # exact again (docs/quotas.md)
                counted = await self.registry.usage.recount(self._repositories)
                if self.registry.blobs.quotas is not None:
                    self.registry.blobs.quotas.publish(counted)
        if report.repositories == 0:
            report.warnings.append(f"no repositories in {self.driver.location}")
        report.seconds = time.monotonic() - began
        return report

    async def _is_registry_root(self) -> bool:
        for top in (paths.REPOSITORIES, paths.BLOBS):
            try:
                await self.driver.stat(top)
            except PathNotFoundError:
                continue
            return True
        return False

    # -- recovery -------------------------------------------------------------------

    async def _recover(self) -> None:
        """Put back whatever other runs set aside and did not decide on (stopped ones, or
        one still running: putting back is always safe, and this run decides again). Each
        blob is decided alone, never a run's whole folder, which a live run may still be
        adding to."""
        blobs = self.registry.blobs
        for run in await blobs.runs_with_set_aside():
            if run == self.run:
                continue
            put_back = 0
            for digest in await blobs.set_aside_by(run):
                if await blobs.size(digest) is not None:
                    await blobs.drop(digest, run)  # stored again meanwhile: a spare copy
                elif await blobs.restore(digest, run):
                    put_back += 1
            if put_back:
                log.info("gc: put back %d blobs run %s had set aside", put_back, run)

    # -- mark -----------------------------------------------------------------------

    async def _references(self, digest: Digest) -> _Refs:
        """What a manifest names (parsed once per process: a digest's bytes never
        change)."""
        known = _refs.get(digest)
        if known is not None:
            return known
        try:
            manifest = parse_manifest(await self.driver.get(paths.blob_data(digest)))
        except (PathNotFoundError, ManifestError):
            refs = _Refs()
        else:
            refs = _Refs(tuple(d.digest for d in manifest.blobs()),
                         tuple(d.digest for d in manifest.manifests),
                         manifest.subject.digest if manifest.subject else None)
        if refs.blobs or refs.children or refs.subject:  # (not one that failed to load)
            _refs[digest] = refs
            while len(_refs) > _REFS_REMEMBERED:
                _refs.popitem(last=False)
        return refs

    async def _mark(self, report: GCReport, cutoff: float, dry_run: bool,
                    delete_untagged: bool) -> set[Digest]:
        marked: set[Digest] = set()
        for name in self._repositories:
            report.repositories += 1
            revisions = await list_digests(self.driver, paths.revisions(name))
            refs = dict(zip(revisions, await each(IN_FLIGHT, revisions, self._references),
                            strict=True))
            report.manifests += len(revisions)
            keep = set(revisions)
            untagged, gone, forget_cutoff = await self._apply_retention(
                name, report, cutoff, dry_run)
            if delete_untagged or untagged:
                keep = await self._reachable(name, refs, gone)
                # retention's own: untagged for its delay (and the grace period)
                forget_cutoff = cutoff if delete_untagged else min(cutoff, forget_cutoff)
                for digest in sorted(set(revisions) - keep):
                    if await self._forget_manifest(name, digest, refs[digest], forget_cutoff,
                                                   dry_run):
                        report.deleted_manifests.append(f"{name}@{digest}")
                    else:
                        keep.add(digest)
            for digest in keep:
                marked.add(digest)
                marked.update(refs[digest].blobs)
                marked.update(refs[digest].children)
        return marked

    async def _apply_retention(self, name: str, report: GCReport, cutoff: float,
                               dry_run: bool) -> tuple[bool, set[str], float]:
        """Delete the tags `name`'s retention policy does not keep (in a dry run, only
        say which); whether the policy forgets untagged manifests, the tags gone, and
        the cutoff it forgets them at."""
        plan = await self._retention.plan(name, self._t0, cutoff)
        if plan is None:
            return False, set(), cutoff
        gone = [s.tag for s in plan.delete]
        if not dry_run:
            gone = await self._retention.apply(name, plan)
        report.retention_deleted_tags.extend(f"{name}:{tag}" for tag in gone)
        report.retention_kept_immutable.extend(f"{name}:{tag}" for tag in plan.immutable)
        if gone and not dry_run:
            log.info("gc: retention policy %d deleted %d tags of %s", plan.policy, len(gone),
                     name)
        return plan.delete_untagged, set(gone), self._t0 - self.registry.retention.delay

    async def _reachable(self, name: str, refs: dict[Digest, _Refs],
                         gone: Collection[str] = ()) -> set[Digest]:
        """What a tag reaches (but the tags in `gone`): the tagged manifests, their
        children (each once: nested indexes are walked without repeats), and referrers
        of anything reached."""
        pending = []
        for tag in await self.registry.tags.linked(name):  # (the links, not the index)
            if tag in gone:
                continue
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

    async def _forget_manifest(self, name: str, digest: Digest, refs: _Refs, cutoff: float,
                               dry_run: bool) -> bool:
        """Forget an untagged manifest in `name`, unless it is younger than the grace
        period or a push named it within it (also while it was being forgotten)."""
        link = paths.revision_link(name, digest)
        try:
            written = (await self.driver.stat(link)).modified
        except PathNotFoundError:
            return False
        if written > cutoff or await self._named_since(digest, cutoff):
            return False
        if dry_run:
            return True
        await self.registry.manifests.remove_revision(name, digest, refs.subject)
        try:
            named = await self._named_since(digest, cutoff)
        except BaseException:  # stopped mid-decision: put it back
            await self._restore_revision(name, digest, refs)
            raise
        if named:  # an index push named it meanwhile
            await self._restore_revision(name, digest, refs)
            return False
        return True

    async def _restore_revision(self, name: str, digest: Digest, refs: _Refs) -> None:
        await write_link(self.driver, paths.revision_link(name, digest), digest)
        if refs.subject is not None:
            await write_link(self.driver, paths.referrer_link(name, refs.subject, digest),
                             digest)

    async def _named_since(self, digest: Digest, cutoff: float) -> bool:
        named = await self.registry.uses.last_used(digest)
        return named is not None and named > cutoff

    # -- sweep ----------------------------------------------------------------------

    async def _sweep(self, marked: set[Digest], report: GCReport, cutoff: float,
                     dry_run: bool) -> None:
        candidates = []
        async for digest in self.registry.blobs.digests():
            report.blobs += 1
            self._stored.add(digest)
            if digest not in marked:
                candidates.append(digest)
        await each(IN_FLIGHT, candidates,
                   lambda d: self._sweep_one(d, report, cutoff, dry_run))

    async def _sweep_one(self, digest: Digest, report: GCReport, cutoff: float,
                         dry_run: bool) -> None:
        blobs = self.registry.blobs
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFoundError:
            return
        if info.modified > cutoff:
            report.kept_young += 1
            return
        if await self._named_since(digest, cutoff):
            report.kept_named += 1
            return
        if dry_run:
            report.deleted_blobs.append(str(digest))
            report.freed_bytes += info.size
            return
        if not await blobs.set_aside(digest, self.run):
            return  # another collection has it
        try:
            named = await self._named_since(digest, cutoff)
        except BaseException:  # stopped (or storage failed) mid-decision: put it back
            await blobs.restore(digest, self.run)
            raise
        if named:  # a push saw it before it went (or another run put it back already)
            await blobs.restore(digest, self.run)
            report.restored += 1
            return
        await blobs.drop(digest, self.run)
        await self.registry.uses.forget(digest)
        self._deleted.add(str(digest))
        report.deleted_blobs.append(str(digest))
        report.freed_bytes += info.size

    # -- leftovers ------------------------------------------------------------------

    async def _clean(self, report: GCReport, cutoff: float) -> None:
        """What interrupted writes or deleted content left behind."""
        stale = cutoff - self.grace
        for digest in await list_digests(self.driver, paths.USES):
            if digest in self._stored:
                continue  # (records of blobs stored cost nothing to keep)
            named = await self.registry.uses.last_used(digest)
            if named is not None and named < stale and await self.registry.blobs.size(
                    digest) is None:
                await self.registry.uses.forget(digest)
                report.cleaned += 1
        for name in self._repositories:
            report.cleaned += await self._clean_repository(name, cutoff)
            if self.registry.pulls.enabled:
                revisions = await list_digests(self.driver, paths.revisions(name))
                report.cleaned += await self.registry.pulls.forget_missing(name, set(revisions))
        walked = set(self._repositories)
        repositories = self.registry.repositories
        for name in await repositories.names():
            if name in walked:
                continue
            # (a first push registers a repository just before it writes the first link)
            added = await repositories.registered(name)
            if added is not None and added < cutoff and not await repositories.exists(name):
                await repositories.forget(name)
                report.cleaned += 1

    async def _clean_repository(self, name: str, cutoff: float) -> int:
        """Links in `name` whose target is gone — layer and revision links to data no
        longer stored (the blobs this run deleted, or lost otherwise), referrer links
        whose referrer is gone, tag index entries whose tag is gone — each older than the
        cutoff, and not named by a push since (a push writes its data before its links).
        Returns how many were removed, not counting links to what this run deleted."""
        # (whatever stores data again writes the digest's use record first: _drop_link)
        cleaned = 0
        for links, link_of in ((paths.layers(name), paths.layer_link),
                               (paths.revisions(name), paths.revision_link)):
            for digest in await list_digests(self.driver, links):
                if digest in self._stored and str(digest) not in self._deleted:
                    continue
                if await self._drop_link(link_of(name, digest), digest, cutoff):
                    cleaned += str(digest) not in self._deleted
        for subject in await list_digests(self.driver, paths.all_referrers(name)):
            for referrer in await list_digests(self.driver, paths.referrers(name, subject)):
                if await self.registry.manifests.exists(name, referrer):
                    continue
                link = paths.referrer_link(name, subject, referrer)
                if not await self._older(link, cutoff):
                    continue
                # two steps: a push writes the revision, then the referrer link
                await delete_link(self.driver, link)
                if await self.registry.manifests.exists(name, referrer):
                    await write_link(self.driver, link, referrer)
                else:
                    cleaned += 1
        return cleaned + await self.registry.tags.drop_unlinked(name, cutoff)

    async def _drop_link(self, link: str, digest: Digest, cutoff: float) -> bool:
        """Remove a link to data no longer stored, in two steps, as a revision: remove it,
        then read the digest's use record; a push, upload or mount that named the digest
        meanwhile (they all do before they look, and before they write a link) gets its
        link back."""
        if not await self._older(link, cutoff):
            return False
        await delete_link(self.driver, link)
        if await self._named_since(digest, cutoff):
            await write_link(self.driver, link, digest)
            return False
        return True

    async def _older(self, key: str, cutoff: float) -> bool:
        try:
            return (await self.driver.stat(key)).modified <= cutoff
        except PathNotFoundError:
            return False
