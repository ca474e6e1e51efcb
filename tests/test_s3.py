"""S3 storage: presigned redirects, and several stateless replicas serving one bucket."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import MakeBerth, S3Endpoint, s3_config
from .helpers import digest, error_code, image, push_blob, put_manifest
from .servers import BerthServer

MiB = 1024 * 1024


@pytest.fixture(params=["moto", pytest.param("rgw", marks=pytest.mark.rgw)])
def shared_s3(request: pytest.FixtureRequest) -> S3Endpoint:
    """The S3 the replica tests run on: moto, then a real Ceph RGW (skipped without Ceph)."""
    endpoint: S3Endpoint = request.getfixturevalue(f"{request.param}_s3")
    return endpoint


@pytest.fixture
def replicas(make_berth: MakeBerth, shared_s3: S3Endpoint) -> Iterator[list[BerthServer]]:
    """Two `berth serve` processes on different ports sharing one bucket and prefix."""
    config = s3_config(shared_s3)
    yield [make_berth(config), make_berth(config)]


def test_blob_get_redirects_to_a_presigned_url(make_berth: MakeBerth,
                                               moto_s3: S3Endpoint) -> None:
    server = make_berth(s3_config(moto_s3, redirect=True))
    data = os.urandom(100_000)
    d = push_blob(server.url, "app", data)
    r = requests.get(f"{server.url}/v2/app/blobs/{d}", allow_redirects=False)
    assert r.status_code == 307
    assert r.headers["Location"].startswith(moto_s3.url)
    assert r.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{server.url}/v2/app/blobs/{d}").content == data
    ranged = requests.get(f"{server.url}/v2/app/blobs/{d}", headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    head = requests.head(f"{server.url}/v2/app/blobs/{d}", allow_redirects=False)
    assert head.status_code == 200  # HEAD never redirects
    assert head.headers["Content-Length"] == str(len(data))


def test_chunked_upload_alternating_between_replicas(replicas: list[BerthServer]) -> None:
    a, b = replicas
    data = os.urandom(23 * MiB)
    cuts = [0, 6 * MiB, 7 * MiB, 15 * MiB, 21 * MiB, len(data)]
    r = requests.post(f"{a.url}/v2/shared/blobs/uploads/")
    path = r.headers["Location"]
    for n, (start, end) in enumerate(itertools.pairwise(cuts[:-1])):
        server = replicas[n % 2]  # every PATCH goes to the other replica
        r = requests.patch(server.url + path, data=data[start:end],
                           headers={"Content-Range": f"{start}-{end - 1}"})
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{end - 1}"
        path = r.headers["Location"]
    status = requests.get(b.url + path)
    assert status.headers["Range"] == f"0-{cuts[-2] - 1}"
    # the final chunk and the commit on the replica that did not take the last PATCH
    final = replicas[len(cuts) % 2]
    r = requests.put(final.url + path, params={"digest": digest(data)}, data=data[cuts[-2]:],
                     headers={"Content-Range": f"{cuts[-2]}-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    for server in replicas:
        got = requests.get(f"{server.url}/v2/shared/blobs/{digest(data)}")
        assert got.content == data
    logs = "".join(s.log.read_text() for s in replicas)
    assert "resumed the sha256 state" in logs or "hashing" in logs  # said so in a log line


def test_digest_mismatch_across_replicas_stores_nothing(replicas: list[BerthServer]) -> None:
    a, b = replicas
    data = os.urandom(6 * MiB)
    r = requests.post(f"{a.url}/v2/shared/blobs/uploads/")
    path = r.headers["Location"]
    requests.patch(a.url + path, data=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    wrong = digest(b"not this")
    r = requests.put(b.url + path, params={"digest": wrong})
    assert r.status_code == 400
    assert error_code(r) == "DIGEST_INVALID"
    for server in replicas:
        assert requests.head(f"{server.url}/v2/shared/blobs/{wrong}").status_code == 404
        assert requests.head(f"{server.url}/v2/shared/blobs/{digest(data)}").status_code == 404


def test_tags_pushed_through_both_replicas(replicas: list[BerthServer]) -> None:
    manifests = [image(replicas[0].url, "race", layers=[f"layer {i}".encode()]) for i in range(8)]

    def push(i: int) -> int:
        return put_manifest(replicas[i % 2].url, "race", "latest", manifests[i]).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(push, range(8))) == [201] * 8
    served = {requests.get(f"{s.url}/v2/race/manifests/latest").content for s in replicas}
    assert len(served) == 1  # both replicas agree, on one whole manifest
    (winner,) = served
    assert winner in manifests
    for s in replicas:
        assert requests.get(f"{s.url}/v2/race/tags/list").json()["tags"] == ["latest"]
        assert requests.get(f"{s.url}/v2/_catalog").json()["repositories"] == ["race"]


def test_restart_of_every_replica_keeps_sessions(replicas: list[BerthServer]) -> None:
    a, b = replicas
    data = os.urandom(7 * MiB)
    path = requests.post(f"{a.url}/v2/app/blobs/uploads/").headers["Location"]
    r = requests.patch(a.url + path, data=data[:MiB], headers={"Content-Range": f"0-{MiB - 1}"})
    assert r.status_code == 202, r.text
    for server in replicas:  # no process that saw the session is left
        server.restart()
    for server in replicas:
        assert requests.get(server.url + path).headers["Range"] == f"0-{MiB - 1}"
    r = requests.put(b.url + path, params={"digest": digest(data)}, data=data[MiB:],
                     headers={"Content-Range": f"{MiB}-{len(data) - 1}"})
    assert r.status_code == 201, r.text
    for server in replicas:
        assert requests.get(f"{server.url}/v2/app/blobs/{digest(data)}").content == data


def test_storage_outage_is_503_then_recovers(make_berth: MakeBerth,
                                             moto_s3: S3Endpoint) -> None:
    """S3 goes away in the middle of an upload: a clear 503 with Retry-After (no hang, no
    500); when it is back, the upload continues and the registry is consistent."""
    from moto.server import ThreadedMotoServer

    outage = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    outage.start()
    host, port = outage.get_host_and_port()
    endpoint = S3Endpoint(f"http://{host}:{port}", moto_s3.bucket)  # same (in-process) state
    server = make_berth(s3_config(endpoint))
    data = os.urandom(6 * MiB)
    path = requests.post(f"{server.url}/v2/app/blobs/uploads/").headers["Location"]
    half = 3 * MiB
    assert requests.patch(server.url + path, data=data[:half],
                          headers={"Content-Range": f"0-{half - 1}"}).status_code == 202
    outage.stop()
    r = requests.patch(server.url + path, data=data[half:],
                       headers={"Content-Range": f"{half}-{len(data) - 1}"}, timeout=60)
    assert r.status_code == 503
    assert error_code(r) == "UNAVAILABLE"
    assert int(r.headers["Retry-After"]) > 0
    assert "Traceback" not in r.text
    back = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    back.start()
    try:
        status = requests.get(server.url + path)
        assert status.status_code == 204
        offset = int(status.headers["Range"].split("-")[1]) + 1
        assert offset == half  # the failed chunk left nothing
        r = requests.put(server.url + path, params={"digest": digest(data)}, data=data[offset:],
                         headers={"Content-Range": f"{offset}-{len(data) - 1}"})
        assert r.status_code == 201, r.text
        assert requests.get(f"{server.url}/v2/app/blobs/{digest(data)}").content == data
    finally:
        back.stop()
