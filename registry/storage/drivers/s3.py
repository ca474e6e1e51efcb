"""S3 driver (boto3): AWS S3 and compatible stores (Ceph RGW, MinIO), blocking calls on a
bounded thread pool of its own.

An appendable object (an upload session's data) at key K lives in the store, so any
process can continue it:

* while small (under one part), as the object K itself, rewritten by each append;
* then as one multipart upload at K: each append sends parts of `chunk_size` (doubled
  every 1,000 parts, so 10,000 parts reach ~9.8 TiB), and what is left under a part is
  carried over as a pending object `K.tail/<offset>` until the next append completes a
  part. The parts S3 lists (ListParts) are the state: nothing else to keep in step.

`move` completes the multipart upload (the tail as its last part) and copies K to its
destination: CopyObject up to 5 GiB (a reference copy on RGW), part copies beyond.
Objects written by appends carry the metadata `berth-append`: "object" when K holds the
data, "upload" (with the upload's id) once K only marks the multipart upload holding it.
The marker is written after the upload holds K's data, so a process stopped half way
leaves K as it was. One HEAD of K tells where the data is; a blob (no flag) costs one
request to read. Parts cannot be read before completion: `reader` on an appendable
object completes it first ("seals" it); a later append starts a new multipart upload
whose first parts copy the sealed object.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
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
    StorageFull,
    key_parts,
    walk_keys,
)

T = TypeVar("T")
MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's minimum for every part but the last
MAX_COPY_PART = 5 * 1024 * MiB  # UploadPartCopy / CopyObject limit
COPY_PART = 512 * MiB  # ranges of a multipart copy (objects over 5 GiB)
READ_CHUNK = MiB
COPY_CONCURRENCY = 8  # server-side part copies in flight for one object
PARTS_IN_FLIGHT = 2  # part uploads of one append running while the next part fills
FREE_PARTS = 1000  # up to this part number, an append's remainder of 5 MiB+ is a part
TAIL = ".tail"
FLAG = "berth-append"  # metadata of objects written by appends: "object" or "upload"
HOLDS_DATA, MARKS_UPLOAD = "object", "upload"
UPLOAD_ID = "berth-upload"  # with "upload": the multipart upload holding the data
_MISSING = {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}
_FULL = {"QuotaExceeded"}  # Ceph RGW, when a user or bucket quota is reached


def part_size(number: int, base: int) -> int:
    """Part `number` (from 1): `base`, doubled every 1,000 parts, at most 5 GiB, so the
    10,000-part limit allows blobs of about 1,000 * base * 1,023 (9.76 TiB at 10 MiB)."""
    return min(base << ((number - 1) // 1000), MAX_COPY_PART)


@dataclass(frozen=True, slots=True)
class _Part:
    number: int
    etag: str
    size: int
    modified: float = 0.0


@dataclass(slots=True)
class _Session:
    """What the store holds of an appendable object K."""

    key: str
    base: int | None = None  # size of the object K, when it holds the data
    base_modified: float = 0.0
    upload: str | None = None  # the multipart upload at K, once it has parts
    parts: list[_Part] = field(default_factory=list)
    tail: tuple[str, int] | None = None  # the pending object past the parts, and its size
    tail_modified: float = 0.0
    stale_tails: list[str] = field(default_factory=list)

    @property
    def in_parts(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def size(self) -> int:
        if self.upload is None:
            return self.base or 0
        return self.in_parts + (self.tail[1] if self.tail else 0)

    @property
    def modified(self) -> float:
        if self.upload is None:
            return self.base_modified
        return max([p.modified for p in self.parts] + [self.tail_modified])

    @property
    def exists(self) -> bool:
        return self.upload is not None or self.base is not None


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

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # -- plumbing -----------------------------------------------------------------

    def _key(self, path: str) -> str:
        return self.prefix + "/".join(key_parts(path))

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise PathNotFoundError(str(kwargs.get("Key", ""))) from None
            if code in _FULL:
                raise StorageFull(f"S3 {code}: {exc}") from exc
            raise StorageError(f"S3 {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {exc}") from exc

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        yield from self._s3.get_paginator("list_objects_v2").paginate(**kwargs)

    # -- appendable objects: what the store holds of one -------------------------------

    def _all_parts(self, key: str, upload: str) -> list[_Part]:
        parts = []
        for page in self._s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=key, UploadId=upload):
            parts += [_Part(int(p["PartNumber"]), str(p["ETag"]), int(p["Size"]),
                            p["LastModified"].timestamp()) for p in page.get("Parts", [])]
        return sorted(parts, key=lambda p: p.number)

    def _tails(self, key: str) -> list[tuple[str, int, int, float]]:
        """Pending objects: (key, offset, size, modified)."""
        return [(item["Key"], int(item["Key"].rsplit("/", 1)[1]), int(item["Size"]),
                 item["LastModified"].timestamp())
                for page in self._list(key + TAIL + "/") for item in page.get("Contents", [])]

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in _MISSING:
                raise
            return None
        return head

    def _session(self, key: str, head: dict[str, Any] | None = None) -> _Session:
        """The data of K: when K marks a multipart upload, its parts (the unbroken run
        from part 1) and the tail right after them; else the object K itself."""
        session = _Session(key)
        head = head if head is not None else self._head(key)
        if head is None:
            return session
        meta = head.get("Metadata", {})
        upload = meta.get(UPLOAD_ID) if meta.get(FLAG) == MARKS_UPLOAD else None
        listed: list[_Part] = []
        if upload:
            with contextlib.suppress(ClientError):  # NoSuchUpload: aborted, nothing left
                listed = self._all_parts(key, upload)
        run = [p for i, p in enumerate(listed) if p.number == i + 1]  # up to a gap
        if upload and run:
            session.upload, session.parts = upload, run
            for tail_key, offset, size, modified in self._tails(key):
                if offset == session.in_parts and session.tail is None and size:
                    session.tail, session.tail_modified = (tail_key, size), modified
                else:
                    session.stale_tails.append(tail_key)
            return session
        session.base = 0 if upload else int(head["ContentLength"])
        session.base_modified = head["LastModified"].timestamp()
        return session

    def _seal(self, session: _Session) -> int:
        """Complete the session's multipart upload into the object K, its tail the last
        part; K's size. Parts past the data (left by a stopped process or an aborted
        append) must be listed too on RGW, so K is then rebuilt without them."""
        if session.upload is None:
            return session.base or 0
        key, upload = session.key, session.upload
        listed = self._all_parts(key, upload)
        extras = len(listed) > len(session.parts)
        parts = list(listed if extras else session.parts)
        size = session.in_parts
        if session.tail and not extras:
            number = len(parts) + 1
            etag = self._s3.upload_part_copy(
                Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": session.tail[0]},
            )["CopyPartResult"]["ETag"]
            parts.append(_Part(number, str(etag), session.tail[1]))
            size += session.tail[1]
        self._s3.complete_multipart_upload(
            Bucket=self.bucket, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag}
                                       for p in parts]})
        if extras:
            pieces = [(key, 0, size)]
            if session.tail:
                pieces.append((session.tail[0], 0, session.tail[1]))
                size += session.tail[1]
            self._assemble(pieces, key, appendable=True)
        doomed = session.stale_tails + ([session.tail[0]] if session.tail else [])
        if doomed:
            self._delete_keys(doomed)
        return size

    # -- small objects --------------------------------------------------------------

    async def get(self, path: str) -> bytes:
        return b"".join([chunk async for chunk in self.reader(path)])

    async def put(self, path: str, data: bytes) -> None:
        await self._run(self._s3.put_object, Bucket=self.bucket, Key=self._key(path),
                        Body=data, **self._put_args)

    # -- metadata -------------------------------------------------------------------

    def _stat(self, key: str, path: str) -> FileInfo:
        head = self._head(key)
        if head is not None:
            if head.get("Metadata", {}).get(FLAG) != MARKS_UPLOAD:
                return FileInfo(path, int(head["ContentLength"]),
                                head["LastModified"].timestamp(), False)
            session = self._session(key, head)
            return FileInfo(path, session.size, session.modified, False)
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
                names.add(name.removesuffix(TAIL))
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
                    if len(parts) >= 2 and parts[-2].endswith(TAIL):  # an appended object
                        parts = [*parts[:-2], parts[-2].removesuffix(TAIL)]
                    yield parts

        found = walk_keys(keys(), prune)
        if not found:
            raise PathNotFoundError(path)
        return found

    async def walk(self, path: str, prune: Callable[[str], bool]) -> list[str]:
        return await self._run(self._walk, self._key(path), path, prune)

    def _list_keys(self, key: str, start_after: str | None, limit: int | None) -> list[str]:
        prefix = key + "/"
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after is not None:
            args["StartAfter"] = prefix + start_after
        keys: list[str] = []
        while limit is None or len(keys) < limit:
            if limit is not None:
                args["MaxKeys"] = min(1000, limit - len(keys))
            page = self._s3.list_objects_v2(**args)
            keys += [item["Key"][len(prefix):] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            args["ContinuationToken"] = page["NextContinuationToken"]
        return keys

    async def list_keys(self, path: str, start_after: str | None = None,
                        limit: int | None = None) -> list[str]:
        return await self._run(self._list_keys, self._key(path), start_after, limit)

    # -- delete, move -------------------------------------------------------------

    def _delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def _delete(self, key: str) -> None:
        keys = [key]
        for prefix in (key + "/", key + TAIL + "/"):
            for page in self._list(prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        self._delete_keys(keys)
        for page in self._s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key or upload["Key"].startswith(key + "/"):
                    with contextlib.suppress(ClientError):
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])

    async def delete(self, path: str) -> None:
        await self._run(self._delete, self._key(path))

    def _move(self, source: str, destination: str, path: str) -> None:
        session = self._session(source)
        if not session.exists:
            raise PathNotFoundError(path)
        size = self._seal(session)
        if size <= MAX_COPY_PART:  # RGW copies by reference: no data moves; the flag goes
            self._s3.copy_object(Bucket=self.bucket, Key=destination, MetadataDirective="REPLACE",
                                 CopySource={"Bucket": self.bucket, "Key": source},
                                 **self._put_args)
        else:
            self._assemble([(source, 0, size)], destination)
        self._delete_keys([source])

    def _assemble(self, pieces: list[tuple[str, int, int]], destination: str,
                  appendable: bool = False) -> None:
        """One multipart upload from byte ranges (key, start, length) of other objects, in
        order: ranges of at least 5 MiB are copied server-side in parts of up to 512 MiB,
        several at a time; smaller pieces are gathered in memory (at most 5 MiB) into a
        part of their own, or the last part."""
        extra = {"Metadata": {FLAG: HOLDS_DATA}} if appendable else {}
        upload = self._s3.create_multipart_upload(Bucket=self.bucket, Key=destination,
                                                  **self._put_args, **extra)["UploadId"]
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
            for key, first, size in pieces:
                start = first
                while start < first + size:
                    left = first + size - start
                    if not pending and left >= MIN_PART:
                        length = left if left - COPY_PART < MIN_PART else COPY_PART
                        length = min(length, MAX_COPY_PART)
                        number = len(etags) + 1
                        etags[number] = copier.submit(
                            send, number, CopySource={"Bucket": self.bucket, "Key": key},
                            CopySourceRange=f"bytes={start}-{start + length - 1}")
                    else:
                        length = min(left, MIN_PART - len(pending))
                        pending += self._s3.get_object(
                            Bucket=self.bucket, Key=key,
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

    def _get(self, key: str, offset: int, end: int | None) -> Any:
        """GET bytes [offset, end) (to the end when None); None when nothing is there."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or end is not None:
            args["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        try:
            return self._s3.get_object(**args)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) == "InvalidRange":
                return None
            raise

    def _open(self, key: str, path: str, offset: int, end: int | None) -> Any:
        """One GET for an object holding its data; an appendable object whose data is in
        a multipart upload is sealed first (S3 cannot read parts before completion)."""
        try:
            response = self._get(key, offset, end)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise PathNotFoundError(path) from None
            raise
        if response is not None:
            if response.get("Metadata", {}).get(FLAG) != MARKS_UPLOAD:
                return response
            response["Body"].close()
        session = self._session(key)
        if session.upload is None:
            return None  # K marks an upload that is gone (aborted): no data
        self._seal(session)
        return self._get(key, offset, end)

    async def reader(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        if length == 0:
            return
        end = None if length is None else offset + length
        response = await self._run(self._open, self._key(path), path, offset, end)
        if response is None:
            return
        body = response["Body"]
        try:
            while data := await self._run(body.read, READ_CHUNK):
                yield data
        finally:
            body.close()

    async def appender(self, path: str, resume_at: int | None = None,
                       fresh: bool = False) -> Appender:
        return await self._run(self._open_appender, self._key(path), path, resume_at, fresh)

    def _open_appender(self, key: str, path: str, resume_at: int | None,
                       fresh: bool) -> _SessionAppender:
        session = _Session(key) if fresh else self._session(key)
        if resume_at is not None and resume_at != session.size:
            if resume_at > session.size:
                raise StorageError(f"{path}: cannot resume at {resume_at}, it has "
                                   f"{session.size} bytes")
            self._truncate(session, resume_at)
            session = self._session(key)
        return _SessionAppender(self, session)

    def _truncate(self, session: _Session, at: int) -> None:
        """Keep the first `at` bytes: the session is sealed, then K rebuilt from its head
        (server-side, as any assembly)."""
        size = self._seal(session)
        if at < size:
            if at:
                self._assemble([(session.key, 0, at)], session.key, appendable=True)
            else:
                self._s3.put_object(Bucket=self.bucket, Key=session.key, Body=b"",
                                    Metadata={FLAG: HOLDS_DATA}, **self._put_args)

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
        """Abort multipart uploads with no activity (a part or a tail written) since
        `cutoff`: those of sessions nobody continues, and copies a stopped process left."""
        aborted = 0
        paginator = self._s3.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                key, upload_id = upload["Key"], upload["UploadId"]
                with contextlib.suppress(ClientError):
                    activity = [p.modified for p in self._all_parts(key, upload_id)]
                    activity += [t[3] for t in self._tails(key)]
                    if max(activity, default=0.0) <= cutoff:
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                        UploadId=upload_id)
                        aborted += 1
                        self._drop_marker(key, upload_id)
        return aborted

    def _drop_marker(self, key: str, upload: str) -> None:
        """Delete K when it only marks the upload just aborted (its data went with it)."""
        head = self._head(key)
        if head is not None and head.get("Metadata", {}).get(UPLOAD_ID) == upload:
            self._delete_keys([key, *(t[0] for t in self._tails(key))])

    async def abort_stale_writes(self, path: str, older_than: float) -> int:
        return await self._run(self._abort_stale, self._key(path), time.time() - older_than)

    async def close(self) -> None:
        self._pool.shutdown(wait=True)


