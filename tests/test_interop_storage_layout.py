"""Berth's storage layout is the CNCF distribution registry's: a root that Debian's
`docker-registry` wrote is served by Berth as it is (an operator can switch in place)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from client.client import Client

from .conftest import MakeBerth
from .helpers import digest
from .layouts import Layout, build_image, build_index
from .servers import DistributionServer

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(DistributionServer.binary is None,
                       reason="docker-registry is not installed (CI installs it)"),
]


async def test_berth_serves_a_distribution_root(make_berth: MakeBerth, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "d1", "amd64"), build_image(src, "d2", "arm64", "v8")]
    index = build_index(src, images)
    src.tag("multi", "application/vnd.oci.image.index.v1+json", index)
    reference = DistributionServer(tmp_path).start()
    try:
        async with Client() as client:
            await client.copy(f"oci:{src.root}:multi", f"{reference.host}/team/app:multi")
    finally:
        reference.stop()

    root = tmp_path / "distribution-data"
    berth = make_berth({"storage": {"filesystem": {"rootdirectory": str(root)}}})
    r = requests.get(f"{berth.url}/v2/team/app/manifests/multi")
    assert r.status_code == 200
    assert r.content == index
    assert r.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    assert requests.get(f"{berth.url}/v2/_catalog").json() == {"repositories": ["team/app"]}
    assert requests.get(f"{berth.url}/v2/team/app/tags/list").json()["tags"] == ["multi"]
    for image in images:
        for blob in (image.config, *image.layers):
            got = requests.get(f"{berth.url}/v2/team/app/blobs/{digest(blob)}")
            assert got.content == blob
    # and Berth keeps writing it in the same layout: a new tag lands where distribution's is
    child = json.loads(index)["manifests"][0]
    requests.put(f"{berth.url}/v2/team/app/manifests/v2",
                 data=images[0].manifest, headers={"Content-Type": child["mediaType"]})
    link = root / "docker/registry/v2/repositories/team/app/_manifests/tags/v2/current/link"
    assert link.read_text() == images[0].digest
