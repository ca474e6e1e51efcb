"""The client library's copy engine against real registries: Berth and the reference."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from client.client import Client
from client.copy import CopyOptions
from client.errors import NotFoundError
from client.events import BlobAction, Events
from client.oci.descriptor import Descriptor
from client.platforms import PlatformMatcher

from .helpers import digest
from .layouts import Layout, build_image, build_index
from .servers import BerthServer, DistributionServer


class Recorder(Events):
    def __init__(self) -> None:
        self.actions: dict[str, BlobAction] = {}
        self.progress: dict[str, int] = {}

    def blob_done(self, desc: Descriptor, action: BlobAction) -> None:
        self.actions[str(desc.digest)] = action

    def blob_progress(self, desc: Descriptor, done: int) -> None:
        self.progress[str(desc.digest)] = done


@pytest.fixture
def layout(tmp_path: Path, request: pytest.FixtureRequest) -> Layout:
    src = Layout.create(tmp_path / "src")
    image = build_image(src, request.node.name)
    src.tag("v1", "application/vnd.oci.image.manifest.v1+json", image.manifest)
    return src


def same_tree(a: Path, b: Path) -> None:
    blobs_a = {p.name: p.read_bytes() for p in (a / "blobs").rglob("*") if p.is_file()}
    blobs_b = {p.name: p.read_bytes() for p in (b / "blobs").rglob("*") if p.is_file()}
    assert blobs_a == blobs_b


async def test_layout_to_berth_and_back(berth: BerthServer, repo: str, layout: Layout,
                                        tmp_path: Path) -> None:
    entry = layout.resolve("v1")
    events = Recorder()
    async with Client() as client:
        result = await client.copy(f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1",
                                   events=events)
        assert result.digest == entry["digest"]
        assert set(events.actions.values()) == {"uploaded"}
        for desc_digest, done in events.progress.items():
            assert done == len(layout.blob(desc_digest))
        again = await client.copy(f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1")
        assert set(again.blobs.values()) == {"exists"}
        out = tmp_path / "out"
        await client.copy(f"{berth.host}/{repo}:v1", f"oci:{out}:v1")
    same_tree(layout.root, out)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == entry["digest"]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v1"
    served = requests.get(f"{berth.url}/v2/{repo}/manifests/v1")
    assert served.content == layout.blob(entry["digest"])


async def test_every_platform_of_an_index(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "amd", "amd64"), build_image(src, "arm", "arm64", "v8")]
    index = build_index(src, images)
    src.tag("multi", "application/vnd.oci.image.index.v1+json", index)
    async with Client() as client:
        result = await client.copy(f"oci:{src.root}:multi", f"{berth.host}/{repo}:multi")
        assert result.digest == digest(index)
        for image in images:
            got = requests.get(f"{berth.url}/v2/{repo}/manifests/{image.digest}")
            assert got.content == image.manifest
        # one platform only: the arm64 image, as its own manifest
        out = tmp_path / "arm"
        picked = await client.copy(
            f"{berth.host}/{repo}:multi", f"oci:{out}:arm",
            CopyOptions(platform=PlatformMatcher.parse("linux/arm64")),
        )
        assert picked.digest == images[1].digest
        with pytest.raises(NotFoundError, match="no image for linux/s390x"):
            await client.copy(f"{berth.host}/{repo}:multi", f"oci:{tmp_path / 'none'}:x",
                              CopyOptions(platform=PlatformMatcher.parse("linux/s390x")))


async def test_within_a_registry_mounts(berth: BerthServer, repo: str, layout: Layout) -> None:
    async with Client() as client:
        await client.copy(f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1")
        result = await client.copy(f"{berth.host}/{repo}:v1", f"{berth.host}/{repo}-copy:v1")
    assert set(result.blobs.values()) == {"mounted"}
    assert requests.get(f"{berth.url}/v2/{repo}-copy/manifests/v1").content == \
        requests.get(f"{berth.url}/v2/{repo}/manifests/v1").content


@pytest.mark.interop
async def test_through_the_reference_registry(
    berth: BerthServer, distribution: DistributionServer, repo: str, tmp_path: Path
) -> None:
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "a", "amd64"), build_image(src, "b", "arm64", "v8")]
    index = build_index(src, images)
    src.tag("multi", "application/vnd.oci.image.index.v1+json", index)
    async with Client() as client:
        await client.copy(f"oci:{src.root}:multi", f"{berth.host}/{repo}:multi")
        first = await client.copy(f"{berth.host}/{repo}:multi",
                                  f"{distribution.host}/{repo}:multi")
        back = await client.copy(f"{distribution.host}/{repo}:multi",
                                 f"{berth.host}/{repo}-back:multi")
        out = tmp_path / "out"
        await client.copy(f"{distribution.host}/{repo}:multi", f"oci:{out}:multi")
    assert first.digest == back.digest == digest(index)
    same_tree(src.root, out)


async def test_missing_source(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    async with Client() as client:
        with pytest.raises(NotFoundError):
            await client.copy(f"{berth.host}/{repo}:nope", f"oci:{tmp_path / 'x'}")
        with pytest.raises(NotFoundError, match="not an OCI image layout"):
            await client.copy(f"oci:{tmp_path / 'empty'}:v1", f"{berth.host}/{repo}:v1")
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
