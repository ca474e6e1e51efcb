"""Upload sessions: monolithic, streamed, chunked, resumable, cancellable; cross-repo mount."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import requests

from .conftest import MakeBerth
from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import digest, error_code, push_blob
from .servers import BerthServer


def start(base: str, repo: str) -> str:
    r = requests.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    assert r.headers["Range"] == "0-0"
    assert r.headers["Docker-Upload-UUID"]
    assert int(r.headers["OCI-Chunk-Min-Length"]) > 0
    location = r.headers["Location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    return base + location


def patch(location: str, data: bytes, start_at: int | None = None) -> requests.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if start_at is not None:
        headers["Content-Range"] = f"{start_at}-{start_at + len(data) - 1}"
    return requests.patch(location, data=data, headers=headers)


def blob_visible(base: str, repo: str, d: str) -> bool:
    return requests.head(f"{base}/v2/{repo}/blobs/{d}").status_code == 200


def test_monolithic_post(berth: BerthServer, repo: str) -> None:
    data = os.urandom(5000)
    d = digest(data)
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert requests.get(berth.url + r.headers["Location"]).content == data


def test_post_then_put(berth: BerthServer, repo: str) -> None:
    data = os.urandom(5000)
    location = start(berth.url, repo)
    r = requests.put(location, params={"digest": digest(data)}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(data)}").content == data


def test_streamed_patch_without_content_range(berth: BerthServer, repo: str) -> None:
    parts = [os.urandom(300_000) for _ in range(5)]

    def stream() -> Iterator[bytes]:
        yield from parts

    location = start(berth.url, repo)
    r = requests.patch(location, data=stream())  # chunked transfer encoding, no length
    assert r.status_code == 202
    total = sum(map(len, parts))
    assert r.headers["Range"] == f"0-{total - 1}"
    data = b"".join(parts)
    r = requests.put(berth.url + r.headers["Location"], params={"digest": digest(data)})
    assert r.status_code == 201
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(data)}").content == data


def test_chunked_upload_with_status_and_final_chunk(berth: BerthServer, repo: str) -> None:
    data = os.urandom(250_000)
    chunks = [data[:100_000], data[100_000:200_000], data[200_000:]]
    location = start(berth.url, repo)
    offset = 0
    for chunk in chunks[:2]:
        r = patch(location, chunk, offset)
        assert r.status_code == 202, r.text
        offset += len(chunk)
        assert r.headers["Range"] == f"0-{offset - 1}"
        location = berth.url + r.headers["Location"]
        status = requests.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{offset - 1}"
        assert status.headers["Docker-Upload-UUID"]
    r = requests.put(location, params={"digest": digest(data)}, data=chunks[2],
                     headers={"Content-Range": f"{offset}-{len(data) - 1}",
                              "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(data)}").content == data


def test_out_of_order_and_retried_chunks_get_416(berth: BerthServer, repo: str) -> None:
    data = os.urandom(30_000)
    location = start(berth.url, repo)
    assert patch(location, data[:10_000], 0).status_code == 202
    # a chunk from the future
    r = patch(location, data[20_000:], 20_000)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-9999"
    assert error_code(r) == "BLOB_UPLOAD_INVALID"
    # the first chunk again (a retry after a lost response)
    r = patch(location, data[:10_000], 0)
    assert r.status_code == 416
    assert r.headers["Range"] == "0-9999"
    # the session is still usable and unchanged
    assert requests.get(location).headers["Range"] == "0-9999"
    assert patch(location, data[10_000:20_000], 10_000).status_code == 202
    assert patch(location, data[20_000:], 20_000).status_code == 202
    r = requests.put(location, params={"digest": digest(data)})
    assert r.status_code == 201
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(data)}").content == data


def test_content_range_length_mismatch(berth: BerthServer, repo: str) -> None:
    location = start(berth.url, repo)
    r = requests.patch(location, data=b"x" * 10, headers={"Content-Range": "0-19"})
    assert r.status_code == 400
    assert error_code(r) == "BLOB_UPLOAD_INVALID"
    assert requests.get(location).headers["Range"] == "0-0"


def test_digest_mismatch_stores_nothing(berth: BerthServer, repo: str) -> None:
    data = os.urandom(1000)
    wrong = digest(b"something else")
    location = start(berth.url, repo)
    r = requests.put(location, params={"digest": wrong}, data=data)
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert not blob_visible(berth.url, repo, wrong)
    assert not blob_visible(berth.url, repo, digest(data))
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"digest": wrong},
                      data=data)
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    assert not blob_visible(berth.url, repo, wrong)


@pytest.mark.parametrize("bad", ["sha256:123", "nope", ""])
def test_invalid_digest_on_put(berth: BerthServer, repo: str, bad: str) -> None:
    location = start(berth.url, repo)
    r = requests.put(location, params={"digest": bad}, data=b"abc")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_put_without_digest(berth: BerthServer, repo: str) -> None:
    location = start(berth.url, repo)
    r = requests.put(location, data=b"abc")
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_sha512_upload(berth: BerthServer, repo: str) -> None:
    data = os.urandom(70_000)
    d512 = "sha512:" + hashlib.sha512(data).hexdigest()
    location = start(berth.url, repo)
    assert patch(location, data, 0).status_code == 202
    r = requests.put(location, params={"digest": d512})
    assert r.status_code == 201, r.text
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d512}")
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d512
    data2 = os.urandom(10)
    d2 = "sha512:" + hashlib.sha512(data2).hexdigest()
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"digest": d2}, data=data2)
    assert r.status_code == 201


def test_cancel(berth: BerthServer, repo: str) -> None:
    location = start(berth.url, repo)
    assert patch(location, b"abc", 0).status_code == 202
    r = requests.delete(location)
    assert r.status_code == 204
    r = requests.get(location)
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert requests.delete(location).status_code == 404


@pytest.mark.parametrize("upload_id", ["nope", "..%2F..%2F..%2Fetc", "0" * 32])
def test_unknown_upload(berth: BerthServer, repo: str, upload_id: str) -> None:
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = requests.request(method, f"{berth.url}/v2/{repo}/blobs/uploads/{upload_id}",
                             params={"digest": digest(b"")})
        assert r.status_code == 404, (method, r.text)
        assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"


def test_upload_survives_restart(make_berth: MakeBerth, repo: str) -> None:
    server = make_berth()
    data = os.urandom(3 * 1024 * 1024)
    location = start(server.url, repo)
    path = location[len(server.url):]
    assert patch(location, data[:1_000_000], 0).status_code == 202
    server.restart()
    location = server.url + path
    assert requests.get(location).headers["Range"] == "0-999999"
    assert patch(location, data[1_000_000:], 1_000_000).status_code == 202
    r = requests.put(location, params={"digest": digest(data)})
    assert r.status_code == 201
    assert requests.get(f"{server.url}/v2/{repo}/blobs/{digest(data)}").content == data
    # the running digest was saved beside the session (or, where OpenSSL's state cannot be
    # saved, the data is hashed once from storage); the log says which
    from registry.storage import hashstate

    expected = ("resumed the sha256 state saved at 1000000 bytes" if hashstate.AVAILABLE
                else "hashing 1000000 bytes from storage")
    assert expected in server.log.read_text()


def test_mount_from_repository(berth: BerthServer, repo: str) -> None:
    data = os.urandom(2000)
    d = push_blob(berth.url, repo, data)
    target = repo + "-target"
    r = requests.post(f"{berth.url}/v2/{target}/blobs/uploads/", params={"mount": d, "from": repo})
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{target}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{berth.url}/v2/{target}/blobs/{d}").content == data


def test_mount_falls_back_to_upload(berth: BerthServer, repo: str) -> None:
    data = os.urandom(2000)
    d = push_blob(berth.url, repo + "-holder", data)
    # the blob exists, but not in the named source repository
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/",
                      params={"mount": d, "from": repo + "-empty"})
    assert r.status_code == 202
    assert r.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    # an unknown digest
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/",
                      params={"mount": digest(b"unknown"), "from": repo + "-holder"})
    assert r.status_code == 202


def test_mount_without_from(berth: BerthServer, repo: str) -> None:
    data = os.urandom(2000)
    d = push_blob(berth.url, repo + "-elsewhere", data)
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"mount": d})
    assert r.status_code == 201
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{d}").content == data


def test_mount_invalid_digest(berth: BerthServer, repo: str) -> None:
    r = requests.post(f"{berth.url}/v2/{repo}/blobs/uploads/", params={"mount": "sha256:x"})
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"


def test_same_blob_pushed_concurrently(berth: BerthServer, repo: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = os.urandom(2 * 1024 * 1024)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: push_blob(berth.url, repo, data), range(8)))
    assert set(results) == {digest(data)}
    assert requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(data)}").content == data


def test_abandoned_uploads_are_purged(make_berth: MakeBerth, repo: str) -> None:
    import time

    server = make_berth({"storage": {"maintenance": {"uploadpurging": {
        "enabled": True, "age": "4s", "interval": "1s"}}}})
    abandoned = start(server.url, repo)
    assert patch(abandoned, b"some bytes", 0).status_code == 202
    active = start(server.url, repo)
    time.sleep(2.5)
    assert patch(active, b"still ", 0).status_code == 202  # activity keeps it alive
    time.sleep(2.5)
    assert patch(active, b"going", 6).status_code == 202
    time.sleep(2)
    r = requests.get(abandoned)
    assert r.status_code == 404
    assert error_code(r) == "BLOB_UPLOAD_UNKNOWN"
    assert requests.get(active).headers["Range"] == "0-10"
    assert "purged 1 stale uploads" in server.log.read_text()


def test_empty_blob_through_a_session(berth: BerthServer, repo: str) -> None:
    location = start(berth.url, repo)
    assert requests.get(location).headers["Range"] == "0-0"
    r = requests.put(location, params={"digest": digest(b"")})
    assert r.status_code == 201, r.text
    got = requests.get(f"{berth.url}/v2/{repo}/blobs/{digest(b'')}")
    assert got.status_code == 200 and got.content == b""
