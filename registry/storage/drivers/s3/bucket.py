"""One S3 bucket (and key prefix) as the driver uses it: a shared boto3 client, a bounded
thread pool for its blocking calls, errors mapped to the driver interface's, and the
object-level operations every part of the driver needs (HEAD, listing, batch delete,
server-side assembly of objects from ranges of others)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from ..base import PathNotFoundError, StorageError, StorageFull, key_parts

T = TypeVar("T")
MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY_PART = 5 * 1024 * MiB  # UploadPartCopy / CopyObject limit
COPY_PART = 512 * MiB  # ranges of a multipart copy (objects over 5 GiB)
COPY_CONCURRENCY = 8  # server-side part copies in flight for one object
MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_FULL = {"QuotaExceeded"}  # Ceph RGW, when a user or bucket quota is reached


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Bucket:
    def __init__(
        self, name: str, *, region: str | None, endpoint: str | None, access_key: str | None,
        secret_key: str | None, prefix: str, path_style: bool, max_threads: int,
        encrypt: bool, kms_key_id: str | None, storage_class: str | None,
    ) -> None:
        self.name = name
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # what every object written carries: server-side encryption, storage class
        self.put_args: dict[str, str] = {}
        if encrypt:
            self.put_args["ServerSideEncryption"] = "aws:kms" if kms_key_id else "AES256"
            if kms_key_id:
                self.put_args["SSEKMSKeyId"] = kms_key_id
        if storage_class:
            self.put_args["StorageClass"] = storage_class
        config = BotoConfig(
            # Connections in use at once: one per pool thread, one per copy thread, and
            # one per blob being streamed to a client (held between reads, off the
            # threads). A pool smaller than that closes connections it could keep
            # ("connection pool is full"), and each request pays a new one.
            max_pool_connections=max(128, 4 * max_threads) + COPY_CONCURRENCY,
            retries={"mode": "standard", "total_max_attempts": 3},
            s3={"addressing_style": "path" if path_style else "auto"},
            signature_version="s3v4", request_checksum_calculation="when_required",
            response_checksum_validation="when_required", tcp_keepalive=True,
        )
        # One client, shared by the pool's threads (boto3 clients are thread-safe).
        self.s3: Any = boto3.session.Session().client(
            "s3", region_name=region, endpoint_url=endpoint, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, config=config,
        )
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="berth-s3")

    def key(self, path: str) -> str:
        """The object key of a storage path."""
        return self.prefix + "/".join(key_parts(path))

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` on the pool; S3's errors as the driver interface's."""
        call = functools.partial(fn, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ClientError as exc:
            code = error_code(exc)
            if code in MISSING:
                raise PathNotFoundError(str(kwargs.get("Key", ""))) from None
            if code in _FULL:
                raise StorageFull(f"S3 {code}: {exc}") from exc
            raise StorageError(f"S3 {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- blocking calls, run on the pool ------------------------------------------

    def listing(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from self.s3.get_paginator("list_objects_v2").paginate(**kwargs)

    def head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.s3.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if error_code(exc) not in MISSING:
                raise
            return None
        return head

    def read(self, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.s3.delete_objects(Bucket=self.name, Delete={"Objects": batch, "Quiet": True})

    def assemble(self, pieces: list[tuple[str, int, int]], destination: str,
                 metadata: dict[str, str] | None = None) -> None:
        """One multipart upload from byte ranges (key, start, length) of other objects, in
        order: ranges of at least 5 MiB are copied server-side in parts of up to 512 MiB,
        several at a time; smaller pieces are gathered in memory (at most 5 MiB) into a
        part of their own, or the last part."""
        extra = {"Metadata": metadata} if metadata else {}
        upload = self.s3.create_multipart_upload(Bucket=self.name, Key=destination,
                                                 **self.put_args, **extra)["UploadId"]
        etags: dict[int, Future[str]] = {}
        pending = bytearray()
        copier = ThreadPoolExecutor(COPY_CONCURRENCY, thread_name_prefix="berth-s3-copy")

        def send(number: int, **source: Any) -> str:
            args = {"Bucket": self.name, "Key": destination, "UploadId": upload,
                    "PartNumber": number}
            if "Body" in source:
                return str(self.s3.upload_part(**args, **source)["ETag"])
            return str(self.s3.upload_part_copy(**args, **source)["CopyPartResult"]["ETag"])

        def send_pending() -> None:
            number = len(etags) + 1
            done: Future[str] = Future()
            done.set_result(send(number, Body=bytes(pending)))
            etags[number] = done
            pending.clear()

        try:
            for key, first, size in pieces:
                start = first
                while start < first + size:
                    left = first + size - start
                    if not pending and left >= MIN_PART:
                        length = left if left - COPY_PART < MIN_PART else COPY_PART
                        length = min(length, MAX_COPY_PART)
                        number = len(etags) + 1
                        etags[number] = copier.submit(
                            send, number, CopySource={"Bucket": self.name, "Key": key},
                            CopySourceRange=f"bytes={start}-{start + length - 1}")
                    else:
                        length = min(left, MIN_PART - len(pending))
                        pending += self.s3.get_object(
                            Bucket=self.name, Key=key,
                            Range=f"bytes={start}-{start + length - 1}",
                        )["Body"].read()
                        if len(pending) >= MIN_PART:
                            send_pending()
                    start += length
            if pending or not etags:
                send_pending()
            parts = [{"PartNumber": n, "ETag": etags[n].result()} for n in sorted(etags)]
            self.s3.complete_multipart_upload(Bucket=self.name, Key=destination,
                                              UploadId=upload, MultipartUpload={"Parts": parts})
        except BaseException:
            for future in etags.values():
                future.cancel()
            with contextlib.suppress(ClientError, BotoCoreError):
                self.s3.abort_multipart_upload(Bucket=self.name, Key=destination,
                                               UploadId=upload)
            raise
        finally:
            copier.shutdown(wait=True)
