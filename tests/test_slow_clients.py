"""Slow clients (issue 9, item 6): half-sent request headers were kept open for over two
minutes, so a few hundred trickling connections could hold the server's file
descriptors. Headers now have `http.readheadertimeout`, bodies `http.bodytimeout`; a
stalled upload frees its connection and stays resumable."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time

import psutil
import pytest
import requests

from .conftest import MakeBerth
from .servers import BerthServer


@pytest.fixture
def server(make_berth: MakeBerth) -> BerthServer:
    return make_berth({"http": {"readheadertimeout": "2s", "bodytimeout": "2s",
                                "idletimeout": "3s"}})


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (reading what it
    sends meanwhile)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def test_trickled_headers_are_cut_off(server: BerthServer) -> None:
    process = psutil.Process(server.proc.pid)  # type: ignore[union-attr]
    baseline = process.num_fds()
    socks = []
    for _ in range(300):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        socks.append(sock)
    started = time.monotonic()
    assert process.num_fds() >= baseline + 200  # (some may still wait to be accepted)
    assert requests.get(f"{server.url}/v2/", timeout=5).status_code == 200  # still serving
    for n in range(4):  # trickling more header bytes does not extend the deadline
        time.sleep(0.5)
        for sock in socks:
            with contextlib.suppress(OSError):  # (closed already)
                sock.sendall(b"X-Slow-%d: y\r\n" % n)
    for sock in socks:
        assert closed_by_server(sock, max(0.1, started + 8 - time.monotonic()))
        sock.close()
    assert process.num_fds() <= baseline + 5
    # a silent connection is closed too, a prompt request on a new one is answered
    with socket.create_connection(("127.0.0.1", server.port)) as silent:
        assert closed_by_server(silent, 5)
    with socket.create_connection(("127.0.0.1", server.port)) as prompt:
        prompt.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert prompt.recv(100).startswith(b"HTTP/1.1 200")


def test_idle_keep_alive_connections_are_closed(server: BerthServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        began = time.monotonic()
        assert closed_by_server(sock, 8)
        assert time.monotonic() - began > 2.5  # after idletimeout, not the header timeout


def test_stalled_upload_frees_its_connection_and_stays_resumable(server: BerthServer,
                                                                 repo: str) -> None:
    r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/")
    location = r.headers["Location"]
    data = bytes(range(256)) * 8192  # 2 MiB
    first = data[: 1 << 20]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Content-Type: application/octet-stream\r\n\r\n"
                     % (location.encode(), len(data)))
        sock.sendall(first)  # then nothing
        # answered after bodytimeout; closed once aiohttp's lingering read (10 s) ends
        sock.settimeout(20)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"BLOB_UPLOAD_INVALID" in answer
    status = requests.get(server.url + location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{len(first) - 1}"
    rest = data[len(first):]
    r = requests.patch(server.url + location, data=rest,
                       headers={"Content-Range": f"{len(first)}-{len(data) - 1}"})
    assert r.status_code == 202, r.text
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert requests.put(server.url + location, params={"digest": digest}).status_code == 201
    assert requests.get(f"{server.url}/v2/{repo}/blobs/{digest}").content == data
