"""S3 driver (boto3): AWS S3 and compatible stores (Ceph RGW, MinIO), blocking calls on a
bounded thread pool of its own (bucket.py). Appendable objects (upload sessions) are
appendable.py's; `move` completes one (the tail as its last part) and copies it to its
destination: CopyObject up to 5 GiB (a reference copy on RGW), part copies beyond. A blob
(an object no append wrote) costs one request to read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from ..base import Appender, FileInfo, PathNotFoundError, StorageDriver, walk_keys
from .appendable import (
    TAIL,
    AppendableObjects,
    is_tail_dir,
    marks_upload,
    object_of_tail_dir,
)
from .bucket import MAX_COPY_PART, MISSING, Bucket, MiB, error_code

READ_CHUNK = MiB


class S3Driver(StorageDriver):
    name = "s3"
    time_resolution = 1.0  # HEAD's Last-Modified

    def __init__(
        self, bucket: str, *, region: str | None = None, endpoint: str | None = None,
        access_key: str | None = None, secret_key: str | None = None, prefix: str = "",
        path_style: bool = False, max_threads: int = 32, chunk_size: int = 10 * MiB,
        encrypt: bool = False, kms_key_id: str | None = None, storage_class: str | None = None,
        redirect_ttl: int | None = 1200,
    ) -> None:
        self.bucket = Bucket(
            bucket, region=region, endpoint=endpoint, access_key=access_key,
            secret_key=secret_key, prefix=prefix, path_style=path_style,
            max_threads=max_threads, encrypt=encrypt, kms_key_id=kms_key_id,
            storage_class=storage_class,
        )
        self.appendable = AppendableObjects(self.bucket, chunk_size)
        self.redirect_ttl = redirect_ttl

    @property
    def location(self) -> str:
        return f"s3://{self.bucket.name}/{self.bucket.prefix}"

    # -- small objects --------------------------------------------------------------

    async def get(self, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.reader(path)])

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        bucket = self.bucket
        await bucket.run(bucket.s3.put_object, Bucket=bucket.name, Key=bucket.key(path),
                         Body=data, **bucket.put_args)

    # -- metadata -------------------------------------------------------------------

    def _stat(self, key: str, path: str) -> FileInfo:
        head = self.bucket.head(key)
        if head is not None:
            if not marks_upload(head):
                return FileInfo(path, int(head["ContentLength"]),
                                head["LastModified"].timestamp(), False)
            session = self.appendable.session(key, head)
            return FileInfo(path, session.size, session.modified, False)
        page = self.bucket.s3.list_objects_v2(Bucket=self.bucket.name, Prefix=key + "/",
                                              MaxKeys=1)
        if page.get("KeyCount", 0):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFoundError(path)

    async def stat(self, path: str) -> FileInfo:
        return await self.bucket.run(self._stat, self.bucket.key(path), path)

    async def is_object(self, path: str) -> bool:
        bucket = self.bucket
        try:
            await bucket.run(bucket.s3.head_object, Bucket=bucket.name, Key=bucket.key(path))
        except PathNotFoundError:
            return False
        return True

    def _list_dir(self, key: str, path: str) -> list[str]:
        names: set[str] = set()
        prefix = key + "/"
        for page in self.bucket.listing(prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                names.add(object_of_tail_dir(common["Prefix"][len(prefix):].rstrip("/")))
            for item in page.get("Contents", []):
                names.add(item["Key"][len(prefix):])
        if not names:
            raise PathNotFoundError(path)
        return sorted(names)

    async def list_dir(self, path: str) -> list[str]:
        return await self.bucket.run(self._list_dir, self.bucket.key(path), path)

    def _walk(self, key: str, path: str, prune: Callable[[str], bool]) -> list[str]:
        prefix = key + "/"

        def keys() -> Iterator[list[str]]:
            for page in self.bucket.listing(prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix):].split("/")
                    if len(parts) >= 2 and is_tail_dir(parts[-2]):  # an appended object
                        parts = [*parts[:-2], object_of_tail_dir(parts[-2])]
                    yield parts

        found = walk_keys(keys(), prune)
        if not found:
            raise PathNotFoundError(path)
        return found

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        return await self.bucket.run(self._walk, self.bucket.key(path), path, prune)

    def _list_keys(self, key: str, start_after: str | None, limit: int | None) -> list[str]:
        prefix = key + "/"
        args: dict[str, Any] = {"Bucket": self.bucket.name, "Prefix": prefix}
        if start_after is not None:
            args["StartAfter"] = prefix + start_after
        keys: list[str] = []
        while limit is None or len(keys) < limit:
            if limit is not None:
                args["MaxKeys"] = min(1000, limit - len(keys))
            page = self.bucket.s3.list_objects_v2(**args)
            keys += [item["Key"][len(prefix):] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        return keys

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        return await self.bucket.run(self._list_keys, self.bucket.key(path), start_after,
                                     limit)

    # -- delete, move -------------------------------------------------------------

    def _delete(self, key: str) -> None:
        bucket = self.bucket
        keys = [key]
        for prefix in (key + "/", key + TAIL + "/"):
            for page in bucket.listing(prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        bucket.delete_keys(keys)
        for page in bucket.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket.name, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key or upload["Key"].startswith(key + "/"):
                    with contextlib.suppress(ClientError):
                        bucket.s3.abort_multipart_upload(
                            Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"])

    async def delete(self, path: str) -> None:
        await self.bucket.run(self._delete, self.bucket.key(path))

    async def delete_object(self, path: str) -> None:
        await self.bucket.run(self.bucket.delete_keys, [self.bucket.key(path)])

    def _move(self, source: str, destination: str, path: str) -> None:
        session = self.appendable.session(source)
        if not session.exists:
            raise PathNotFoundError(path)
        size = self.appendable.seal(session)
        bucket = self.bucket
        if size <= MAX_COPY_PART:  # RGW copies by reference: no data moves; the flag goes
            bucket.s3.copy_object(Bucket=bucket.name, Key=destination,
                                  MetadataDirective="REPLACE",
                                  CopySource={"Bucket": bucket.name, "Key": source},
                                  **bucket.put_args)
        else:
            bucket.assemble([(source, 0, size)], destination)
        bucket.delete_keys([source])

    async def move(self, source: str, destination: str) -> None:
        await self.bucket.run(self._move, self.bucket.key(source), self.bucket.key(destination),
                              source)

    # -- streams ----------------------------------------------------------------------

    def _get(self, key: str, offset: int, end: int | None) -> Any:
        """GET bytes [offset, end) (to the end when None); None when nothing is there."""
        args: dict[str, Any] = {"Bucket": self.bucket.name, "Key": key}
        if offset or end is not None:
            args["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        try:
            return self.bucket.s3.get_object(**args)
        except ClientError as exc:
            if error_code(exc) == "InvalidRange":
                return None
            raise

    def _open(self, key: str, path: str, offset: int, end: int | None) -> Any:
        """One GET for an object holding its data; an appendable object whose data is in
        a multipart upload is sealed first (S3 cannot read parts before completion)."""
        try:
            response = self._get(key, offset, end)
        except ClientError as exc:
            if error_code(exc) in MISSING:
                raise PathNotFoundError(path) from None
            raise
        if response is not None:
            if not marks_upload(response):
                return response
            response["Body"].close()
        session = self.appendable.session(key)
        if session.upload is None:
            return None  # K marks an upload that is gone (aborted): no data
        self.appendable.seal(session)
        return self._get(key, offset, end)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if length == 0:
            return
        end = None if length is None else offset + length
        response = await self.bucket.run(self._open, self.bucket.key(path), path, offset, end)
        if response is None:
            return
        body = response["Body"]
        try:
            while data := await self.bucket.run(body.read, READ_CHUNK):
                yield data
        finally:
            body.close()

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        return await self.bucket.run(self.appendable.open, self.bucket.key(path), path,
                                     resume_at, fresh)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if self.redirect_ttl is None:
            return None
        bucket = self.bucket
        url: str = await bucket.run(
            bucket.s3.generate_presigned_url, "get_object",
            Params={"Bucket": bucket.name, "Key": bucket.key(path)},
            ExpiresIn=self.redirect_ttl,
        )
        return url

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return await self.bucket.run(self.appendable.abort_stale, self.bucket.key(path),
                                     time.time() - older_than)

    async def close(self) -> None:
        self.bucket.close()
