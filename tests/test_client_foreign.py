"""Windows-style images with foreign base layers: keep, include, convert, air-gapped pull."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from client.client import Client
from client.copy import CopyOptions
from client.errors import DigestMismatch, NetworkError, RegistryResponseError

from .helpers import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    descriptor,
    digest,
)
from .layouts import Layout
from .servers import BerthServer
from .urlserver import UrlServer

BASE_LAYER = gzip.compress(os.urandom(200_000), mtime=0)  # stands in for servercore


@pytest.fixture
def url_server() -> Iterator[UrlServer]:
    server = UrlServer({"base.tar.gz": BASE_LAYER})
    yield server
    server.stop()


def windows_layout(root: Path, urls: list[str]) -> tuple[Layout, bytes]:
    """A Windows image whose foreign base layer is NOT in the layout, only at `urls`."""
    layout = Layout.create(root)
    app_layer = gzip.compress(b"application files", mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "windows",
                         "os.version": "10.0.20348.1787",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layout.add_blob(app_layer)
    layout.add_blob(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_FOREIGN, BASE_LAYER, urls=urls),
                   descriptor(DOCKER_LAYER, app_layer)],
    }, indent=3).encode()
    layout.tag("ltsc2022", DOCKER_MANIFEST, manifest)
    return layout, manifest


async def test_keep_include_convert_and_airgapped_pull(
    berth: BerthServer, repo: str, url_server: UrlServer, tmp_path: Path
) -> None:
    urls = [f"{url_server.url}/missing", f"{url_server.url}/fwlink/base.tar.gz"]
    layout, manifest = windows_layout(tmp_path / "win", urls)
    src = f"oci:{layout.root}:ltsc2022"
    async with Client() as client:
        # keep (the default): the foreign layer is not uploaded, the manifest is unchanged
        kept = await client.copy(src, f"{berth.host}/{repo}:keep")
        assert kept.blobs[digest(BASE_LAYER)] == "foreign"
        assert kept.digest == digest(manifest)
        assert url_server.requests == []
        assert requests.head(f"{berth.url}/v2/{repo}/blobs/{digest(BASE_LAYER)}").status_code \
            == 404

        # include: fetched from its urls (after a 404 and a redirect), uploaded unchanged
        included = await client.copy(src, f"{berth.host}/{repo}-airgap:v1",
                                     CopyOptions(foreign="include"))
        assert included.blobs[digest(BASE_LAYER)] == "uploaded"
        assert included.digest == digest(manifest)  # same descriptor, urls and media type
        served = requests.get(f"{berth.url}/v2/{repo}-airgap/blobs/{digest(BASE_LAYER)}")
        assert served.content == BASE_LAYER
        assert all("Authorization" not in h for h in url_server.requests)

        # convert: an ordinary layer (same bytes and digest), no urls, a new manifest
        converted = await client.copy(src, f"{berth.host}/{repo}-plain:v1",
                                      CopyOptions(foreign="convert"))
        assert converted.digest != digest(manifest)
        doc = requests.get(f"{berth.url}/v2/{repo}-plain/manifests/v1").json()
        base = doc["layers"][0]
        assert base["mediaType"] == DOCKER_LAYER
        assert base["digest"] == digest(BASE_LAYER)
        assert "urls" not in base

        # the urls host goes away: the air-gapped copy still pulls completely
        url_server.stop()
        out = tmp_path / "pulled"
        pulled = await client.copy(f"{berth.host}/{repo}-airgap:v1", f"oci:{out}:v1",
                                   CopyOptions(foreign="include"))
        assert pulled.digest == digest(manifest)
        assert (out / "blobs" / "sha256" / digest(BASE_LAYER).split(":")[1]).read_bytes() \
            == BASE_LAYER
        # while from the registry that only references it, include fails clearly
        with pytest.raises(NetworkError, match="could not be fetched"):
            await client.copy(f"{berth.host}/{repo}:keep", f"oci:{tmp_path / 'x'}:v1",
                              CopyOptions(foreign="include"))


async def test_foreign_content_is_verified(berth: BerthServer, repo: str,
                                           url_server: UrlServer, tmp_path: Path) -> None:
    layout, _ = windows_layout(tmp_path / "win", [f"{url_server.url}/fwlink/base.tar.gz"])
    index = layout.index()
    doc = json.loads(layout.blob(index["manifests"][0]["digest"]))
    doc["layers"][0]["digest"] = digest(b"something else")  # the url serves other bytes
    data = json.dumps(doc).encode()
    layout.tag("bad", DOCKER_MANIFEST, data)
    async with Client() as client:
        with pytest.raises((DigestMismatch, RegistryResponseError),
                           match=r"(does not match|DIGEST_INVALID)"):
            await client.copy(f"oci:{layout.root}:bad", f"{berth.host}/{repo}:bad",
                              CopyOptions(foreign="include"))
    r = requests.head(f"{berth.url}/v2/{repo}/blobs/{digest(b'something else')}")
    assert r.status_code == 404
