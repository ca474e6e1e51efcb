"""Appendable objects on S3 (an upload session's data), which any process can continue.

An appendable object at key K is

* while small (under one part), the object K itself, rewritten by each append;
* then one multipart upload at K: each append sends parts of `chunk_size` (doubled every
  1,000 parts, so 10,000 parts reach ~9.8 TiB), and what is left under a part is carried
  over as a pending object `K.tail/<offset>` until the next append completes a part. The
  parts S3 lists (ListParts) are the state: nothing else to keep in step.

Objects written by appends carry the metadata `berth-append`: "object" when K holds the
data, "upload" (with the upload's id) once K only marks the multipart upload holding it.
The marker is written after the upload holds K's data, so a process stopped half way
leaves K as it was. One HEAD of K tells where the data is. Parts cannot be read before
completion: reading an appendable object completes it first ("seals" it); a later append
starts a new multipart upload whose first parts copy the sealed object.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ..base import Appender, StorageError
from .bucket import MAX_COPY_PART, MIN_PART, Bucket

FREE_PARTS = 1000  # up to this part number, an append's remainder of 5 MiB+ is a part
TAIL = ".tail"
FLAG = "berth-append"  # metadata of objects written by appends: "object" or "upload"
HOLDS_DATA, MARKS_UPLOAD = "object", "upload"
UPLOAD_ID = "berth-upload"  # with "upload": the multipart upload holding the data


def part_size(number: int, base: int) -> int:
    """Part `number` (from 1): `base`, doubled every 1,000 parts, at most 5 GiB, so the
    10,000-part limit allows blobs of about 1,000 * base * 1,023 (9.76 TiB at 10 MiB)."""
    return min(base << ((number - 1) // 1000), MAX_COPY_PART)


def marks_upload(head: dict[str, Any]) -> bool:
    """Whether an object (its HEAD or GET answer) only marks a multipart upload."""
    return bool(head.get("Metadata", {}).get(FLAG) == MARKS_UPLOAD)


def is_tail_dir(name: str) -> bool:
    return name.endswith(TAIL)


def object_of_tail_dir(name: str) -> str:
    """`K.tail` → `K`: listings show an appendable object once, under its own name."""
    return name.removesuffix(TAIL)


@dataclass(frozen=True, slots=True)
class Part:
    number: int
    etag: str
    size: int
    modified: float = 0.0


@dataclass(slots=True)
class Session:
    """What the store holds of an appendable object K."""

    key: str
    base: int | None = None  # size of the object K, when it holds the data
    base_modified: float = 0.0
    upload: str | None = None  # the multipart upload at K, once it has parts
    parts: list[Part] = field(default_factory=list)
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


class AppendableObjects:
    """The appendable objects of one bucket. Every method but `appender` blocks: the driver
    runs them on the bucket's pool."""

    def __init__(self, bucket: Bucket, chunk_size: int) -> None:
        self.bucket = bucket
        self.chunk_size = max(chunk_size, MIN_PART)

    def all_parts(self, key: str, upload: str) -> list[Part]:
        parts = []
        for page in self.bucket.s3.get_paginator("list_parts").paginate(
                Bucket=self.bucket.name, Key=key, UploadId=upload):
            parts += [Part(int(p["PartNumber"]), str(p["ETag"]), int(p["Size"]),
                           p["LastModified"].timestamp()) for p in page.get("Parts", [])]
        return sorted(parts, key=lambda p: p.number)

    def tails(self, key: str) -> list[tuple[str, int, int, float]]:
        """Pending objects: (key, offset, size, modified)."""
        return [(item["Key"], int(item["Key"].rsplit("/", 1)[1]), int(item["Size"]),
                 item["LastModified"].timestamp())
                for page in self.bucket.listing(key + TAIL + "/")
                for item in page.get("Contents", [])]

    def session(self, key: str, head: dict[str, Any] | None = None) -> Session:
        """The data of K: when K marks a multipart upload, its parts (the unbroken run
        from part 1) and the tail right after them; else the object K itself."""
        session = Session(key)
        head = head if head is not None else self.bucket.head(key)
        if head is None:
            return session
        upload = head.get("Metadata", {}).get(UPLOAD_ID) if marks_upload(head) else None
        listed: list[Part] = []
        if upload:
            with contextlib.suppress(ClientError):  # NoSuchUpload: aborted, nothing left
                listed = self.all_parts(key, upload)
        run = [p for i, p in enumerate(listed) if p.number == i + 1]  # up to a gap
        if upload and run:
            session.upload, session.parts = upload, run
            for tail_key, offset, size, modified in self.tails(key):
                if offset == session.in_parts and session.tail is None and size:
                    session.tail, session.tail_modified = (tail_key, size), modified
                else:
                    session.stale_tails.append(tail_key)
            return session
        session.base = 0 if upload else int(head["ContentLength"])
        session.base_modified = head["LastModified"].timestamp()
        return session

    def seal(self, session: Session) -> int:
        """Complete the session's multipart upload into the object K, its tail the last
        part; K's size. Parts past the data (left by a stopped process or an aborted
        append) must be listed too on RGW, so K is then rebuilt without them."""
        if session.upload is None:
            return session.base or 0
        s3, bucket = self.bucket.s3, self.bucket.name
        key, upload = session.key, session.upload
        listed = self.all_parts(key, upload)
        extras = len(listed) > len(session.parts)
        parts = list(listed if extras else session.parts)
        size = session.in_parts
        if session.tail and not extras:
            number = len(parts) + 1
            etag = s3.upload_part_copy(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                CopySource={"Bucket": bucket, "Key": session.tail[0]},
            )["CopyPartResult"]["ETag"]
            parts.append(Part(number, str(etag), session.tail[1]))
            size += session.tail[1]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": p.number, "ETag": p.etag}
                                       for p in parts]})
        if extras:
            pieces = [(key, 0, size)]
            if session.tail:
                pieces.append((session.tail[0], 0, session.tail[1]))
                size += session.tail[1]
            self.bucket.assemble(pieces, key, {FLAG: HOLDS_DATA})
        doomed = session.stale_tails + ([session.tail[0]] if session.tail else [])
        if doomed:
            self.bucket.delete_keys(doomed)
        return size

    def truncate(self, session: Session, at: int) -> None:
        """Keep the first `at` bytes: the session is sealed, then K rebuilt from its head
        (server-side, as any assembly)."""
        size = self.seal(session)
        if at < size:
            if at:
                self.bucket.assemble([(session.key, 0, at)], session.key, {FLAG: HOLDS_DATA})
            else:
                self.bucket.s3.put_object(Bucket=self.bucket.name, Key=session.key, Body=b"",
                                          Metadata={FLAG: HOLDS_DATA}, **self.bucket.put_args)

    def open(self, key: str, path: str, resume_at: int | None, fresh: bool) -> SessionAppender:
        session = Session(key) if fresh else self.session(key)
        if resume_at is not None and resume_at != session.size:
            if resume_at > session.size:
                raise StorageError(f"{path}: cannot resume at {resume_at}, it has "
                                   f"{session.size} bytes")
            self.truncate(session, resume_at)
            session = self.session(key)
        return SessionAppender(self, session)

    def abort_stale(self, prefix: str, cutoff: float) -> int:
        """Abort multipart uploads with no activity (a part or a tail written) since
        `cutoff`: those of sessions nobody continues, and copies a stopped process left."""
        s3, bucket = self.bucket.s3, self.bucket.name
        aborted = 0
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket,
                                                                         Prefix=prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() > cutoff:
                    continue
                key, upload_id = upload["Key"], upload["UploadId"]
                with contextlib.suppress(ClientError):
                    activity = [p.modified for p in self.all_parts(key, upload_id)]
                    activity += [t[3] for t in self.tails(key)]
                    if max(activity, default=0.0) <= cutoff:
                        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                        aborted += 1
                        self._drop_marker(key, upload_id)
        return aborted

    def _drop_marker(self, key: str, upload: str) -> None:
        """Delete K when it only marks the upload just aborted (its data went with it)."""
        head = self.bucket.head(key)
        if head is not None and head.get("Metadata", {}).get(UPLOAD_ID) == upload:
            self.bucket.delete_keys([key, *(t[0] for t in self.tails(key))])


