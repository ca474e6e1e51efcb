"""S3 driver (boto3): AWS S3 and compatible stores (Ceph RGW, MinIO), blocking calls on a
bounded thread pool of its own.

Appendable objects (upload sessions) are stored as one immutable object per append,
`<key>.chunks/<offset>` (20-digit zero-padded): any process can continue a session by
listing them, a refused append leaves nothing (its multipart upload is aborted), and the
data stays readable for re-hashing. `move` assembles the chunks into the destination with
one multipart upload, copying big chunks server-side and merging small ones. The logical
view (`stat`, `list_dir`, `walk`, `reader`) hides the chunk objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .base import (
    Appender,
    FileInfo,
    PathNotFoundError,
    StorageDriver,
    StorageError,
    walk_keys,
)

T = TypeVar("T")
MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY_PART = 5 * 1024 * MiB  # UploadPartCopy / CopyObject limit
READ_CHUNK = MiB
COPY_CONCURRENCY = 8  # server-side part copies in flight while assembling one blob
CHUNKS = ".chunks"
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def part_size(number: int, base: int) -> int:
    """Part `number` (from 1): `base`, doubled every 1,000 parts, at most 5 GiB, so the
    10,000-part limit allows blobs of about 1,000 * base * 1,023 (9.76 TiB at 10 MiB)."""
    return min(base << ((number - 1) // 1000), MAX_COPY_PART)


@dataclass(frozen=True, slots=True)
class _Chunk:
    key: str
    offset: int
    size: int
    modified: float


class S3Driver(StorageDriver):
    name = "s3"

    def __init__(
        self, bucket: str, *, region: str | None = None, endpoint: str | None = None,
        access_key: str | None = None, secret_key: str | None = None, prefix: str = "",
        path_style: bool = False, max_threads: int = 32, chunk_size: int = 10 * MiB,
        encrypt: bool = False, kms_key_id: str | None = None, storage_class: str | None = None,
        redirect_ttl: int | None = 1200,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.chunk_size = max(chunk_size, MIN_PART)
        self.redirect_ttl = redirect_ttl
        self._put_args: dict[str, str] = {}
        if encrypt:
            self._put_args["ServerSideEncryption"] = "aws:kms" if kms_key_id else "AES256"
            if kms_key_id:
                self._put_args["SSEKMSKeyId"] = kms_key_id
        if storage_class:
            self._put_args["StorageClass"] = storage_class
        config = BotoConfig(
            max_pool_connections=max_threads, retries={"mode": "standard", "total_max_attempts": 3},
            s3={"addressing_style": "path" if path_style else "auto"},
            signature_version="s3v4", request_checksum_calculation="when_required",
            response_checksum_validation="when_required", tcp_keepalive=True,
        )
        # One client, shared by the pool's threads (boto3 clients are thread-safe).
        self._s3 = boto3.session.Session().client(
            "s3", region_name=region, endpoint_url=endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, config=config,
        )
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="berth-s3")

    # -- plumbing -----------------------------------------------------------------

    def _key(self, path: str) -> str:
        parts = path.strip("/").split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"unsafe storage path {path!r}")
        return self.prefix + "/".join(parts)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise PathNotFoundError(str(kwargs.get("Key", ""))) from None
            raise StorageError(f"S3 {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from self._s3.get_paginator("list_objects_v2").paginate(**kwargs)

    def _chunks(self, key: str) -> list[_Chunk]:
        found = []
        for page in self._list(key + CHUNKS + "/"):
            for item in page.get("Contents", []):
                offset = int(item["Key"].rsplit("/", 1)[1])
                found.append(_Chunk(item["Key"], offset, int(item["Size"]),
                                    item["LastModified"].timestamp()))
        return sorted(found, key=lambda c: c.offset)

    # -- small objects --------------------------------------------------------------

    async def get(self, path: str) -> bytes:
        key = self._key(path)
        try:
            response = await self._run(self._s3.get_object, Bucket=self.bucket, Key=key)
        except PathNotFoundError:
            return b"".join([chunk async for chunk in self.reader(path)])  # appended object
        data: bytes = await self._run(response["Body"].read)
        return data

    async def put(self, path: str, data: bytes) -> None:
        await self._run(self._s3.put_object, Bucket=self.bucket, Key=self._key(path),
                        Body=data, **self._put_args)

    # -- metadata -------------------------------------------------------------------

    def _stat(self, key: str, path: str) -> FileInfo:
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
            return FileInfo(path, int(head["ContentLength"]), head["LastModified"].timestamp(),
                            False)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _MISSING:
                raise
        chunks = self._chunks(key)
        if chunks:
            return FileInfo(path, sum(c.size for c in chunks), max(c.modified for c in chunks),
                            False)
        page = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=key + "/", MaxKeys=1)
        if page.get("KeyCount", 0):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFoundError(path)

    async def stat(self, path: str) -> FileInfo:
        return await self._run(self._stat, self._key(path), path)

    async def is_object(self, path: str) -> bool:
        try:
            await self._run(self._s3.head_object, Bucket=self.bucket, Key=self._key(path))
        except PathNotFoundError:
            return False
        return True

    def _list_dir(self, key: str, path: str) -> list[str]:
        names: set[str] = set()
        prefix = key + "/"
        for page in self._list(prefix, "/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(prefix):].rstrip("/")
                names.add(name.removesuffix(CHUNKS))
            for item in page.get("Contents", []):
                names.add(item["Key"][len(prefix):])
        if not names:
            raise PathNotFoundError(path)
        return sorted(names)

    async def list_dir(self, path: str) -> list[str]:
        return await self._run(self._list_dir, self._key(path), path)

    def _walk(self, key: str, path: str, prune: Callable[[str], bool]) -> list[str]:
        prefix = key + "/"

        def keys() -> Iterator[list[str]]:
            for page in self._list(prefix):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(prefix):].split("/")
                    if len(parts) >= 2 and parts[-2].endswith(CHUNKS):  # an appended object
                        parts = [*parts[:-2], parts[-2].removesuffix(CHUNKS)]
                    yield parts

        found = walk_keys(keys(), prune)
        if not found:
            raise PathNotFoundError(path)
        return found

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        return await self._run(self._walk, self._key(path), path, prune)

    # -- delete, move -------------------------------------------------------------

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _delete(self, key: str) -> None:
        keys = [key]
        for prefix in (key + "/", key + CHUNKS + "/"):
            for page in self._list(prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        self._delete_keys(keys)

    async def delete(self, path: str) -> None:
        await self._run(self._delete, self._key(path))

    def _move(self, source: str, destination: str, path: str) -> None:
        chunks = self._chunks(source)
        if not chunks:
            head = self._s3.head_object(Bucket=self.bucket, Key=source)  # 404 → not found
            chunks = [_Chunk(source, 0, int(head["ContentLength"]), 0.0)]
        total = sum(c.size for c in chunks)
        if len(chunks) == 1 and total <= MAX_COPY_PART:
            self._s3.copy_object(Bucket=self.bucket, Key=destination, **self._put_args,
                                 CopySource={"Bucket": self.bucket, "Key": chunks[0].key})
        else:
            self._assemble(chunks, destination)
        self._delete_keys([c.key for c in chunks] + ([source] if chunks[0].key != source else []))

    def _assemble(self, chunks: list[_Chunk], destination: str) -> None:
        """One multipart upload from the chunks, in order: ranges of at least 5 MiB are
        copied server-side, several at a time; smaller pieces are gathered in memory (at
        most 5 MiB) into a part of their own, or the last part."""
        upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=destination,
                                                  **self._put_args)["UploadId"]
        etags: dict[int, Future[str]] = {}
        pending = bytearray()
        copier = ThreadPoolExecutor(COPY_CONCURRENCY, thread_name_prefix="berth-s3-copy")

        def send(number: int, **source: Any) -> str:
            args = {"Bucket": self.bucket, "Key": destination, "UploadId": upload,
                    "PartNumber": number}
            if "Body" in source:
                return str(self._s3.upload_part(**args, **source)["ETag"])
            return str(self._s3.upload_part_copy(**args, **source)["CopyPartResult"]["ETag"])

        def send_pending() -> None:
            number = len(etags) + 1
            done: Future[str] = Future()
            done.set_result(send(number, Body=bytes(pending)))
            etags[number] = done
            pending.clear()

        try:
            for chunk in chunks:
                start = 0
                while start < chunk.size:
                    left = chunk.size - start
                    if not pending and left >= MIN_PART:
                        length = min(left, MAX_COPY_PART)
                        number = len(etags) + 1
                        etags[number] = copier.submit(
                            send, number, CopySource={"Bucket": self.bucket, "Key": chunk.key},
                            CopySourceRange=f"bytes={start}-{start + length - 1}")
                    else:
                        length = min(left, MIN_PART - len(pending))
                        pending += self._s3.get_object(
                            Bucket=self.bucket, Key=chunk.key,
                            Range=f"bytes={start}-{start + length - 1}",
                        )["Body"].read()
                        if len(pending) >= MIN_PART:
                            send_pending()
                    start += length
            if pending or not etags:
                send_pending()
            parts = [{"PartNumber": n, "ETag": etags[n].result()} for n in sorted(etags)]
            self._s3.complete_multipart_upload(Bucket=self.bucket, Key=destination,
                                               UploadId=upload, MultipartUpload={"Parts": parts})
        except BaseException:
            for future in etags.values():
                future.cancel()
            with contextlib.suppress(ClientError, BotoCoreError):
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=destination,
                                                UploadId=upload)
            raise
        finally:
            copier.shutdown(wait=True)

    async def move(self, source: str, destination: str) -> None:
        await self._run(self._move, self._key(source), self._key(destination), source)

    # -- streams ----------------------------------------------------------------------

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        key = self._key(path)
        chunks = await self._run(self._chunks, key)
        if not chunks:
            info = await self.stat(path)
            chunks = [_Chunk(key, 0, info.size, info.modified)]
        end = sum(c.size for c in chunks) if length is None else offset + length
        for chunk in chunks:
            lo, hi = max(offset, chunk.offset), min(end, chunk.offset + chunk.size)
            if lo >= hi:
                continue
            response = await self._run(
                self._s3.get_object, Bucket=self.bucket, Key=chunk.key,
                Range=f"bytes={lo - chunk.offset}-{hi - chunk.offset - 1}",
            )
            body = response["Body"]
            try:
                while data := await self._run(body.read, READ_CHUNK):
                    yield data
            finally:
                body.close()

    async def appender(self, path: str, resume_at: int | None = None) -> Appender:
        key = self._key(path)
        chunks = await self._run(self._chunks, key)
        size = sum(c.size for c in chunks)
        if resume_at is not None and resume_at != size:
            if resume_at > size:
                raise StorageError(f"{path}: cannot resume at {resume_at}, it has {size} bytes")
            await self._run(self._truncate, chunks, resume_at)
            size = resume_at
        return _ChunkAppender(self, f"{key}{CHUNKS}/{size:020d}", size)

    def _truncate(self, chunks: list[_Chunk], at: int) -> None:
        """Drop the data past `at`: whole chunks are deleted, a chunk across it is rewritten
        from its own head (server-side, as any assembly)."""
        doomed = [c.key for c in chunks if c.offset >= at]
        for chunk in chunks:
            if chunk.offset < at < chunk.offset + chunk.size:
                self._assemble([_Chunk(chunk.key, 0, at - chunk.offset, 0.0)], chunk.key)
        self._delete_keys(doomed)

    async def redirect_url(self, path: str, method: str = "GET") -> str | None:
        if self.redirect_ttl is None:
            return None
        key = self._key(path)
        url: str = await self._run(
            self._s3.generate_presigned_url, "get_object",
            Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.redirect_ttl,
        )
        return url

    def _abort_stale(self, prefix: str, cutoff: float) -> int:
        aborted = 0
        paginator = self._s3.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() < cutoff:
                    with contextlib.suppress(ClientError):
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])
                        aborted += 1
        return aborted

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return await self._run(self._abort_stale, self._key(path), time.time() - older_than)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


class _ChunkAppender(Appender):
    """One append: a new chunk object, sent as a multipart upload once it outgrows a part."""

    def __init__(self, driver: S3Driver, key: str, size: int) -> None:
        self._driver, self._key, self.size = driver, key, size
        self._opened_at = size
        self._buffer = bytearray()
        self._upload: str | None = None
        self._parts: list[dict[str, Any]] = []

    @property
    def _s3(self) -> Any:
        return self._driver._s3

    def _next_part_size(self) -> int:
        return part_size(len(self._parts) + 1, self._driver.chunk_size)

    def _send_part(self, data: bytes) -> None:
        driver = self._driver
        if self._upload is None:
            self._upload = self._s3.create_multipart_upload(
                Bucket=driver.bucket, Key=self._key, **driver._put_args)["UploadId"]
        number = len(self._parts) + 1
        etag = self._s3.upload_part(Bucket=driver.bucket, Key=self._key, UploadId=self._upload,
                                    PartNumber=number, Body=data)["ETag"]
        self._parts.append({"PartNumber": number, "ETag": etag})

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._next_part_size():
            cut = self._next_part_size()
            part, self._buffer = bytes(self._buffer[:cut]), self._buffer[cut:]
            await self._driver._run(self._send_part, part)

    def _commit(self) -> None:
        driver = self._driver
        if self._upload is None:
            if self._buffer:
                self._s3.put_object(Bucket=driver.bucket, Key=self._key,
                                    Body=bytes(self._buffer), **driver._put_args)
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
        self._s3.complete_multipart_upload(Bucket=driver.bucket, Key=self._key,
                                           UploadId=self._upload,
                                           MultipartUpload={"Parts": self._parts})

    async def commit(self) -> None:
        await self._driver._run(self._commit)
        self._buffer.clear()

    def _abort(self) -> None:
        if self._upload is not None:
            self._s3.abort_multipart_upload(Bucket=self._driver.bucket, Key=self._key,
                                            UploadId=self._upload)

    async def abort(self) -> None:
        await self._driver._run(self._abort)
        self._buffer.clear()
        self.size = self._opened_at
