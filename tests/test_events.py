"""Issue 12: webhook notifications with distribution's keys and envelope, received by a
real HTTP server on loopback: what arrives, retries after failures, order, and that a
dead endpoint never slows a push."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from .conftest import MakeBerth
from .helpers import OCI_MANIFEST, digest, image, push_blob, put_manifest
from .servers import BerthServer

MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"


class Receiver:
    """Records each envelope; can fail the first `failures` deliveries, or hold every
    delivery until `release` is set."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.failures = 0
        self.release = threading.Event()
        self.release.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.release.wait(60)
                with receiver.arrived:
                    if receiver.failures > 0:
                        receiver.failures -= 1
                        self.send_response(500)
                        self.end_headers()
                        return
                    receiver.envelopes.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def events(self) -> list[dict[str, Any]]:
        return [e for envelope in self.envelopes for e in envelope["events"]]

    def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.events) >= count, timeout), \
                self.events
        return self.events

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def with_endpoint(make_berth: MakeBerth, receiver: Receiver, **endpoint: Any) -> BerthServer:
    return make_berth({"notifications": {"endpoints": [{
        "name": "hook", "url": receiver.url, "timeout": "30s", "backoff": "0.2s",
        "threshold": 2, "headers": {"Authorization": ["Bearer s3cret"]}, **endpoint}]}})


def test_events_for_push_pull_mount_delete(make_berth: MakeBerth, receiver: Receiver) -> None:
    server = with_endpoint(make_berth, receiver)
    url = server.url
    layer = b"an evented layer"
    manifest = image(url, "team/app", layers=[layer])  # pushes config and layer
    assert put_manifest(url, "team/app", "v1", manifest,
                        headers={"X-Request-Id": "push-1"}).status_code == 201
    assert requests.get(f"{url}/v2/team/app/manifests/v1",
                        headers={"Accept": OCI_MANIFEST}).content == manifest
    assert requests.get(f"{url}/v2/team/app/blobs/{digest(layer)}").content == layer
    assert requests.post(f"{url}/v2/team/copy/blobs/uploads/",
                         params={"mount": digest(layer), "from": "team/app"}).status_code == 201
    assert requests.delete(f"{url}/v2/team/app/manifests/{digest(manifest)}").status_code == 202

    events = receiver.wait_for(7)
    assert [(e["action"], e["target"].get("tag")) for e in events] == [
        ("push", None), ("push", None), ("push", "v1"), ("pull", "v1"), ("pull", None),
        ("mount", None), ("delete", None)]
    assert all(h["Content-Type"] == MEDIA_TYPE for h in receiver.headers)
    assert all(h["Authorization"] == "Bearer s3cret" for h in receiver.headers)
    pushed = events[2]
    assert pushed["target"] == {
        "mediaType": OCI_MANIFEST, "digest": digest(manifest), "size": len(manifest),
        "length": len(manifest), "repository": "team/app", "tag": "v1",
        "url": f"{url}/v2/team/app/manifests/{digest(manifest)}"}
    assert pushed["request"]["id"] == "push-1" and pushed["request"]["method"] == "PUT"
    assert pushed["request"]["addr"] == "127.0.0.1"
    assert pushed["source"]["instanceID"] and pushed["timestamp"] and pushed["id"]
    assert len({e["id"] for e in events}) == 7
    assert events[4]["target"]["size"] == len(layer)
    assert events[5]["target"]["fromRepository"] == "team/app"
    assert events[5]["target"]["repository"] == "team/copy"
    assert events[6]["target"] == {"digest": digest(manifest), "repository": "team/app"}


def test_failed_deliveries_are_retried_in_order(make_berth: MakeBerth,
                                                receiver: Receiver) -> None:
    receiver.failures = 3
    server = with_endpoint(make_berth, receiver)
    pushed = [push_blob(server.url, "app", f"blob {i}".encode()) for i in range(12)]
    events = receiver.wait_for(12)
    assert [e["target"]["digest"] for e in events] == pushed  # each once, in order
    assert receiver.failures == 0  # the three failures happened


def test_a_dead_endpoint_never_slows_a_push(make_berth: MakeBerth, receiver: Receiver) -> None:
    """The endpoint holds every delivery unanswered: pushes complete regardless, and the
    events arrive once it answers again."""
    server = with_endpoint(make_berth, receiver)
    receiver.release.clear()
    pushed = [push_blob(server.url, "app", f"held {i}".encode()) for i in range(20)]
    assert not receiver.release.is_set() and receiver.events == []  # all acknowledged
    receiver.release.set()
    events = receiver.wait_for(20)
    assert [e["target"]["digest"] for e in events] == pushed


def test_ignored_actions_and_media_types(make_berth: MakeBerth, receiver: Receiver) -> None:
    server = with_endpoint(make_berth, receiver, ignore={"actions": ["pull"]},
                           ignoredmediatypes=["application/octet-stream"])
    manifest = image(server.url, "app", layers=[b"quiet"])
    put_manifest(server.url, "app", "v1", manifest)
    requests.get(f"{server.url}/v2/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    push_blob(server.url, "other", b"a marker, not ignored?")  # (a blob: ignored too)
    put_manifest(server.url, "app", "v2", manifest)  # the last event: it comes after
    events = receiver.wait_for(2)
    assert [(e["action"], e["target"]["mediaType"], e["target"]["tag"]) for e in events] == [
        ("push", OCI_MANIFEST, "v1"), ("push", OCI_MANIFEST, "v2")]
    assert len(receiver.events) == 2


def test_bad_endpoint_settings_are_refused() -> None:
    from registry.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="not an http"):
        load_config(None, {"notifications": {"endpoints": [{"name": "x", "url": "ftp://h"}]}},
                    environ={})
    with pytest.raises(ConfigError, match="name"):
        load_config(None, {"notifications": {"endpoints": [{"url": "http://h"}]}}, environ={})
