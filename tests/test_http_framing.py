"""Requests aiohttp's HTTP parser refuses (issue 9, item 5): they were answered in plain
text; now with the spec's JSON error body, the connection closed, nothing echoed back."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest

from .servers import BerthServer

UPLOAD = b"POST /v2/t/framing/blobs/uploads/ HTTP/1.1\r\nHost: x\r\n"
CASES = {
    "content-length-not-a-number": UPLOAD + b"Content-Length: abc\r\n\r\n",
    "two-content-lengths": UPLOAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "content-length-with-chunked": UPLOAD + b"Content-Length: 3\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "bad-chunk-size": UPLOAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "oversize-header": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    "oversize-url": b"GET /v2/" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-method": b"G@T /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-version": b"GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n",
    "bad-header-name": b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    "tls-to-plain-port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
}


def exchange(server: BerthServer, raw: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes: status line, headers, body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # refused before all was sent: answered still
            sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {k.decode().lower(): v.decode().strip()
               for k, _, v in (line.partition(b":") for line in lines)}
    return status, headers, body


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_requests_get_json_errors(berth: BerthServer, case: str) -> None:
    status, headers, body = exchange(berth, CASES[case])
    assert status.split()[1] == b"400", status
    assert headers["content-type"].startswith("application/json"), headers
    error = json.loads(body)["errors"][0]
    assert error["code"] == "UNSUPPORTED"
    assert error["message"].startswith("malformed HTTP request: ")
    assert len(error["message"]) < 200  # the request is not echoed back
    assert b"aaaa" not in body
    status, _, body = exchange(berth, b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status.split()[1] == b"200" and json.loads(body) == {}