class SessionAppender(Appender):
    """One append to an appendable object: full parts go to the session's multipart
    upload as they fill (one in flight while the next fills), the remainder becomes a part
    (5 MiB or more, among the first 1,000 parts) or the new tail."""

    def __init__(self, objects: AppendableObjects, session: Session) -> None:
        self._objects, self._bucket, self._key = objects, objects.bucket, session.key
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
            self._buffer += self._bucket.read(session.tail[0])
        elif session.base:
            if session.base < MIN_PART:
                self._buffer += self._bucket.read(self._key)
            else:
                self._copy_base = session.base
        self._in_flight: asyncio.Future[None] | None = None
        self._sent = False  # a part of this append's data was sent

    def _next_part_size(self) -> int:
        return part_size(len(self._parts) + 1, self._objects.chunk_size)

    def _start(self) -> None:
        """The session's multipart upload, its first parts copies of the object K (once
        complete, K holds the data again: so says its metadata)."""
        s3, bucket = self._bucket.s3, self._bucket.name
        self._upload = s3.create_multipart_upload(
            Bucket=bucket, Key=self._key, Metadata={FLAG: HOLDS_DATA},
            **self._bucket.put_args)["UploadId"]
        count = -(-self._copy_base // MAX_COPY_PART)
        for index in range(count):
            start = self._copy_base * index // count
            end = self._copy_base * (index + 1) // count
            etag = s3.upload_part_copy(
                Bucket=bucket, Key=self._key, UploadId=self._upload,
                PartNumber=index + 1, CopySource={"Bucket": bucket, "Key": self._key},
                CopySourceRange=f"bytes={start}-{end - 1}")["CopyPartResult"]["ETag"]
            self._parts.append(Part(index + 1, str(etag), end - start))
        self._copy_base = 0

    def _send_part(self, data: bytes) -> None:
        if self._upload is None:
            self._start()
        number = len(self._parts) + 1
        etag = self._bucket.s3.upload_part(Bucket=self._bucket.name, Key=self._key,
                                           UploadId=self._upload, PartNumber=number,
                                           Body=data)["ETag"]
        self._parts.append(Part(number, str(etag), len(data)))
        self._sent = True
        self._mark()

    def _mark(self) -> None:
        """Point K at the upload, now that the upload holds everything K held."""
        if not self._marked:
            self._bucket.s3.put_object(
                Bucket=self._bucket.name, Key=self._key, Body=b"",
                Metadata={FLAG: MARKS_UPLOAD, UPLOAD_ID: str(self._upload)},
                **self._bucket.put_args)
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
            self._in_flight = asyncio.ensure_future(self._bucket.run(self._send_part, part))

    def _commit(self) -> None:
        bucket = self._bucket
        if self._upload is None and not self._copy_base:
            if self._buffer or not self._has_object:  # a small object: K itself, rewritten
                bucket.s3.put_object(Bucket=bucket.name, Key=self._key,
                                     Body=bytes(self._buffer), Metadata={FLAG: HOLDS_DATA},
                                     **bucket.put_args)
            return
        if self._upload is None:
            self._start()
        remainder = bytes(self._buffer)
        if len(remainder) >= MIN_PART and len(self._parts) < FREE_PARTS:
            self._send_part(remainder)
            remainder = b""
        tail = f"{self._key}{TAIL}/{sum(p.size for p in self._parts):020d}"
        if remainder:
            bucket.s3.put_object(Bucket=bucket.name, Key=tail, Body=remainder,
                                 **bucket.put_args)
        self._mark()
        doomed = [k for k in [self._old_tail, *self._stale_tails]
                  if k and not (remainder and k == tail)]
        if doomed:
            bucket.delete_keys(doomed)

    async def commit(self) -> None:
        await self._settle()
        if self.size != self._opened or (self._upload is None and not self._has_object):
            await self._bucket.run(self._commit)
        self._buffer.clear()

    async def abort(self) -> None:
        if self._in_flight is not None:
            with contextlib.suppress(Exception):
                await self._settle()
        self._buffer.clear()
        if self._sent:  # parts hold some of this append: cut the object back
            await self._bucket.run(self._restore)
        self.size = self._opened

    def _restore(self) -> None:
        self._objects.truncate(self._objects.session(self._key), self._opened)
