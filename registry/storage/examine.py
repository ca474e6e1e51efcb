"""Examining manifest bytes: parsing, digesting, the URLs foreign layers carry, and which
distinct blobs and child manifests a manifest needs (one may name a layer thousands of
times). Nothing here touches storage.

It is all CPU work, and for a large manifest a lot of it: 25,000 layers take a quarter of
a second to parse and leave ~100,000 objects behind, whose garbage collection then holds
the GIL for 50-150 ms at a time. A manifest over `INLINE_BYTES` is therefore examined in
a worker process, which sends back only the summary (a `ManifestInfo` and one
`Reference` per distinct digest): the event loop goes on serving, on the other core.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from client.oci.descriptor import Descriptor
from client.oci.digest import Digest
from client.oci.manifest import Manifest, ManifestError, parse_manifest

from .. import errors

log = logging.getLogger(__name__)

T = TypeVar("T")
INLINE_BYTES = 32 * 1024  # smaller manifests are examined on the event loop: quicker
_WORKERS = max(1, min(4, os.cpu_count() or 1))  # the event loop mostly waits on I/O
_pool: ProcessPoolExecutor | None = None


async def off_loop(size: int, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` for a document of `size` bytes: inline when small, else in a worker
    process (started on first use; `shutdown` stops it)."""
    global _pool
    if size <= INLINE_BYTES:
        return work(*args)
    if _pool is None:
        # spawn: a fork would copy the thread pools and locks of the serving process
        _pool = ProcessPoolExecutor(_WORKERS, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, work, *args)
    except BrokenProcessPool:  # a worker was killed (out of memory?): this one inline
        log.warning("the manifest worker process died; examining this manifest in-process")
        _pool = None
        return work(*args)


def _watch_parent(parent: int) -> None:
    """In a worker: exit when the serving process is gone, however it ended (a killed
    parent closes nothing the worker waits on)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="berth-parent-watch", daemon=True).start()


def shutdown() -> None:
    """Stop the worker processes (the next large manifest starts them again)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """What the registry serves about a manifest besides its bytes."""

    digest: Digest
    media_type: str
    size: int
    artifact_type: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Digest | None = None

    @classmethod
    def of(cls, manifest: Manifest, digest: Digest) -> ManifestInfo:
        return cls(
            digest, manifest.media_type, len(manifest.data), manifest.effective_artifact_type(),
            manifest.annotations, manifest.subject.digest if manifest.subject else None,
        )

    def descriptor(self) -> dict[str, Any]:
        """The manifest's descriptor, as a referrers listing shows it."""
        return Descriptor(self.media_type, self.digest, self.size,
                          annotations=dict(self.annotations),
                          artifact_type=self.artifact_type).to_json()


class UrlPolicy:
    """Which `urls` a manifest may carry: http(s), no fragment, matching an `allow`
    expression (any URL when there are none) and no `deny` expression (searched, as
    distribution's Go regexps are, not anchored)."""

    def __init__(self, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> None:
        self.allow = [re.compile(p) for p in allow]
        self.deny = [re.compile(p) for p in deny]

    def refusal(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
        except ValueError:
            return "not a valid URL"
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "only http and https URLs are allowed"
        if parts.fragment or url.endswith("#"):
            return "URLs must not have a fragment"
        if self.allow and not any(p.search(url) for p in self.allow):
            return "URL does not match validation.manifests.urls.allow"
        if any(p.search(url) for p in self.deny):
            return "URL matches validation.manifests.urls.deny"
        return None


@dataclass(frozen=True, slots=True)
class Reference:
    """One digest a manifest names, however many of its descriptors name it."""

    digest: Digest
    media_type: str  # of the first descriptor naming it
    sizes: frozenset[int]  # every size those descriptors give
    at_urls: bool  # every one of them is a foreign layer with urls (so may be absent)

    def check_size(self, size: int) -> None:
        """Every descriptor of this digest must give the content's real size."""
        for claimed in sorted(self.sizes):
            if claimed != size:
                raise errors.ManifestInvalid(
                    f"descriptor {self.digest} says size {claimed}, the content has {size}",
                    detail={"digest": str(self.digest), "size": claimed, "actual": size},
                )


def _references(descriptors: Iterable[Descriptor]) -> tuple[Reference, ...]:
    grouped: dict[str, list[Descriptor]] = {}
    for desc in descriptors:
        grouped.setdefault(str(desc.digest), []).append(desc)
    return tuple(
        Reference(same[0].digest, same[0].media_type, frozenset(d.size for d in same),
                  all(d.foreign and d.urls for d in same))
        for same in grouped.values()
    )


@dataclass(frozen=True, slots=True)
class Examined:
    """A pushed manifest, examined."""

    info: ManifestInfo
    declared: bool  # the bytes carry their `mediaType` (else it came from Content-Type)
    blobs: tuple[Reference, ...]  # config and layers
    children: tuple[Reference, ...]  # an index's manifests


def _check_urls(manifest: Manifest, policy: UrlPolicy) -> None:
    seen: set[str] = set()
    for desc in (*manifest.blobs(), *manifest.manifests):
        for url in desc.urls:
            if url in seen:
                continue
            seen.add(url)
            reason = policy.refusal(url)
            if reason is not None:
                raise errors.ManifestInvalid(
                    f"layer {desc.digest}: {reason}", detail={"url": url, "reason": reason}
                )


def examine(data: bytes, content_type: str | None, algorithm: str,
            policy: UrlPolicy | None) -> Examined:
    """Parse and digest a pushed manifest and list the distinct references it makes; with
    a `policy`, also check its URLs (without one, validation is off)."""
    try:
        manifest = parse_manifest(data, content_type)
    except ManifestError as exc:
        raise errors.ManifestInvalid(str(exc)) from None
    info = ManifestInfo.of(manifest, Digest.from_bytes(data, algorithm))
    if policy is not None:
        _check_urls(manifest, policy)
    return Examined(info, manifest.declared, _references(manifest.blobs()),
                    _references(manifest.manifests))


def describe(data: bytes, digest: Digest, content_type: str | None) -> tuple[ManifestInfo, bool]:
    """A stored manifest's info, and whether its bytes declare their media type. Bytes
    Berth cannot parse (stored by another registry, e.g. schema 1) are served as JSON."""
    try:
        manifest = parse_manifest(data, content_type)
    except ManifestError:
        return ManifestInfo(digest, "application/json", len(data)), True
    return ManifestInfo.of(manifest, digest), manifest.declared