class _SessionAppender(Appender):
    """One append to an appendable object: full parts go to the session's multipart
    upload as they fill (one in flight while the next fills), the remainder becomes a part
    (5 MiB or more, among the first 1,000 parts) or the new tail."""

    def __init__(self, driver: S3Driver, session: _Session) -> None:
        self._driver, self._key = driver, session.key
        self.size = self._opened = session.size
        self._upload = session.upload
        self._parts = list(session.parts)
        self._old_tail = session.tail[0] if session.tail else None
        self._stale_tails = list(session.stale_tails)
        self._has_object = session.base is not None or session.upload is not None
        self._marked = session.upload is not None  # K marks the upload (holds no data)
        self._copy_base = 0  # bytes of K to copy into the upload as its first parts
        self._buffer = bytearray()
        if session.upload is not None and session.tail is not None:
            self._buffer += self._read(session.tail[0])
        elif session.base:
            if session.base < MIN_PART:
                self._buffer += self._read(self._key)
            else:
                self._copy_base = session.base
        self._in_flight: asyncio.Future[None] | None = None
        self._sent = False  # a part of this append's data was sent

    @property
    def _s3(self) -> Any:
        return self._driver._s3

    def _read(self, key: str) -> bytes:
        data: bytes = self._s3.get_object(Bucket=self._driver.bucket, Key=key)["Body"].read()
        return data

    def _next_part_size(self) -> int:
        return part_size(len(self._parts) + 1, self._driver.chunk_size)

    def _start(self) -> None:
        """The session's multipart upload, its first parts copies of the object K (once
        complete, K holds the data again: so says its metadata)."""
        driver = self._driver
        self._upload = self._s3.create_multipart_upload(
            Bucket=driver.bucket, Key=self._key, Metadata={FLAG: HOLDS_DATA},
            **driver._put_args)["UploadId"]
        count = -(-self._copy_base // MAX_COPY_PART)
        for index in range(count):
            start = self._copy_base * index // count
            end = self._copy_base * (index + 1) // count
            etag = self._s3.upload_part_copy(
                Bucket=driver.bucket, Key=self._key, UploadId=self._upload,
                PartNumber=index + 1, CopySource={"Bucket": driver.bucket, "Key": self._key},
                CopySourceRange=f"bytes={start}-{end - 1}")["CopyPartResult"]["ETag"]
            self._parts.append(_Part(index + 1, str(etag), end - start))
        self._copy_base = 0

    def _send_part(self, data: bytes) -> None:
        if self._upload is None:
            self._start()
        number = len(self._parts) + 1
        etag = self._s3.upload_part(Bucket=self._driver.bucket, Key=self._key,
                                    UploadId=self._upload, PartNumber=number, Body=data)["ETag"]
        self._parts.append(_Part(number, str(etag), len(data)))
        self._sent = True
        self._mark()

    def _mark(self) -> None:
        """Point K at the upload, now that the upload holds everything K held."""
        if not self._marked:
            self._s3.put_object(Bucket=self._driver.bucket, Key=self._key, Body=b"",
                                Metadata={FLAG: MARKS_UPLOAD, UPLOAD_ID: str(self._upload)},
                                **self._driver._put_args)
            self._marked = self._has_object = True

    async def _settle(self) -> None:
        if self._in_flight is not None:
            flight, self._in_flight = self._in_flight, None
            await flight

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._next_part_size():
            await self._settle()  # one part in flight; its number is now taken
            cut = self._next_part_size()
            part = bytes(self._buffer[:cut])
            del self._buffer[:cut]
            self._in_flight = asyncio.ensure_future(self._driver._run(self._send_part, part))

    def _commit(self) -> None:
        driver = self._driver
        if self._upload is None and not self._copy_base:
            if self._buffer or not self._has_object:  # a small object: K itself, rewritten
                self._s3.put_object(Bucket=driver.bucket, Key=self._key,
                                    Body=bytes(self._buffer), Metadata={FLAG: HOLDS_DATA},
                                    **driver._put_args)
            return
        if self._upload is None:
            self._start()
        remainder = bytes(self._buffer)
        if len(remainder) >= MIN_PART and len(self._parts) < FREE_PARTS:
            self._send_part(remainder)
            remainder = b""
        tail = f"{self._key}{TAIL}/{sum(p.size for p in self._parts):020d}"
        if remainder:
            self._s3.put_object(Bucket=driver.bucket, Key=tail, Body=remainder,
                                **driver._put_args)
        self._mark()
        doomed = [k for k in [self._old_tail, *self._stale_tails]
                  if k and not (remainder and k == tail)]
        if doomed:
            driver._delete_keys(doomed)

    async def commit(self) -> None:
        await self._settle()
        if self.size != self._opened or (self._upload is None and not self._has_object):
            await self._driver._run(self._commit)
        self._buffer.clear()

    async def abort(self) -> None:
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                await self._settle()
        self._buffer.clear()
        if self._sent:  # parts hold some of this append: cut the object back
            await self._driver._run(self._restore)
        self.size = self._opened

    def _restore(self) -> None:
        self._driver._truncate(self._driver._session(self._key), self._opened)
