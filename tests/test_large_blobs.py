"""Heavy scenarios: a 1 GiB streamed push and pull with the server's memory watched."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import psutil
import pytest
import requests

from .conftest import MakeBerth

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
