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
