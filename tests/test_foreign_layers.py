"""Windows-shaped images: foreign / non-distributable layers that live at their `urls`."""

from __future__ import annotations

import json
import os

import pytest
import requests

from .conftest import MakeBerth
from .drivers import berth_on_every_driver  # noqa: F401 - the `berth` fixture
from .helpers import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_MANIFEST,
    descriptor,
    digest,
    error_code,
    push_blob,
    put_manifest,
)
from .servers import BerthServer

BASE_URL = "https://mcr.microsoft.com/v2/windows/servercore/blobs/"
WINDOWS_CONFIG = json.dumps({
    "architecture": "amd64", "os": "windows", "os.version": "10.0.20348.1787",
    "rootfs": {"type": "layers", "diff_ids": []},
}).encode()


def windows_manifest(base: str, repo: str, foreign_type: str = DOCKER_FOREIGN,
                     urls: list[str] | None = None, docker: bool = True) -> bytes:
    foreign_blob = b"the servercore base layer, never uploaded"
    app_layer = os.urandom(512)
    push_blob(base, repo, WINDOWS_CONFIG)
    push_blob(base, repo, app_layer)
    foreign = descriptor(foreign_type, foreign_blob)
    if urls is None:
        urls = [BASE_URL + digest(foreign_blob)]
    if urls:
        foreign["urls"] = urls
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, WINDOWS_CONFIG),
        "layers": [foreign, descriptor(DOCKER_LAYER, app_layer)],
    }).encode()


@pytest.mark.parametrize(("foreign_type", "docker"), [
    (DOCKER_FOREIGN, True),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar", False),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", False),
    ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", False),
])
def test_foreign_layer_with_urls_accepted(berth: BerthServer, repo: str,
                                          foreign_type: str, docker: bool) -> None:
    data = windows_manifest(berth.url, repo, foreign_type, docker=docker)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    r = put_manifest(berth.url, repo, "ltsc2022", data, media_type)
    assert r.status_code == 201, r.text
    g = requests.get(f"{berth.url}/v2/{repo}/manifests/ltsc2022")
    assert g.content == data
    foreign = g.json()["layers"][0]
    assert foreign["urls"][0].startswith(BASE_URL)
    # the registry does not pretend to hold the foreign blob
    r = requests.head(f"{berth.url}/v2/{repo}/blobs/{foreign['digest']}")
    assert r.status_code == 404


def test_foreign_layer_without_urls_must_be_present(berth: BerthServer, repo: str) -> None:
    data = windows_manifest(berth.url, repo, urls=[])
    r = put_manifest(berth.url, repo, "v1", data, DOCKER_MANIFEST)
    assert r.status_code == 400
    assert error_code(r) == "MANIFEST_BLOB_UNKNOWN"


def test_foreign_layer_pushed_like_any_blob(berth: BerthServer, repo: str) -> None:
    data = windows_manifest(berth.url, repo)
    foreign = json.loads(data)["layers"][0]
    push_blob(berth.url, repo, b"the servercore base layer, never uploaded")
    assert put_manifest(berth.url, repo, "airgap", data, DOCKER_MANIFEST).status_code == 201
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{foreign['digest']}")
    assert r.status_code == 200
    assert digest(r.content) == foreign["digest"]


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://example.com/layer", "only http and https"),
    ("https://example.com/layer#frag", "fragment"),
    ("not a url", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
])
def test_bad_urls_refused(berth: BerthServer, repo: str, url: str, reason: str) -> None:
    data = windows_manifest(berth.url, repo, urls=[url])
    r = put_manifest(berth.url, repo, "v1", data, DOCKER_MANIFEST)
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["code"] == "MANIFEST_INVALID"
    assert error["detail"]["url"] == url
    assert reason in error["detail"]["reason"]


def test_url_policy(make_berth: MakeBerth, repo: str) -> None:
    server = make_berth({"validation": {"manifests": {"urls": {
        "allow": [r"^https://mcr\.microsoft\.com/"],
        "deny": [r"^https://mcr\.microsoft\.com/v2/blocked/"],
    }}}})
    ok = windows_manifest(server.url, repo)
    assert put_manifest(server.url, repo, "ok", ok, DOCKER_MANIFEST).status_code == 201
    other = windows_manifest(server.url, repo, urls=["https://example.com/layer.tar.gz"])
    r = put_manifest(server.url, repo, "other", other, DOCKER_MANIFEST)
    assert r.status_code == 400
    assert r.json()["errors"][0]["detail"]["url"] == "https://example.com/layer.tar.gz"
    blocked_url = "https://mcr.microsoft.com/v2/blocked/blobs/x"
    denied = windows_manifest(server.url, repo, urls=[BASE_URL + "x", blocked_url])
    r = put_manifest(server.url, repo, "denied", denied, DOCKER_MANIFEST)
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["code"] == "MANIFEST_INVALID"
    assert error["detail"] == {"url": blocked_url,
                               "reason": "URL matches validation.manifests.urls.deny"}
    assert requests.get(f"{server.url}/v2/{repo}/manifests/denied").status_code == 404
