"""Heavy scenarios: a 1 GiB streamed push and pull with the server's memory watched."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import psutil
import pytest
import requests

from .conftest import MakeBerth, S3Endpoint, s3_config

GiB = 1024**3
CHUNK = 4 * 1024 * 1024


def pattern_chunks(total: int) -> Iterator[bytes]:
    block = hashlib.sha512(b"berth").digest() * (CHUNK // 64)
    for offset in range(0, total, CHUNK):
        # vary every chunk so a dedupe or caching bug cannot go unnoticed
        yield offset.to_bytes(8, "big") + block[8 : min(CHUNK, total - offset)]


class PeakRSS:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
def test_streamed_1gib_push_and_pull_in_bounded_memory(make_berth: MakeBerth) -> None:
    server = make_berth()
    assert server.proc is not None
    h = hashlib.sha256()
    for chunk in pattern_chunks(GiB):
        h.update(chunk)
    d = f"sha256:{h.hexdigest()}"
    with PeakRSS(server.proc.pid) as rss:
        r = requests.post(f"{server.url}/v2/big/blobs/uploads/")
        location = server.url + r.headers["Location"]
        r = requests.patch(location, data=pattern_chunks(GiB))  # streamed, no Content-Length
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{GiB - 1}"
        r = requests.put(server.url + r.headers["Location"], params={"digest": d})
        assert r.status_code == 201, r.text
        with requests.get(f"{server.url}/v2/big/blobs/{d}", stream=True) as pull:
            assert pull.headers["Content-Length"] == str(GiB)
            check = hashlib.sha256()
            for part in pull.iter_content(CHUNK):
                check.update(part)
        assert f"sha256:{check.hexdigest()}" == d
    print(f"peak server RSS {rss.peak / 2**20:.0f} MiB")
    assert rss.peak < 150 * 1024 * 1024, f"peak RSS {rss.peak / 2**20:.0f} MiB"


@pytest.mark.slow
@pytest.mark.rgw
def test_multipart_push_of_hundreds_of_mib_on_rgw(make_berth: MakeBerth,
                                                  rgw_s3: S3Endpoint) -> None:
    """A streamed PATCH and then chunked PATCHes of odd sizes into one S3 multipart
    upload (5 MiB parts: some 70 of them), on a real RGW, with the server's memory
    watched; the blob comes back whole."""
    config = s3_config(rgw_s3)
    config["storage"]["s3"]["chunksize"] = 5 * 1024 * 1024
    server = make_berth(config)
    assert server.proc is not None
    total, first = 350 * 1024 * 1024, 200 * 1024 * 1024
    data_hash = hashlib.sha256()
    for chunk in pattern_chunks(total):
        data_hash.update(chunk)
    d = f"sha256:{data_hash.hexdigest()}"
    stream = pattern_chunks(total)
    with PeakRSS(server.proc.pid) as rss:
        location = server.url + requests.post(
            f"{server.url}/v2/mp/blobs/uploads/").headers["Location"]
        head = (next(stream) for _ in range(first // CHUNK))
        r = requests.patch(location, data=head)  # streamed, no Content-Length
        assert r.status_code == 202, r.text
        offset = first
        rest = b"".join(stream)  # the remaining 150 MiB, cut at odd places
        for cut in (7 * 1024 * 1024 + 13, 33 * 1024 * 1024, 3, 61 * 1024 * 1024):
            piece = rest[offset - first : offset - first + cut]
            r = requests.patch(server.url + r.headers["Location"], data=piece, headers={
                "Content-Range": f"{offset}-{offset + len(piece) - 1}"})
            assert r.status_code == 202, r.text
            offset += len(piece)
        r = requests.put(server.url + r.headers["Location"], params={"digest": d},
                         data=rest[offset - first :])
        assert r.status_code == 201, r.text
        del rest
    # about 120 MiB seen: the interpreter, boto3 and a part filling while one uploads
    assert rss.peak < 160 * 1024 * 1024, f"server peak RSS {rss.peak / 2**20:.0f} MiB"
    pulled = hashlib.sha256()
    with requests.get(f"{server.url}/v2/mp/blobs/{d}", stream=True) as response:
        assert response.status_code == 200
        for chunk in response.iter_content(CHUNK):
            pulled.update(chunk)
    assert f"sha256:{pulled.hexdigest()}" == d
