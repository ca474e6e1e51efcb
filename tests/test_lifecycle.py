"""Clean shutdown: SIGTERM/SIGINT end the process with status 0, letting requests finish."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from .conftest import MakeBerth


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(make_berth: MakeBerth, sig: int) -> None:
    server = make_berth()
    assert server.stop(sig) == 0
    assert "Traceback" not in server.log.read_text()


def test_in_flight_upload_finishes_during_shutdown(make_berth: MakeBerth) -> None:
    server = make_berth()
    parts = [bytes([i]) * 256 * 1024 for i in range(8)]
    d = "sha256:" + hashlib.sha256(b"".join(parts)).hexdigest()
    started = threading.Event()

    def slow_body() -> Iterator[bytes]:
        for part in parts:
            yield part
            started.set()
            time.sleep(0.1)

    result: dict[str, int] = {}

    def push() -> None:
        r = requests.post(f"{server.url}/v2/shutdown/blobs/uploads/", params={"digest": d},
                          data=slow_body())
        result["status"] = r.status_code

    thread = threading.Thread(target=push)
    thread.start()
    assert started.wait(10)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    assert result.get("status") == 201
    assert server.stop() == 0
    server.start()
    r = requests.get(f"{server.url}/v2/shutdown/blobs/{d}")
    assert r.status_code == 200
    assert r.content == b"".join(parts)


def test_blob_download_in_flight_finishes_and_is_counted(make_berth: MakeBerth) -> None:
    """Issue 9, item 14: shutdown said "0 requests in flight" while a GET was sending a blob
    (the body goes out after the handler returns) and could cut it off."""
    server = make_berth()
    blob = bytes(range(256)) * (256 * 1024)  # 64 MiB
    d = "sha256:" + hashlib.sha256(blob).hexdigest()
    r = requests.post(f"{server.url}/v2/shutdown/blobs/uploads/", params={"digest": d},
                      data=blob)
    assert r.status_code == 201
    got = bytearray()
    reading = threading.Event()

    def slow_download() -> None:
        with requests.get(f"{server.url}/v2/shutdown/blobs/{d}", stream=True) as response:
            for chunk in response.iter_content(1 << 20):
                got.extend(chunk)
                reading.set()
                time.sleep(0.02)  # ~3 s for the blob: the server waits on the socket

    thread = threading.Thread(target=slow_download)
    thread.start()
    assert reading.wait(10)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    assert bytes(got) == blob
    assert server.proc.wait(30) == 0  # exits by itself once the download is out
    assert server.stop() == 0
    log = server.log.read_text()
    assert "shutting down: 1 requests in flight" in log, log
    # the access log has the bytes sendfile sent (the body's: headers not counted)
    line = next(x for x in log.splitlines() if f"GET /v2/shutdown/blobs/{d}" in x)
    assert int(line.split('" ', 1)[1].split()[1]) == len(blob)
