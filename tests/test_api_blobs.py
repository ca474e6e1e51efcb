"""Blob fetch, HEAD, Range, conditional GET and delete."""

from __future__ import annotations

import os

import pytest
import requests

from .conftest import MakeBerth
from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import digest, error_code, push_blob
from .servers import BerthServer


@pytest.fixture
def blob(berth: BerthServer, repo: str) -> tuple[str, bytes]:
    data = os.urandom(100_000)
    return push_blob(berth.url, repo, data), data


def test_get_and_head(berth: BerthServer, repo: str, blob: tuple[str, bytes]) -> None:
    d, data = blob
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"{d}"'
    h = requests.head(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == d
    assert h.content == b""


def test_conditional_get(berth: BerthServer, repo: str, blob: tuple[str, bytes]) -> None:
    d, _ = blob
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}", headers={"If-None-Match": f'"{d}"'})
    assert r.status_code == 304
    assert r.content == b""


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-0", 0, 0), ("bytes=10-99", 10, 99), ("bytes=99990-", 99990, 99999),
     ("bytes=-5", 99995, 99999), ("bytes=99000-200000", 99000, 99999)],
)
def test_range(berth: BerthServer, repo: str, blob: tuple[str, bytes],
               header: str, start: int, end: int) -> None:
    d, data = blob
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 206
    assert r.content == data[start : end + 1]
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert r.headers["Content-Length"] == str(end - start + 1)


@pytest.mark.parametrize("header", ["bytes=100000-", "bytes=200000-300000", "bytes=-0",
                                    "bytes=50-10"])
def test_range_not_satisfiable(berth: BerthServer, repo: str, blob: tuple[str, bytes],
                               header: str) -> None:
    d, _ = blob
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}", headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */100000"
    assert error_code(r) == "SIZE_INVALID"


def test_multiple_ranges_get_whole_blob(berth: BerthServer, repo: str,
                                        blob: tuple[str, bytes]) -> None:
    d, data = blob
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}", headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200
    assert r.content == data


def test_unknown_blob(berth: BerthServer, repo: str, blob: tuple[str, bytes]) -> None:
    missing = digest(b"never pushed")
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{missing}")
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UNKNOWN"
    r = requests.head(f"{berth.url}/v2/{repo}/blobs/{missing}")
    assert r.status_code == 404


def test_unknown_repository(berth: BerthServer, blob: tuple[str, bytes]) -> None:
    d, _ = blob
    r = requests.get(f"{berth.url}/v2/no/such/repo/blobs/{d}")
    assert r.status_code == 404
    assert error_code(r) == "NAME_UNKNOWN"


def test_blob_not_readable_from_another_repository(
    berth: BerthServer, repo: str, blob: tuple[str, bytes]
) -> None:
    d, _ = blob
    other = repo + "-other"
    push_blob(berth.url, other, b"something else")
    r = requests.get(f"{berth.url}/v2/{other}/blobs/{d}")
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UNKNOWN"


@pytest.mark.parametrize("bad", ["sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64,
                                 "nodigest", "sha512:" + "0" * 64])
def test_invalid_digest(berth: BerthServer, repo: str, bad: str) -> None:
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{bad}")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_delete_unlinks_from_repository_only(berth: BerthServer, repo: str) -> None:
    data = os.urandom(1000)
    d = push_blob(berth.url, repo, data)
    push_blob(berth.url, repo + "-b", data)
    r = requests.delete(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 202
    assert requests.head(f"{berth.url}/v2/{repo}/blobs/{d}").status_code == 404
    assert requests.get(f"{berth.url}/v2/{repo}-b/blobs/{d}").content == data
    r = requests.delete(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 404
    # that was the repository's only content: the repository is gone with it
    assert error_code(r) == "NAME_UNKNOWN"
    push_blob(berth.url, repo, b"something else")
    r = requests.delete(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert error_code(r) == "BLOB_UNKNOWN"


def test_delete_disabled(make_berth: MakeBerth, repo: str) -> None:
    server = make_berth({"storage": {"delete": {"enabled": False}}})
    d = push_blob(server.url, repo, b"keep me")
    r = requests.delete(f"{server.url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 405
    assert error_code(r) == "UNSUPPORTED"
    assert requests.head(f"{server.url}/v2/{repo}/blobs/{d}").status_code == 200


def test_empty_blob(berth: BerthServer, repo: str) -> None:
    d = push_blob(berth.url, repo, b"")
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "0"
