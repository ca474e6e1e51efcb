"""Checking (and with `repair`, healing) what storage holds: `berth fsck` and the server's
background scrub (docs/fsck.md).

A run verifies blob digests first (streamed, a few blobs at once, hashed off the event
loop, optionally at a bounded rate), then each repository's links, revisions, tags,
referrers and tag index, then the catalog index. Repair never deletes blob data: a corrupt
blob is moved aside (`_fsck/quarantine/…`), so a push of the right bytes stores them again;
links whose target is gone are removed; a link whose content disagrees with the digest its
path names is rewritten; indexes are made to agree with the tree. Anything younger than
`min_age` is left alone (a push may be writing it), and so is a link whose blob a garbage
collection has set aside (it may put it back).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from client.oci.digest import Digest, DigestError, new_hasher
from client.oci.manifest import Manifest, ManifestError, parse_manifest

from . import paths
from .drivers.base import PathNotFoundError
from .links import delete_link, list_digests, write_link
from .parallel import each

if TYPE_CHECKING:
    from . import Registry

log = logging.getLogger(__name__)

BLOBS_AT_ONCE = 4  # blobs verified at once
LINKS_IN_FLIGHT = 16  # link and revision lookups at once
HASH_BUFFER = 1 << 20  # bytes hashed in one call (off the event loop)
MIN_AGE = 60.0  # seconds: younger links and index entries may be a push in progress

# Problem kinds (docs/fsck.md has the table)
CORRUPT_BLOB = "corrupt-blob"  # data does not hash to its digest
CORRUPT_LINK = "corrupt-link"  # a layer or revision link whose content is not its digest
DANGLING_LAYER = "dangling-layer-link"  # a layer link whose blob data is missing
DANGLING_REVISION = "dangling-revision"  # a revision link whose manifest data is missing
UNPARSABLE_MANIFEST = "unparsable-manifest"
MISSING_BLOB = "missing-blob"  # a manifest's config or layer is not stored (or not linked)
UNLINKED_BLOB = "unlinked-blob"  # stored, but not linked into the manifest's repository
MISSING_CHILD = "missing-manifest"  # an index names a manifest the repository lacks
MISSING_REFERRER_LINK = "missing-referrer-link"
DANGLING_REFERRER = "dangling-referrer-link"
CORRUPT_TAG = "corrupt-tag"  # a tag link that holds no digest
DANGLING_TAG = "dangling-tag"  # a tag naming a manifest the repository lacks
TAG_INDEX = "tag-index"  # the tag index disagrees with the tags
CATALOG_INDEX = "catalog-index"  # the catalog index disagrees with the repositories


@dataclass
class Problem:
    kind: str
    repository: str | None
    key: str  # the storage key concerned
    detail: str
    digest: str | None = None
    repaired: str | None = None  # what repair did; None: nothing (or it cannot)

    def line(self) -> str:
        where = f"{self.repository}: " if self.repository else ""
        done = f" [repaired: {self.repaired}]" if self.repaired else ""
        return f"{self.kind}: {where}{self.detail}{done}"


@dataclass
class FsckReport:
    repositories: int = 0
    manifests: int = 0
    tags: int = 0
    links: int = 0  # layer, revision and referrer links examined
    blobs: int = 0  # verified
    bytes: int = 0  # verified
    skipped_young: int = 0  # left alone: younger than min_age
    usage_recounted: int = 0  # repositories whose quota usage --repair counted exactly
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def unrepaired(self) -> list[Problem]:
        return [p for p in self.problems if p.repaired is None]

    def summary(self) -> str:
        repaired = len(self.problems) - len(self.unrepaired)
        found = (f"{len(self.problems)} problems ({repaired} repaired)" if self.problems
                 else "no problems")
        return (f"{self.blobs} blobs ({self.bytes} bytes), {self.repositories} repositories, "
                f"{self.manifests} manifests, {self.tags} tags and {self.links} links "
                f"checked in {self.seconds:.1f}s: {found}")


class Progress(Protocol):
    """Where verified bytes are reported (the CLI's progress bar)."""

    def start(self, total_bytes: int) -> None: ...

    def advance(self, done_bytes: int) -> None: ...


class Throttle:
    """At most `rate` bytes a second over a run, shared by every blob being verified."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._began: float | None = None
        self._taken = 0

    async def take(self, size: int) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        if self._began is None:
            self._began = now
        self._taken += size
        ahead = self._taken / self.rate - (now - self._began)
        if ahead > 0:
            await asyncio.sleep(ahead)


async def _regrouped(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Chunks regrouped into buffers of at least HASH_BUFFER bytes (the last may be less),
    so each hashing call is worth a thread hop."""
    pending: list[bytes] = []
    held = 0
    async for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        if held >= HASH_BUFFER:
            yield b"".join(pending)
            pending, held = [], 0
    if pending:
        yield b"".join(pending)


class Checker:
    def __init__(self, registry: Registry, repair: bool = False, min_age: float = MIN_AGE,
                 rate: float | None = None, progress: Progress | None = None) -> None:
        self.registry = registry
        self.driver = registry.driver
        self.repair = repair
        self.min_age = min_age
        self.throttle = Throttle(rate)
        self.progress = progress
        self.report = FsckReport()
        self._now = time.time()

    async def check(self, repositories: Iterable[str] | None = None) -> FsckReport:
        """Everything (`repositories` None), or those repositories and every blob they
        reference."""
        began = time.monotonic()
        self._now = time.time()
        report = self.report
        everything = repositories is None
        names = await self.registry.repositories.walk_names() if everything else list(
            repositories or ())
        if everything:
            digests = [d async for d in self.registry.blobs.digests()]
        else:
            digests = sorted(await self._referenced(names), key=str)
        if everything and not names and not digests:
            report.warnings.append(f"no repositories and no blobs in "
                                   f"{self.driver.location}: is that the storage root?")
        await self._verify_blobs(digests)
        for name in names:
            report.repositories += 1
            await self._check_repository(name)
        if everything:
            await self._check_catalog(names)
        usage = self.registry.usage
        if self.repair and usage is not None:  # quotas' counts, exact again (quotas.md)
            counted = await usage.recount(names)
            if self.registry.blobs.quotas is not None:
                self.registry.blobs.quotas.publish(counted)
            report.usage_recounted = len(counted)
        report.seconds = time.monotonic() - began
        return report

    def _problem(self, kind: str, repository: str | None, key: str, detail: str,
                 digest: Digest | str | None = None) -> Problem:
        problem = Problem(kind, repository, key, detail,
                          None if digest is None else str(digest))
        self.report.problems.append(problem)
        return problem

    async def _young(self, key: str) -> bool:
        """Whether `key` was written within `min_age` (then it is left alone); a key
        gone meanwhile counts as young (someone else is changing it)."""
        try:
            modified = (await self.driver.stat(key)).modified
        except PathNotFoundError:
            return True
        if modified > self._now - self.min_age:
            self.report.skipped_young += 1
            return True
        return False

    async def _stored(self, digest: Digest) -> bool:
        return await self.registry.blobs.size(digest) is not None

    async def _gc_has(self, digest: Digest) -> bool:
        """Whether a garbage collection holds the blob set aside now (it may put it back)."""
        for run in await self.registry.blobs.runs_with_set_aside():
            if await self.driver.is_object(paths.quarantined(run, digest)):
                return True
        return False

    # -- blobs ----------------------------------------------------------------------

    async def _referenced(self, names: list[str]) -> set[Digest]:
        """The blobs the given repositories link or reference (manifests included)."""
        found: set[Digest] = set()
        for name in names:
            found.update(await list_digests(self.driver, paths.layers(name)))
            revisions = await list_digests(self.driver, paths.revisions(name))
            found.update(revisions)

            async def load(digest: Digest, name: str = name) -> Manifest | None:
                return await self._manifest(name, digest)

            for manifest in await each(LINKS_IN_FLIGHT, revisions, load):
                if manifest is not None:
                    found.update(d.digest for d in (*manifest.blobs(), *manifest.manifests))
        return found

    async def _verify_blobs(self, digests: list[Digest]) -> None:
        sizes = await each(LINKS_IN_FLIGHT, digests, self.registry.blobs.size)
        present = [(d, s) for d, s in zip(digests, sizes, strict=True) if s is not None]
        if self.progress is not None:
            self.progress.start(sum(s for _, s in present))
        await each(BLOBS_AT_ONCE, present, lambda item: self._verify(*item))

    async def _verify(self, digest: Digest, size: int) -> None:
        key = paths.blob_data(digest)
        try:
            before = await self.driver.stat(key)
            hasher = new_hasher(digest.algorithm)
            read = 0
            async for buffer in _regrouped(self.driver.reader(key)):
                await asyncio.to_thread(hasher.update, buffer)
                read += len(buffer)
                if self.progress is not None:
                    self.progress.advance(len(buffer))
                await self.throttle.take(len(buffer))
        except PathNotFoundError:
            return  # gone meanwhile (a collection set it aside): nothing to say
        self.report.blobs += 1
        self.report.bytes += read
        if read < size and self.progress is not None:
            self.progress.advance(size - read)
        actual = Digest.from_hasher(digest.algorithm, hasher)
        if actual == digest:
            return
        problem = self._problem(CORRUPT_BLOB, None, key,
                                f"blob {digest} holds data whose digest is {actual}", digest)
        if not self.repair:
            return
        try:  # not if it changed while being read (a collection put it back, a push wrote it)
            after = await self.driver.stat(key)
        except PathNotFoundError:
            return
        if (after.size, after.modified) != (before.size, before.modified):
            problem.detail += " (it changed while being read: check again)"
            return
        try:
            await self.driver.move(key, paths.fsck_quarantined(digest))
        except PathNotFoundError:  # a collection set it aside meanwhile
            problem.detail += " (gone meanwhile: check again)"
            return
        problem.repaired = f"moved aside to {paths.fsck_quarantined(digest)}"

    # -- repositories ---------------------------------------------------------------

    async def _check_repository(self, name: str) -> None:
        layers = await list_digests(self.driver, paths.layers(name))
        await each(LINKS_IN_FLIGHT, layers, lambda d: self._check_layer_link(name, d))
        revisions = await list_digests(self.driver, paths.revisions(name))
        kept = await each(LINKS_IN_FLIGHT, revisions, lambda d: self._check_revision(name, d))
        held = {d for d, ok in zip(revisions, kept, strict=True) if ok}
        await each(LINKS_IN_FLIGHT, [d for d in revisions if d in held],
                   lambda d: self._check_references(name, d, held))
        await self._check_referrers(name, held)
        await self._check_tags(name, held)

    async def _link_content(self, name: str, key: str, digest: Digest) -> bool:
        """Check that a link holds the digest its path names (rewriting it under repair);
        False when the link is gone."""
        self.report.links += 1
        try:
            text = (await self.driver.get(key)).decode("ascii", "replace").strip()
        except PathNotFoundError:
            return False
        if text == str(digest):
            return True
        problem = self._problem(CORRUPT_LINK, name, key,
                                f"link for {digest} holds {text[:80]!r}", digest)
        if self.repair:
            await write_link(self.driver, key, digest)
            problem.repaired = "rewritten with the digest its path names"
        return True

    async def _check_layer_link(self, name: str, digest: Digest) -> None:
        key = paths.layer_link(name, digest)
        if not await self._link_content(name, key, digest) or await self._stored(digest):
            return
        problem = self._problem(DANGLING_LAYER, name, key,
                                f"blob {digest} is linked but its data is missing", digest)
        if self.repair and not await self._young(key) and not await self._gc_has(digest) \
                and not await self._stored(digest):
            await delete_link(self.driver, key)
            problem.repaired = "link removed (a push of the blob heals it)"

    async def _check_revision(self, name: str, digest: Digest) -> bool:
        """Whether the revision's link and data are there (after repair)."""
        key = paths.revision_link(name, digest)
        self.report.manifests += 1
        if not await self._link_content(name, key, digest):
            return False
        if await self._stored(digest):
            return True
        problem = self._problem(DANGLING_REVISION, name, key,
                                f"manifest {digest} is listed but its data is missing", digest)
        if self.repair and not await self._young(key) and not await self._gc_has(digest) \
                and not await self._stored(digest):
            await delete_link(self.driver, key)
            await self.driver.delete(paths.revision_media_type(name, digest))
            problem.repaired = "revision removed (a push of the manifest heals it)"
            return False
        return True  # (its data may come back: tags naming it are not dangling)

    async def _manifest(self, name: str, digest: Digest) -> Manifest | None:
        try:
            data = await self.registry.blobs.read(digest)
        except PathNotFoundError:
            return None
        try:
            pushed = (await self.driver.get(paths.revision_media_type(name, digest))).decode()
        except (PathNotFoundError, UnicodeDecodeError):
            pushed = None
        try:
            return await asyncio.to_thread(parse_manifest, data, pushed)
        except ManifestError:
            return None

    async def _check_references(self, name: str, digest: Digest, held: set[Digest]) -> None:
        manifest = await self._manifest(name, digest)
        key = paths.revision_link(name, digest)
        if manifest is None:
            if await self._stored(digest):
                self._problem(UNPARSABLE_MANIFEST, name, key,
                              f"manifest {digest} cannot be parsed", digest)
            return
        for ref in manifest.blobs():
            if ref.foreign and ref.urls:
                continue  # fetched by clients from its urls: never expected here
            if not await self._stored(ref.digest):
                what = "config" if ref is manifest.config else "layer"
                self._problem(MISSING_BLOB, name, key,
                              f"image {name}@{digest} lost {what} {ref.digest}", ref.digest)
            elif not await self.registry.blobs.linked(name, ref.digest):
                problem = self._problem(UNLINKED_BLOB, name, paths.layer_link(name, ref.digest),
                                        f"image {name}@{digest} names {ref.digest}, stored "
                                        "but not linked here", ref.digest)
                if self.repair:
                    await write_link(self.driver, paths.layer_link(name, ref.digest),
                                     ref.digest)
                    problem.repaired = "link written"
        for child in manifest.manifests:
            if child.digest not in held:
                self._problem(MISSING_CHILD, name, key,
                              f"index {name}@{digest} lost manifest {child.digest}",
                              child.digest)
        if manifest.subject is not None:
            link = paths.referrer_link(name, manifest.subject.digest, digest)
            if not await self.driver.is_object(link):
                problem = self._problem(MISSING_REFERRER_LINK, name, link,
                                        f"{digest} refers to {manifest.subject.digest} but "
                                        "is not in its referrers", digest)
                if self.repair and not await self._young(key):
                    await write_link(self.driver, link, digest)
                    problem.repaired = "referrer link written"

    async def _check_referrers(self, name: str, held: set[Digest]) -> None:
        for subject in await list_digests(self.driver, paths.all_referrers(name)):
            for referrer in await list_digests(self.driver, paths.referrers(name, subject)):
                key = paths.referrer_link(name, subject, referrer)
                self.report.links += 1
                if referrer in held or await self.registry.manifests.exists(name, referrer):
                    continue
                problem = self._problem(DANGLING_REFERRER, name, key,
                                        f"referrer {referrer} of {subject} is not a manifest "
                                        "here", referrer)
                if self.repair and not await self._young(key):
                    await delete_link(self.driver, key)
                    problem.repaired = "link removed"

    async def _check_tags(self, name: str, held: set[Digest]) -> None:
        try:
            tags = await self.driver.list_dir(paths.tags(name))
        except PathNotFoundError:
            tags = []
        kept = set()
        for tag in tags:
            self.report.tags += 1
            if await self._check_tag(name, tag, held):
                kept.add(tag)
        await self._check_tag_index(name, kept)

    async def _check_tag(self, name: str, tag: str, held: set[Digest]) -> bool:
        """Whether the tag stays (it resolves, or repair left it)."""
        key = paths.tag_link(name, tag)
        try:
            text = (await self.driver.get(key)).decode("ascii", "replace").strip()
        except PathNotFoundError:
            return False  # (a directory without its link: deleted meanwhile)
        try:
            target = Digest.parse(text)
        except DigestError:
            problem = self._problem(CORRUPT_TAG, name, key,
                                    f"tag {tag} holds {text[:80]!r}, not a digest")
        else:
            if target in held or await self.registry.manifests.exists(name, target):
                return True
            problem = self._problem(DANGLING_TAG, name, key,
                                    f"tag {tag} names {target}, which is not a manifest here",
                                    target)
        if not self.repair or await self._young(key):
            return True
        await self.registry.tags.forget(name, tag)
        problem.repaired = "tag removed (push it again)"
        return False

    async def _check_tag_index(self, name: str, tags: set[str]) -> None:
        index_keys = paths.tag_index(name)
        if not await self.driver.is_object(index_keys.complete):
            return  # not indexed yet (written before the index): listed from the links
        listed = {e for e in map(index_keys.entry, await self.driver.list_keys(
            index_keys.prefix)) if e is not None}
        missing, extra = sorted(tags - listed), sorted(listed - tags)
        if not missing and not extra:
            return
        problem = self._problem(TAG_INDEX, name, index_keys.prefix,
                                f"tag index lacks {missing} and lists {extra} in vain")
        if not self.repair:
            return
        added = [t for t in missing if not await self._young(paths.tag_link(name, t))]
        for tag in added:
            await self.driver.put(index_keys.key(tag), b"")
        removed = []
        for tag in extra:  # unless a push wrote the tag meanwhile (it writes its link first)
            if not await self.driver.is_object(paths.tag_link(name, tag)) \
                    and not await self._young(index_keys.key(tag)):
                await self.driver.delete(index_keys.key(tag))
                removed.append(tag)
        if len(added) + len(removed) == len(missing) + len(extra):
            problem.repaired = "tag index rebuilt"

    async def _check_catalog(self, names: list[str]) -> None:
        index_keys = paths.CATALOG_INDEX
        if not await self.driver.is_object(index_keys.complete):
            return  # the server indexes a root at start; until then _catalog walks
        listed = {e for e in map(index_keys.entry, await self.driver.list_keys(
            index_keys.prefix)) if e is not None}
        missing, extra = sorted(set(names) - listed), sorted(listed - set(names))
        if not missing and not extra:
            return
        problem = self._problem(CATALOG_INDEX, None, index_keys.prefix,
                                f"catalog index lacks {missing} and lists {extra} in vain")
        if not self.repair:
            return
        for name in missing:
            await self.driver.put(index_keys.key(name), b"")
        removed = []
        for name in extra:  # (a first push registers its repository before linking)
            if not await self.registry.repositories.exists(name) \
                    and not await self._young(index_keys.key(name)):
                await self.driver.delete(index_keys.key(name))
                removed.append(name)
        if len(removed) == len(extra):
            problem.repaired = "catalog index rebuilt"


def log_problems(report: FsckReport, prefix: str = "fsck") -> None:
    for problem in report.problems:
        log.warning("%s: %s", prefix, problem.line())

