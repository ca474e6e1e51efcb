"""Registry semantics over a storage driver: blobs, uploads, manifests, tags, repositories."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Config, GCSettings
from . import examine
from .blobs import BlobStore
from .drivers.base import StorageDriver
from .drivers.filesystem import FilesystemDriver
from .examine import UrlPolicy
from .manifests import ManifestStore
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
    usage: UsageCounter

    @classmethod
    def assemble(cls, driver: StorageDriver, config: Config) -> Registry:
        """The stores of every concept over one driver, set up as `config` says."""
        repositories = RepositoryStore(driver)
        usage = UsageCounter(driver)
        blobs = BlobStore(driver, repositories, usage, Quotas(driver, config.berth.quotas, usage))
        tags = TagStore(driver, usage)
        uses = UseRecords(driver, config.berth.gc.grace)
        policy = config.validation.manifests.urls
        manifests = ManifestStore(
            driver, blobs, tags, uses, UrlPolicy(policy.allow, policy.deny),
            max_bytes=config.berth.manifest_max_bytes, validate=not config.validation.disabled,
        )
        return cls(driver, blobs, UploadStore(driver, blobs), manifests, tags, repositories,
                   uses, config.berth.gc, usage)

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
    return Registry.assemble(open_driver(config), config)
