"""Registry semantics over a storage driver: blobs, uploads, manifests, tags, repositories."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from .. import tracing
from ..config import Config, GCSettings, RetentionSettings
from . import examine, paths
from .blobs import BlobStore
from .drivers.base import PathNotFoundError, StorageDriver
from .drivers.filesystem import FilesystemDriver
from .examine import UrlPolicy
from .immutability import ImmutableTags
from .manifests import ManifestStore
from .metered import MeteredDriver
from .pulls import PullRecords
from .quotas import Quotas
from .repositories import RepositoryStore
from .tags import TagStore
from .uploads import UploadStore
from .usage import UsageCounter
from .uses import UseRecords


@dataclass
class Registry:
    """Everything the HTTP layer may ask of storage, one object per concept."""

    driver: StorageDriver
    blobs: BlobStore
    uploads: UploadStore
    manifests: ManifestStore
    tags: TagStore
    repositories: RepositoryStore
    uses: UseRecords
    gc: GCSettings
    # per-repository usage, kept only while quotas are configured (docs/quotas.md)
    usage: UsageCounter | None
    pulls: PullRecords
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # storage.maintenance.readonly: the API refuses writes and background writers pause
    # (switched at run time by a config reload)
    read_only: bool = False

    @classmethod
    def assemble(cls, driver: StorageDriver, config: Config) -> Registry:
        """The stores of every concept over one driver, set up as `config` says."""
        repositories = RepositoryStore(driver)
        # usage is counted only for quotas: without them a push pays nothing for it
        usage = UsageCounter(driver) if config.berth.quotas else None
        quotas = Quotas(driver, config.berth.quotas, usage) if usage is not None else None
        uses = UseRecords(driver, config.berth.gc.grace)
        blobs = BlobStore(driver, repositories, uses, usage, quotas)
        cache = config.berth.cache
        tags = TagStore(driver, ImmutableTags(config.berth.immutabletags), usage,
                        cache_ttl=cache.ttl)
        policy = config.validation.manifests.urls
        manifests = ManifestStore(
            driver, blobs, tags, uses, UrlPolicy(policy.allow, policy.deny),
            max_bytes=config.berth.manifest_max_bytes, validate=not config.validation.disabled,
            cache_bytes=cache.manifests,
        )
        return cls(driver, blobs, UploadStore(driver, blobs), manifests, tags, repositories,
                   uses, config.berth.gc, usage,
                   PullRecords(driver, config.berth.retention.records_pulls),
                   config.berth.retention, config.storage.maintenance.readonly.enabled)

    async def probe(self) -> None:
        """Raise unless storage answers and (when not read-only) takes a write: what
        readiness asks. One small object of its own; no blob data is touched."""
        if self.read_only:
            with contextlib.suppress(PathNotFoundError):
                await self.driver.stat(paths.HEALTH_PROBE)
            return
        await self.driver.put(paths.HEALTH_PROBE, f"{time.time():.3f}".encode())
        await self.driver.stat(paths.HEALTH_PROBE)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, examine.shutdown)
        await self.driver.close()


def open_driver(config: Config) -> StorageDriver:
    if config.storage.driver == "inmemory":
        from .drivers.memory import MemoryDriver

        return MemoryDriver()
    if config.storage.s3 is not None:
        from .drivers.s3 import S3Driver

        s3 = config.storage.s3
        return S3Driver(
            s3.bucket, region=s3.region, endpoint=s3.regionendpoint, access_key=s3.accesskey,
            secret_key=s3.secretkey, prefix=s3.rootdirectory, path_style=s3.forcepathstyle,
            max_threads=s3.maxthreads, chunk_size=s3.chunksize, encrypt=s3.encrypt,
            kms_key_id=s3.keyid, storage_class=s3.storageclass,
        )
    fs = config.filesystem
    return FilesystemDriver(fs.rootdirectory, fs.maxthreads, fsync=config.berth.fsync)


def open_registry(config: Config) -> Registry:
    """The registry over the configured storage, every storage action timed (metrics) and,
    while tracing is on, traced."""
    driver: StorageDriver = MeteredDriver(open_driver(config))
    if (tracer := tracing.tracer()) is not None:
        from .traced import TracedDriver

        driver = TracedDriver(driver, tracer)
    return Registry.assemble(driver, config)
