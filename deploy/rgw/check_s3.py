#!/usr/bin/env python3
"""Probe the S3 behaviour a registry storage driver relies on, with boto3.

    .venv/bin/python deploy/rgw/check_s3.py DIR            # a cluster from rgw.py start DIR
    .venv/bin/python deploy/rgw/check_s3.py --endpoint URL --access-key A --secret-key S

Path-style addressing, a custom endpoint and SigV4. Each probe prints one
markdown table row: what was sent, what came back, and whether that is what
an AWS-compatible S3 answers. Exit 0 when every probe matched.
`--checksums when_supported` keeps botocore's default of sending CRC32
checksums (botocore >= 1.36); the default here is `when_required`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections import Counter

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MiB = 1024 * 1024
rows: list[tuple[str, str, str, bool]] = []


def code(e: ClientError) -> str:
    md = e.response.get("ResponseMetadata", {})
    return f"{md.get('HTTPStatusCode')} {e.response.get('Error', {}).get('Code')}"


def record(name: str, expect: str, got: str, ok: bool) -> None:
    rows.append((name, expect, got, ok))
    print(f"| {name} | {expect} | {got} | {'yes' if ok else '**NO**'} |", flush=True)


def probe(name: str, expect: str):  # type: ignore[no-untyped-def]
    """Decorator: run fn() -> (got, ok); an exception is a failed row."""

    def deco(fn):  # type: ignore[no-untyped-def]
        try:
            got, ok = fn()
        except ClientError as e:
            got, ok = f"ClientError {code(e)}", False
        except Exception as e:
            got, ok = f"{type(e).__name__}: {e}"[:200], False
            traceback.print_exc(file=sys.stderr)
        record(name, expect, got, ok)
        return fn

    return deco


def expect_error(fn, status: int, err_code: str | None = None) -> tuple[str, bool]:  # type: ignore[no-untyped-def]
    try:
        r = fn()
    except ClientError as e:
        c = code(e)
        ok = e.response["ResponseMetadata"]["HTTPStatusCode"] == status and (
            err_code is None or e.response["Error"]["Code"] == err_code
        )
        return c, ok
    return f"{r['ResponseMetadata']['HTTPStatusCode']} (accepted)", False


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--endpoint")
    ap.add_argument("--access-key")
    ap.add_argument("--secret-key")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument(
        "--checksums", default="when_required", choices=["when_required", "when_supported"]
    )
    a = ap.parse_args()
    if a.dir:
        with open(os.path.join(a.dir, "state", "cluster.json")) as f:
            info = json.load(f)
        a.endpoint, a.access_key, a.secret_key = (
            info["endpoint"],
            info["access_key"],
            info["secret_key"],
        )
        a.region = info.get("region", a.region)
    if not (a.endpoint and a.access_key and a.secret_key):
        ap.error("give DIR or --endpoint/--access-key/--secret-key")

    def client(secret: str | None = None, region: str | None = None, access: str | None = None):  # type: ignore[no-untyped-def]
        extra = {}
        if a.checksums:
            extra = {
                "request_checksum_calculation": a.checksums,
                "response_checksum_validation": "when_required",
            }
        return boto3.client(
            "s3",
            endpoint_url=a.endpoint,
            aws_access_key_id=access or a.access_key,
            aws_secret_access_key=secret or a.secret_key,
            region_name=region or a.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                **extra,
            ),
        )

    s3 = client()
    bucket = "berth-probe-" + uuid.uuid4().hex[:8]
    print(
        f"endpoint {a.endpoint}, boto3 {boto3.__version__}, bucket {bucket}, "
        f"checksums {a.checksums}\n",
        file=sys.stderr,
    )
    print("| probe | expected (AWS S3) | RGW answered | match |")
    print("| --- | --- | --- | --- |")

    @probe("CreateBucket (path-style, SigV4)", "200")
    def _():
        r = s3.create_bucket(Bucket=bucket)
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        return str(st), st == 200

    @probe(
        "CreateBucket on the owner's existing bucket",
        "409 BucketAlreadyOwnedByYou (us-east-1 answers 200)",
    )
    def _():
        try:
            r = s3.create_bucket(Bucket=bucket)
            return f"{r['ResponseMetadata']['HTTPStatusCode']}", True
        except ClientError as e:
            return code(e), e.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"

    @probe("HeadBucket", "200")
    def _():
        r = s3.head_bucket(Bucket=bucket)
        return str(r["ResponseMetadata"]["HTTPStatusCode"]), True

    body = os.urandom(1000)
    md5 = hashlib.md5(body).hexdigest()

    @probe("PutObject", '200, ETag = "md5"')
    def _():
        r = s3.put_object(Bucket=bucket, Key="obj", Body=body, ContentType="application/x-test")
        return f"200 ETag {r['ETag']}", r["ETag"] == f'"{md5}"'

    @probe("GetObject", "same bytes, ContentLength, ContentType kept")
    def _():
        r = s3.get_object(Bucket=bucket, Key="obj")
        data = r["Body"].read()
        ok = (
            data == body and r["ContentLength"] == 1000 and r["ContentType"] == "application/x-test"
        )
        return f"{len(data)} bytes, len {r['ContentLength']}, type {r['ContentType']}", ok

    @probe("HeadObject", "200, ContentLength 1000, ETag quoted")
    def _():
        r = s3.head_object(Bucket=bucket, Key="obj")
        return f"len {r['ContentLength']} ETag {r['ETag']}", r["ContentLength"] == 1000 and r[
            "ETag"
        ] == f'"{md5}"'

    def ranged(spec: str, want: bytes, content_range: str | None = None) -> tuple[str, bool]:
        r = s3.get_object(Bucket=bucket, Key="obj", Range=spec)
        d = r["Body"].read()
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        ok = st == 206 and d == want
        if content_range is not None:
            ok = ok and r.get("ContentRange") == content_range
        return f"{st}, {len(d)} bytes, {r.get('ContentRange')}", ok

    @probe("GetObject Range bytes=10-19", "206, 10 bytes, Content-Range bytes 10-19/1000")
    def _():
        return ranged("bytes=10-19", body[10:20], "bytes 10-19/1000")

    @probe("GetObject Range bytes=990- (open end)", "206, last 10 bytes")
    def _():
        return ranged("bytes=990-", body[990:])

    @probe("GetObject Range bytes=-5 (suffix)", "206, last 5 bytes")
    def _():
        return ranged("bytes=-5", body[-5:])

    @probe("GetObject Range bytes=5000-6000 (past end)", "416 InvalidRange")
    def _():
        return expect_error(
            lambda: s3.get_object(Bucket=bucket, Key="obj", Range="bytes=5000-6000"),
            416,
            "InvalidRange",
        )

    @probe("GetObject Range bytes=900-5000 (end past size)", "206, bytes 900-999/1000")
    def _():
        return ranged("bytes=900-5000", body[900:])

    @probe("GetObject missing key", "404 NoSuchKey")
    def _():
        return expect_error(lambda: s3.get_object(Bucket=bucket, Key="nope"), 404, "NoSuchKey")

    @probe("HeadObject missing key", "404")
    def _():
        return expect_error(lambda: s3.head_object(Bucket=bucket, Key="nope"), 404)

    @probe("DeleteObject, then HeadObject", "204, then 404")
    def _():
        s3.put_object(Bucket=bucket, Key="del-me", Body=b"x")
        r = s3.delete_object(Bucket=bucket, Key="del-me")
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        got, ok = expect_error(lambda: s3.head_object(Bucket=bucket, Key="del-me"), 404)
        return f"{st}, then {got}", st == 204 and ok

    @probe("DeleteObject missing key", "204")
    def _():
        r = s3.delete_object(Bucket=bucket, Key="never-was")
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        return str(st), st == 204

    @probe("DeleteObjects (batch of 3, one missing)", "3 Deleted, 0 Errors")
    def _():
        for k in ("bd/1", "bd/2"):
            s3.put_object(Bucket=bucket, Key=k, Body=b"x")
        r = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "bd/1"}, {"Key": "bd/2"}, {"Key": "bd/3"}]}
        )
        return f"{len(r.get('Deleted', []))} Deleted, {len(r.get('Errors', []))} Errors", len(
            r.get("Deleted", [])
        ) == 3 and not r.get("Errors")

    # ---- listing
    keys = ["l/a/1", "l/a/2", "l/a/sub/3", "l/b/4", "l/c", "l/d"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    @probe("ListObjectsV2 Prefix=l/a/", "l/a/1 l/a/2 l/a/sub/3, KeyCount 3")
    def _():
        r = s3.list_objects_v2(Bucket=bucket, Prefix="l/a/")
        ks = [o["Key"] for o in r.get("Contents", [])]
        return f"{' '.join(ks)}, KeyCount {r.get('KeyCount')}", ks == keys[:3] and r.get(
            "KeyCount"
        ) == 3

    @probe("ListObjectsV2 Prefix=l/ Delimiter=/", "Contents l/c l/d; CommonPrefixes l/a/ l/b/")
    def _():
        r = s3.list_objects_v2(Bucket=bucket, Prefix="l/", Delimiter="/")
        ks = [o["Key"] for o in r.get("Contents", [])]
        cps = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        return (
            f"Contents {' '.join(ks)}; CommonPrefixes {' '.join(cps)}; "
            f"KeyCount {r.get('KeyCount')}",
            ks == ["l/c", "l/d"] and cps == ["l/a/", "l/b/"],
        )

    @probe("ListObjectsV2 Prefix=l/ StartAfter=l/a/sub/3", "l/b/4 l/c l/d")
    def _():
        r = s3.list_objects_v2(Bucket=bucket, Prefix="l/", StartAfter="l/a/sub/3")
        ks = [o["Key"] for o in r.get("Contents", [])]
        return " ".join(ks), ks == ["l/b/4", "l/c", "l/d"]

    @probe(
        "ListObjectsV2 MaxKeys=2 + ContinuationToken",
        "pages [2,2,2], IsTruncated T,T,F, all 6 keys in order",
    )
    def _():
        pages, trunc, got = [], [], []
        kw = {"Bucket": bucket, "Prefix": "l/", "MaxKeys": 2}
        for _i in range(10):
            r = s3.list_objects_v2(**kw)
            ks = [o["Key"] for o in r.get("Contents", [])]
            pages.append(len(ks))
            trunc.append(r["IsTruncated"])
            got += ks
            if not r["IsTruncated"]:
                break
            kw["ContinuationToken"] = r["NextContinuationToken"]
        return f"pages {pages}, IsTruncated {trunc}", got == keys and pages == [
            2,
            2,
            2,
        ] and trunc == [True, True, False]

    @probe("ListObjectsV2 Delimiter=/ MaxKeys=1 pagination", "l/a/ l/b/ l/c l/d, one per page")
    def _():
        got = []
        kw = {"Bucket": bucket, "Prefix": "l/", "Delimiter": "/", "MaxKeys": 1}
        for _i in range(10):
            r = s3.list_objects_v2(**kw)
            got += [p["Prefix"] for p in r.get("CommonPrefixes", [])] + [
                o["Key"] for o in r.get("Contents", [])
            ]
            if not r["IsTruncated"]:
                break
            kw["ContinuationToken"] = r["NextContinuationToken"]
        return " ".join(got), got == ["l/a/", "l/b/", "l/c", "l/d"]

    @probe("ListObjectsV2 StartAfter + ContinuationToken together", "token wins: l/d after l/c")
    def _():
        r = s3.list_objects_v2(Bucket=bucket, Prefix="l/", MaxKeys=5)
        tok = r["NextContinuationToken"]  # continue after l/c
        r2 = s3.list_objects_v2(
            Bucket=bucket, Prefix="l/", StartAfter="l/a/1", ContinuationToken=tok
        )
        ks = [o["Key"] for o in r2.get("Contents", [])]
        return " ".join(ks), ks == ["l/d"]

    @probe("ListObjectsV2 empty prefix", "KeyCount 0, no Contents")
    def _():
        r = s3.list_objects_v2(Bucket=bucket, Prefix="zzz/")
        return f"KeyCount {r.get('KeyCount')}, Contents {'Contents' in r}", r.get(
            "KeyCount"
        ) == 0 and "Contents" not in r

    # ---- multipart
    p1, p2, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB + 7), os.urandom(1234)
    state: dict = {}

    @probe("CreateMultipartUpload", "UploadId")
    def _():
        r = s3.create_multipart_upload(
            Bucket=bucket, Key="mp", ContentType="application/octet-stream"
        )
        state["uid"] = r["UploadId"]
        return f"UploadId {r['UploadId'][:24]}...", bool(r["UploadId"])

    @probe("UploadPart 1 (5 MiB), 2 (5 MiB+7), 3 (1234 B)", 'ETag "md5(part)" each')
    def _():
        etags = []
        for n, d in ((1, p1), (2, p2), (3, p3)):
            r = s3.upload_part(Bucket=bucket, Key="mp", UploadId=state["uid"], PartNumber=n, Body=d)
            etags.append(r["ETag"])
        state["etags"] = etags
        ok = etags == [f'"{hashlib.md5(d).hexdigest()}"' for d in (p1, p2, p3)]
        return " ".join(e[:10] + '.."' for e in etags), ok

    @probe("ListParts", "parts 1,2,3 with sizes and ETags")
    def _():
        r = s3.list_parts(Bucket=bucket, Key="mp", UploadId=state["uid"])
        ps = [(p["PartNumber"], p["Size"], p["ETag"]) for p in r.get("Parts", [])]
        ok = ps == [
            (1, 5 * MiB, state["etags"][0]),
            (2, 5 * MiB + 7, state["etags"][1]),
            (3, 1234, state["etags"][2]),
        ]
        return " ".join(f"{n}:{s}" for n, s, _e in ps), ok

    @probe("ListParts MaxParts=2 + PartNumberMarker", "page [1,2] truncated, then [3]")
    def _():
        r = s3.list_parts(Bucket=bucket, Key="mp", UploadId=state["uid"], MaxParts=2)
        a1 = [p["PartNumber"] for p in r["Parts"]]
        r2 = s3.list_parts(
            Bucket=bucket,
            Key="mp",
            UploadId=state["uid"],
            PartNumberMarker=r["NextPartNumberMarker"],
        )
        a2 = [p["PartNumber"] for p in r2["Parts"]]
        return f"{a1} trunc={r['IsTruncated']} then {a2}", a1 == [1, 2] and r[
            "IsTruncated"
        ] and a2 == [3]

    @probe("ListMultipartUploads", "lists key mp with the UploadId")
    def _():
        r = s3.list_multipart_uploads(Bucket=bucket)
        ups = [(u["Key"], u["UploadId"]) for u in r.get("Uploads", [])]
        return f"{len(ups)} upload(s): {[k for k, _u in ups]}", ("mp", state["uid"]) in ups

    @probe(
        "CompleteMultipartUpload with parts 1 and 3 of 3 uploaded",
        'object = part1+part3, ETag "md5(md5s)-2"',
    )
    def _():
        r = s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=state["uid"],
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": state["etags"][0]},
                    {"PartNumber": 3, "ETag": state["etags"][2]},
                ]
            },
        )
        want = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p3).digest()).hexdigest() + "-2"
        d = s3.get_object(Bucket=bucket, Key="mp")["Body"].read()
        state["done"] = True
        return f"ETag {r['ETag']}, size {len(d)}", r["ETag"] == f'"{want}"' and d == p1 + p3

    @probe("CompleteMultipartUpload with parts 1 and 2 of 3 uploaded", "object = part1+part2")
    def _():
        if state.get("done"):
            return "skipped (upload already completed)", True
        r = s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=state["uid"],
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": state["etags"][0]},
                    {"PartNumber": 2, "ETag": state["etags"][1]},
                ]
            },
        )
        d = s3.get_object(Bucket=bucket, Key="mp")["Body"].read()
        state["done"] = True
        return f"ETag {r['ETag']}, size {len(d)}", d == p1 + p2

    @probe("CompleteMultipartUpload with all 3 parts", "object = part1+part2+part3")
    def _():
        if state.get("done"):
            return "skipped (upload already completed)", True
        r = s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=state["uid"],
            MultipartUpload={
                "Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(state["etags"])]
            },
        )
        state["complete_etag"] = r.get("ETag")
        d = s3.get_object(Bucket=bucket, Key="mp")["Body"].read()
        return f"size {len(d)}", d == p1 + p2 + p3

    @probe("CompleteMultipartUpload response ETag", 'quoted "md5(md5s)-N", same as HeadObject')
    def _():
        h = s3.head_object(Bucket=bucket, Key="mp")["ETag"]
        got = state.get("complete_etag")
        return f"response {got!r}, HeadObject {h}", got == h

    @probe("Upload parts 1 and 3 only (gap), Complete [1,3]", "200, object = part1+part3")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="gap")["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key="gap", UploadId=u, PartNumber=1, Body=p1)["ETag"]
        e3 = s3.upload_part(Bucket=bucket, Key="gap", UploadId=u, PartNumber=3, Body=p3)["ETag"]
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="gap",
            UploadId=u,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 3, "ETag": e3}]
            },
        )
        d = s3.get_object(Bucket=bucket, Key="gap")["Body"].read()
        return f"size {len(d)}", d == p1 + p3

    @probe("UploadPart same PartNumber twice, Complete with the 2nd ETag", "200, object = 2nd data")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="redo")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="redo", UploadId=u, PartNumber=1, Body=b"first")
        e = s3.upload_part(Bucket=bucket, Key="redo", UploadId=u, PartNumber=1, Body=b"second")[
            "ETag"
        ]
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="redo",
            UploadId=u,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]},
        )
        d = s3.get_object(Bucket=bucket, Key="redo")["Body"].read()
        return repr(d), d == b"second"

    @probe("Complete with a too-small non-last part", "400 EntityTooSmall")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=u, PartNumber=1, Body=b"a" * 100)[
            "ETag"
        ]
        e2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=u, PartNumber=2, Body=b"b" * 100)[
            "ETag"
        ]
        res = expect_error(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket,
                Key="small",
                UploadId=u,
                MultipartUpload={
                    "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
                },
            ),
            400,
            "EntityTooSmall",
        )
        s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=u)
        return res

    @probe("Complete with a wrong part ETag", "400 InvalidPart")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="badpart")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="badpart", UploadId=u, PartNumber=1, Body=b"a")
        res = expect_error(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket,
                Key="badpart",
                UploadId=u,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]},
            ),
            400,
            "InvalidPart",
        )
        s3.abort_multipart_upload(Bucket=bucket, Key="badpart", UploadId=u)
        return res

    @probe("Complete a single 0-byte part", "200, 0-byte object")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="empty-mp")["UploadId"]
        e = s3.upload_part(Bucket=bucket, Key="empty-mp", UploadId=u, PartNumber=1, Body=b"")[
            "ETag"
        ]
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="empty-mp",
            UploadId=u,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]},
        )
        n = s3.head_object(Bucket=bucket, Key="empty-mp")["ContentLength"]
        return f"size {n}", n == 0

    @probe("AbortMultipartUpload, then ListParts", "204, then 404 NoSuchUpload")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="ab")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="ab", UploadId=u, PartNumber=1, Body=b"a" * 1000)
        r = s3.abort_multipart_upload(Bucket=bucket, Key="ab", UploadId=u)
        got, ok = expect_error(
            lambda: s3.list_parts(Bucket=bucket, Key="ab", UploadId=u), 404, "NoSuchUpload"
        )
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        return f"{st}, then {got}", st == 204 and ok

    @probe("UploadPart to an unknown UploadId", "404 NoSuchUpload")
    def _():
        return expect_error(
            lambda: s3.upload_part(
                Bucket=bucket, Key="ab", UploadId="2~nope", PartNumber=1, Body=b"a"
            ),
            404,
            "NoSuchUpload",
        )

    # ---- copies
    src = os.urandom(6 * MiB + 3)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    src_etag = s3.head_object(Bucket=bucket, Key="src")["ETag"]

    @probe(
        "UploadPartCopy (whole 6 MiB source + CopySourceRange) + Complete",
        "object = src + src[0:1000]",
    )
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="upc")["UploadId"]
        r1 = s3.upload_part_copy(
            Bucket=bucket,
            Key="upc",
            UploadId=u,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "src"},
        )
        r2 = s3.upload_part_copy(
            Bucket=bucket,
            Key="upc",
            UploadId=u,
            PartNumber=2,
            CopySource={"Bucket": bucket, "Key": "src"},
            CopySourceRange="bytes=0-999",
        )
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="upc",
            UploadId=u,
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                    {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
                ]
            },
        )
        d = s3.get_object(Bucket=bucket, Key="upc")["Body"].read()
        return f"size {len(d)}, part ETags {r1['CopyPartResult']['ETag'][:8]}..", d == src + src[
            :1000
        ]

    @probe("CopyObject (same bucket)", "copy has the same bytes and (HeadObject) ETag")
    def _():
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
        d = s3.get_object(Bucket=bucket, Key="copy")["Body"].read()
        h = s3.head_object(Bucket=bucket, Key="copy")["ETag"]
        return f"{len(d)} bytes, HeadObject ETag {h}", d == src and h == src_etag

    @probe("CopyObjectResult ETag (response XML)", f"quoted, {src_etag}")
    def _():
        r = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
        e = r["CopyObjectResult"]["ETag"]
        return e, e == src_etag

    @probe("UploadPartCopy CopyPartResult ETag (response XML)", 'quoted "md5"')
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="upc2")["UploadId"]
        r = s3.upload_part_copy(
            Bucket=bucket,
            Key="upc2",
            UploadId=u,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "obj"},
        )
        s3.abort_multipart_upload(Bucket=bucket, Key="upc2", UploadId=u)
        e = r["CopyPartResult"]["ETag"]
        return e, e == f'"{md5}"'

    @probe("CopyObject MetadataDirective=REPLACE onto itself", "200, new metadata")
    def _():
        s3.copy_object(
            Bucket=bucket,
            Key="src",
            CopySource={"Bucket": bucket, "Key": "src"},
            MetadataDirective="REPLACE",
            Metadata={"x": "y"},
            ContentType="text/x-new",
        )
        h = s3.head_object(Bucket=bucket, Key="src")
        return f"Metadata {h['Metadata']}, type {h['ContentType']}", h["Metadata"] == {
            "x": "y"
        } and h["ContentType"] == "text/x-new"

    @probe("CopyObject of a missing source", "404 NoSuchKey")
    def _():
        return expect_error(
            lambda: s3.copy_object(
                Bucket=bucket, Key="c2", CopySource={"Bucket": bucket, "Key": "nope"}
            ),
            404,
            "NoSuchKey",
        )

    # ---- presigned
    @probe("Presigned GET (urllib)", "200, same bytes")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "obj"}, ExpiresIn=60
        )
        with urllib.request.urlopen(url, timeout=10) as r:
            d = r.read()
            return f"{r.status}, {len(d)} bytes", r.status == 200 and d == body

    def refused(url: str) -> tuple[str, bool]:
        try:
            urllib.request.urlopen(url, timeout=10)
            return "200 (accepted)", False
        except urllib.error.HTTPError as e:
            return f"{e.code} {e.read()[:120]!r}", e.code == 403

    @probe("Presigned GET with a tampered signature", "403")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "obj"}, ExpiresIn=60
        )
        return refused(url.replace("X-Amz-Signature=", "X-Amz-Signature=0")[:-1])

    @probe("Presigned GET after expiry (ExpiresIn=1, 2 s later)", "403")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "obj"}, ExpiresIn=1
        )
        time.sleep(2.2)
        return refused(url)

    @probe("Presigned PUT (urllib)", "200, object written")
    def _():
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "pput"}, ExpiresIn=60
        )
        req = urllib.request.Request(url, data=b"presigned", method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            st = r.status
        d = s3.get_object(Bucket=bucket, Key="pput")["Body"].read()
        return f"{st}, read back {d!r}", st == 200 and d == b"presigned"

    # ---- conditional writes
    @probe("PutObject IfNoneMatch='*' on a new key", "200")
    def _():
        r = s3.put_object(Bucket=bucket, Key="cond", Body=b"one", IfNoneMatch="*")
        return str(r["ResponseMetadata"]["HTTPStatusCode"]), True

    @probe("PutObject IfNoneMatch='*' on an existing key", "412 PreconditionFailed")
    def _():
        got, ok = expect_error(
            lambda: s3.put_object(Bucket=bucket, Key="cond", Body=b"two", IfNoneMatch="*"), 412
        )
        d = s3.get_object(Bucket=bucket, Key="cond")["Body"].read()
        return f"{got}; object still {d!r}", ok and d == b"one"

    etag1 = f'"{hashlib.md5(b"one").hexdigest()}"'

    @probe("PutObject IfMatch=<quoted ETag> (as HeadObject returns it)", "200")
    def _():
        try:
            r = s3.put_object(Bucket=bucket, Key="cond", Body=b"one", IfMatch=etag1)
            return str(r["ResponseMetadata"]["HTTPStatusCode"]), True
        except ClientError as e:
            return code(e), False

    @probe(
        "PutObject IfMatch=<unquoted ETag>",
        "200 (AWS: ETags compare as strings; quoted form is canonical)",
    )
    def _():
        try:
            r = s3.put_object(Bucket=bucket, Key="cond", Body=b"one", IfMatch=etag1.strip('"'))
            return str(r["ResponseMetadata"]["HTTPStatusCode"]), True
        except ClientError as e:
            return code(e), False

    @probe("PutObject IfMatch=<wrong ETag>, quoted", "412")
    def _():
        return expect_error(
            lambda: s3.put_object(
                Bucket=bucket, Key="cond", Body=b"x", IfMatch='"' + "0" * 32 + '"'
            ),
            412,
        )

    @probe("PutObject IfMatch=<wrong ETag>, unquoted", "412")
    def _():
        return expect_error(
            lambda: s3.put_object(Bucket=bucket, Key="cond", Body=b"x", IfMatch="0" * 32), 412
        )

    @probe("PutObject IfMatch=<unquoted ETag + 'junk'>", "412")
    def _():
        return expect_error(
            lambda: s3.put_object(
                Bucket=bucket, Key="cond", Body=b"x", IfMatch=etag1.strip('"') + "junk"
            ),
            412,
        )

    @probe("PutObject IfMatch=<ETag prefix (first 16 hex)>", "412")
    def _():
        return expect_error(
            lambda: s3.put_object(
                Bucket=bucket, Key="cond", Body=b"x", IfMatch=etag1.strip('"')[:16]
            ),
            412,
        )

    @probe("PutObject IfMatch='*' on an existing key", "200")
    def _():
        r = s3.put_object(Bucket=bucket, Key="cond", Body=b"one", IfMatch="*")
        return str(r["ResponseMetadata"]["HTTPStatusCode"]), True

    @probe("PutObject IfMatch=<ETag> on a missing key", "404 NoSuchKey (AWS) / 412")
    def _():
        got, _ok = expect_error(
            lambda: s3.put_object(Bucket=bucket, Key="cond-missing", Body=b"x", IfMatch=etag1), 412
        )
        return got, got.startswith(("404", "412"))

    @probe(
        "PutObject IfNoneMatch=<current ETag, unquoted>",
        "412 (AWS allows only '*'; 501/400 also acceptable)",
    )
    def _():
        got, _ok = expect_error(
            lambda: s3.put_object(
                Bucket=bucket, Key="cond", Body=b"x", IfNoneMatch=etag1.strip('"')
            ),
            412,
        )
        return got, not got.endswith("(accepted)")

    @probe("CompleteMultipartUpload IfNoneMatch='*' on an existing key", "412 (AWS, since 2024)")
    def _():
        u = s3.create_multipart_upload(Bucket=bucket, Key="cond")["UploadId"]
        e = s3.upload_part(Bucket=bucket, Key="cond", UploadId=u, PartNumber=1, Body=b"mp")["ETag"]
        got, ok = expect_error(
            lambda: s3.complete_multipart_upload(
                Bucket=bucket,
                Key="cond",
                UploadId=u,
                IfNoneMatch="*",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]},
            ),
            412,
        )
        d = s3.get_object(Bucket=bucket, Key="cond")["Body"].read()
        if not ok:
            s3.put_object(Bucket=bucket, Key="cond", Body=b"one")
        else:
            s3.abort_multipart_upload(Bucket=bucket, Key="cond", UploadId=u)
        return f"{got}; object then {d!r}", ok

    @probe("GetObject IfMatch=<quoted ETag> / <unquoted>", "200 / 200")
    def _():
        out = []
        for em in (etag1, etag1.strip('"')):
            try:
                out.append(
                    str(
                        s3.get_object(Bucket=bucket, Key="cond", IfMatch=em)["ResponseMetadata"][
                            "HTTPStatusCode"
                        ]
                    )
                )
            except ClientError as e:
                out.append(code(e))
        return " / ".join(out), out == ["200", "200"]

    @probe("GetObject IfNoneMatch=<quoted ETag>", "304")
    def _():
        return expect_error(
            lambda: s3.get_object(Bucket=bucket, Key="cond", IfNoneMatch=etag1), 304
        )

    @probe("CopyObject CopySourceIfMatch=<quoted src ETag>", "200")
    def _():
        try:
            r = s3.copy_object(
                Bucket=bucket,
                Key="cc1",
                CopySource={"Bucket": bucket, "Key": "obj"},
                CopySourceIfMatch=f'"{md5}"',
            )
            return str(r["ResponseMetadata"]["HTTPStatusCode"]), True
        except ClientError as e:
            return code(e), False

    @probe("CopyObject CopySourceIfMatch=<unquoted src ETag>", "200")
    def _():
        try:
            r = s3.copy_object(
                Bucket=bucket,
                Key="cc2",
                CopySource={"Bucket": bucket, "Key": "obj"},
                CopySourceIfMatch=md5,
            )
            return str(r["ResponseMetadata"]["HTTPStatusCode"]), True
        except ClientError as e:
            return code(e), False

    @probe("CopyObject CopySourceIfMatch=<wrong ETag>", "412")
    def _():
        return expect_error(
            lambda: s3.copy_object(
                Bucket=bucket,
                Key="cc3",
                CopySource={"Bucket": bucket, "Key": "obj"},
                CopySourceIfMatch='"' + "0" * 32 + '"',
            ),
            412,
        )

    @probe("CopyObject CopySourceIfNoneMatch=<src ETag>", "412")
    def _():
        return expect_error(
            lambda: s3.copy_object(
                Bucket=bucket,
                Key="cc4",
                CopySource={"Bucket": bucket, "Key": "obj"},
                CopySourceIfNoneMatch=f'"{md5}"',
            ),
            412,
        )

    def copy_with_header(key: str, header: str, value: str) -> str:
        def add(request, **kw):  # type: ignore[no-untyped-def]
            request.headers[header] = value

        s3.meta.events.register_first("before-sign.s3.CopyObject", add)
        try:
            r = s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": "obj"})
            return str(r["ResponseMetadata"]["HTTPStatusCode"])
        except ClientError as e:
            return code(e)
        finally:
            s3.meta.events.unregister("before-sign.s3.CopyObject", add)

    @probe(
        "CopyObject, raw header x-amz-copy-if-match (not an S3 name): wrong / quoted / unquoted",
        "(AWS ignores this name) 200 / 200 / 200",
    )
    def _():
        out = [
            copy_with_header("cc5", "x-amz-copy-if-match", v)
            for v in ('"' + "0" * 32 + '"', f'"{md5}"', md5)
        ]
        return " / ".join(out), out == ["200", "200", "200"]

    @probe("CopyObject IfNoneMatch='*' onto an existing destination", "informational")
    def _():
        got, _ok = expect_error(
            lambda: s3.copy_object(
                Bucket=bucket,
                Key="cc1",
                CopySource={"Bucket": bucket, "Key": "obj"},
                IfNoneMatch="*",
            ),
            412,
        )
        return got, True  # informational

    # ---- races: is the conditional check atomic?
    from concurrent.futures import ThreadPoolExecutor

    def race(n: int, **cond) -> list[str]:  # type: ignore[no-untyped-def]
        def one(i: int) -> str:
            try:
                s3.put_object(Bucket=bucket, Key=race_key, Body=f"w{i}".encode() * 1000, **cond)
                return "200"
            except ClientError as e:
                return str(e.response["ResponseMetadata"]["HTTPStatusCode"])

        with ThreadPoolExecutor(n) as ex:
            return list(ex.map(one, range(n)))

    race_key = ""

    @probe(
        "16 concurrent PutObject IfNoneMatch='*' on a new key, x5 keys", "exactly one 200 per key"
    )
    def _():
        nonlocal race_key
        wins, others = [], Counter()
        for k in range(5):
            race_key = f"race/new{k}"
            res = race(16, IfNoneMatch="*")
            wins.append(res.count("200"))
            others.update(r for r in res if r != "200")
        return f"winners per key {wins}, others {dict(others)}", wins == [1] * 5

    @probe(
        "16 concurrent PutObject IfMatch=<current unquoted ETag>, x5 rounds",
        "exactly one 200 per round",
    )
    def _():
        nonlocal race_key
        wins, others = [], Counter()
        for k in range(5):
            race_key = f"race/upd{k}"
            s3.put_object(Bucket=bucket, Key=race_key, Body=b"base")
            res = race(16, IfMatch=hashlib.md5(b"base").hexdigest())
            wins.append(res.count("200"))
            others.update(r for r in res if r != "200")
        return f"winners per round {wins}, others {dict(others)}", wins == [1] * 5

    # ---- auth
    @probe("SigV4 with a WRONG secret", "403 SignatureDoesNotMatch")
    def _():
        bad = client(secret=a.secret_key + "x")
        return expect_error(
            lambda: bad.list_objects_v2(Bucket=bucket), 403, "SignatureDoesNotMatch"
        )

    @probe("SigV4 PutObject with a WRONG secret", "403, nothing written")
    def _():
        bad = client(secret="wrong" + a.secret_key)
        got, ok = expect_error(lambda: bad.put_object(Bucket=bucket, Key="evil", Body=b"x"), 403)
        got2, ok2 = expect_error(lambda: s3.head_object(Bucket=bucket, Key="evil"), 404)
        return f"{got}; HeadObject {got2}", ok and ok2

    @probe("SigV4 with an unknown access key", "403 InvalidAccessKeyId")
    def _():
        bad = client(access="NOSUCHKEY0000000")
        return expect_error(lambda: bad.list_objects_v2(Bucket=bucket), 403, "InvalidAccessKeyId")

    @probe("Anonymous (unsigned) GetObject", "403 AccessDenied")
    def _():
        try:
            urllib.request.urlopen(f"{a.endpoint}/{bucket}/obj", timeout=10)
            return "200 (accepted)", False
        except urllib.error.HTTPError as e:
            return f"{e.code}", e.code == 403

    @probe("SigV4 signed for region 'eu-west-1' / 'default'", "RGW: accepted (region not checked)")
    def _():
        out = []
        for reg in ("eu-west-1", "default"):
            try:
                client(region=reg).head_object(Bucket=bucket, Key="obj")
                out.append("200")
            except ClientError as e:
                out.append(code(e))
        return " / ".join(out), True  # informational

    @probe(
        f"PutObject with botocore checksums '{a.checksums}' + 'when_supported'",
        "200 both, bytes intact",
    )
    def _():
        out = []
        for mode in (a.checksums, "when_supported"):
            c = boto3.client(
                "s3",
                endpoint_url=a.endpoint,
                aws_access_key_id=a.access_key,
                aws_secret_access_key=a.secret_key,
                region_name=a.region,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    request_checksum_calculation=mode,
                    retries={"max_attempts": 1},
                ),
            )
            try:
                data = os.urandom(70000)
                c.put_object(Bucket=bucket, Key="ck-" + mode, Body=data)
                back = s3.get_object(Bucket=bucket, Key="ck-" + mode)["Body"].read()
                out.append(f"{mode}: {'ok' if back == data else f'CORRUPT len {len(back)}'}")
            except ClientError as e:
                out.append(f"{mode}: {code(e)}")
            except Exception as e:
                out.append(f"{mode}: {type(e).__name__}")
        return "; ".join(out), all(o.endswith("ok") for o in out)

    # ---- cleanup
    @probe("Delete everything, then DeleteBucket", "204")
    def _():
        for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
        pag = s3.get_paginator("list_objects_v2")
        for page in pag.paginate(Bucket=bucket):
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objs})
        r = s3.delete_bucket(Bucket=bucket)
        st = r["ResponseMetadata"]["HTTPStatusCode"]
        return str(st), st == 204

    bad = [r for r in rows if not r[3]]
    print(f"\n{len(rows) - len(bad)} passed, {len(bad)} differ", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
