"""Issue 12: JSON logs (one object per line) with log.fields, a request id through every
line of a request and into its response, and the access log's fields — the client
behind a trusted proxy included."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import requests

from .conftest import MakeBerth
from .helpers import digest, image, push_blob, put_manifest


def entries(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))  # every JSON line parses whole
    return found


def wait_for_entry(server: Any, match: Any, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for entry in entries(server.log.read_text()):
            if match(entry):
                return entry
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.1)


def test_json_access_log_and_request_ids(make_berth: MakeBerth) -> None:
    server = make_berth({"log": {"formatter": "json", "fields": {"service": "registry"}},
                         "http": {"trustedproxies": ["127.0.0.0/8"]}})
    layer = b"logged layer"
    d = push_blob(server.url, "team/app", layer)
    response = requests.get(f"{server.url}/v2/team/app/blobs/{d}",
                            headers={"X-Request-Id": "trace-42",
                                     "X-Forwarded-For": "203.0.113.7, 127.0.0.9"})
    assert response.content == layer and response.headers["X-Request-Id"] == "trace-42"
    entry = wait_for_entry(server, lambda e: e.get("request_id") == "trace-42")
    assert entry["logger"] == "registry.access" and entry["service"] == "registry"
    assert {k: entry[k] for k in ("method", "route", "repository", "status", "bytes",
                                  "client", "peer", "user")} == {
        "method": "GET", "route": "blob", "repository": "team/app", "status": 200,
        "bytes": len(layer), "client": "203.0.113.7", "peer": "127.0.0.1", "user": None}
    assert entry["duration"] >= 0

    # an id is made when none (or an unusable one) is sent, and errors carry it too
    missing = requests.get(f"{server.url}/v2/team/app/manifests/nope",
                           headers={"X-Request-Id": "bad id with spaces"})
    assert missing.status_code == 404
    made = missing.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert wait_for_entry(server, lambda e: e.get("request_id") == made)["status"] == 404


def test_every_line_of_a_request_carries_its_id(make_berth: MakeBerth) -> None:
    """A line logged while handling a request (here: a manifest push refused for taking
    longer than half a tiny grace period) has the request's id, in text logs too."""
    server = make_berth({"berth": {"gc": {"grace": "0.002s"}}, "log": {"fields": {"dc": "a"}}})
    manifest = image(server.url, "app", layers=[b"slow"])
    refused = put_manifest(server.url, "app", "v1", manifest,
                           headers={"X-Request-Id": "push-7"})
    assert refused.status_code == 503 and refused.headers["X-Request-Id"] == "push-7"
    deadline = time.monotonic() + 10
    while True:
        lines = [x for x in server.log.read_text().splitlines() if "request_id=push-7" in x]
        if len(lines) >= 2:
            break
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.1)
    assert any("ERROR" in x and "push it again" in x and " dc=a " in x for x in lines)
    assert any("PUT /v2/app/manifests/v1" in x and '" 503 ' in x for x in lines)


def test_untrusted_peers_cannot_name_the_client(make_berth: MakeBerth) -> None:
    server = make_berth({"log": {"formatter": "json"}})
    requests.get(f"{server.url}/v2/", headers={"X-Forwarded-For": "198.51.100.1",
                                                "X-Request-Id": "no-proxy"})
    entry = wait_for_entry(server, lambda e: e.get("request_id") == "no-proxy")
    assert entry["client"] == "127.0.0.1"
    assert digest(b"") not in json.dumps(entry)
