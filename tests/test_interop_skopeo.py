"""Interoperability with skopeo, a real third-party registry client.

Images are built here as plain OCI image layouts (standard library only, not the Berth
client), copied into Berth with skopeo, and copied back out (directly and through the
reference registry); manifest and blob digests must survive every hop unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from .helpers import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    digest,
    error_code,
)
from .layouts import Image, Layout, build_image, build_index
from .servers import BerthServer, DistributionServer
from .skopeo import Skopeo

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("skopeo") is None,
                       reason="skopeo is not installed (CI installs it)"),
]

REF_NAME = "org.opencontainers.image.ref.name"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def docker_ref(server: BerthServer | DistributionServer, repo: str, reference: str) -> str:
    sep = "@" if ":" in reference else ":"
    return f"docker://{server.host}/{repo}{sep}{reference}"


def get_manifest(server: BerthServer | DistributionServer, repo: str,
                 reference: str) -> requests.Response:
    return requests.get(f"{server.url}/v2/{repo}/manifests/{reference}",
                        headers={"Accept": ACCEPT}, timeout=10)


def get_blob(server: BerthServer, repo: str, d: str) -> bytes:
    r = requests.get(f"{server.url}/v2/{repo}/blobs/{d}", timeout=10)
    assert r.status_code == 200, (d, r.status_code, r.text)
    assert r.headers["Docker-Content-Digest"] == d
    return r.content


def assert_served(server: BerthServer, repo: str, reference: str, data: bytes,
                  media_type: str) -> None:
    """The registry serves exactly these manifest bytes, with their digest and type."""
    r = get_manifest(server, repo, reference)
    assert r.status_code == 200, (reference, r.status_code, r.text)
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest(data)
    assert r.headers["Content-Type"] == media_type


@pytest.fixture
def source(tmp_path: Path, repo: str) -> tuple[Layout, Image]:
    """A layout with one three-layer image tagged `v1`, its content unique to the test (so
    skopeo, whose blob cache outlives a test, really uploads rather than mounts)."""
    layout = Layout.create(tmp_path / "src")
    image = build_image(layout, repo)
    layout.tag("v1", OCI_MANIFEST, image.manifest)
    return layout, image


def push(skopeo: Skopeo, layout: Layout, server: BerthServer, repo: str,
         tag: str = "v1") -> None:
    skopeo.copy(f"oci:{layout.root}:v1", docker_ref(server, repo, tag), "--preserve-digests")


# -- tests -------------------------------------------------------------------------------


def test_oci_layout_round_trip_preserves_digests(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image], tmp_path: Path
) -> None:
    layout, image = source
    source_manifest = layout.blob(layout.resolve("v1")["digest"])
    assert source_manifest == image.manifest
    push(skopeo, layout, berth, repo)

    assert_served(berth, repo, "v1", source_manifest, OCI_MANIFEST)
    assert_served(berth, repo, image.digest, image.manifest, OCI_MANIFEST)
    for d, data in image.blobs.items():
        assert get_blob(berth, repo, d) == data

    out = tmp_path / "out"
    skopeo.copy(docker_ref(berth, repo, "v1"), f"oci:{out}:v1", "--preserve-digests")
    pulled = Layout(out)
    assert pulled.resolve("v1")["digest"] == image.digest
    assert pulled.blob(image.digest) == image.manifest
    assert pulled.blobs() == {image.digest: image.manifest, **image.blobs}


def test_inspect_reports_digest_layers_and_raw_bytes(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image]
) -> None:
    layout, image = source
    push(skopeo, layout, berth, repo)
    ref = docker_ref(berth, repo, "v1")

    info = json.loads(skopeo.inspect(ref))
    assert info["Name"] == f"{berth.host}/{repo}"
    assert info["Digest"] == image.digest
    assert info["Layers"] == image.layer_digests
    assert info["RepoTags"] == ["v1"]
    assert (info["Architecture"], info["Os"]) == ("amd64", "linux")
    assert info["Labels"] == {"test": repo}
    assert info["Created"] == "2024-01-01T00:00:00Z"

    assert skopeo.inspect(ref, "--raw") == image.manifest
    assert skopeo.inspect(docker_ref(berth, repo, image.digest), "--raw") == image.manifest
    assert skopeo.inspect(ref, "--config", "--raw") == image.config


def test_list_tags_lists_every_pushed_tag(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image]
) -> None:
    layout, image = source
    push(skopeo, layout, berth, repo, "v1")
    push(skopeo, layout, berth, repo, "latest")

    out = skopeo.run("list-tags", "--retry-times", "0", "--tls-verify=false",
                     f"docker://{berth.host}/{repo}").stdout
    listing = json.loads(out)
    assert listing["Repository"] == f"{berth.host}/{repo}"
    assert sorted(listing["Tags"]) == ["latest", "v1"]
    assert_served(berth, repo, "latest", image.manifest, OCI_MANIFEST)


def test_delete_removes_the_manifest(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image]
) -> None:
    layout, image = source
    push(skopeo, layout, berth, repo)
    assert get_manifest(berth, repo, image.digest).status_code == 200

    skopeo.run("delete", "--retry-times", "0", "--tls-verify=false",
               docker_ref(berth, repo, "v1"))

    for reference in (image.digest, "v1"):
        r = get_manifest(berth, repo, reference)
        assert r.status_code == 404, (reference, r.status_code, r.text)
        assert error_code(r) == "MANIFEST_UNKNOWN"
    gone = skopeo.run("inspect", "--retry-times", "0", "--tls-verify=false",
                      docker_ref(berth, repo, image.digest), check=False)
    assert gone.returncode != 0


def test_docker_schema2_round_trip(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image], tmp_path: Path
) -> None:
    layout, image = source
    digest_file = tmp_path / "pushed.digest"
    skopeo.copy(f"oci:{layout.root}:v1", docker_ref(berth, repo, "v1"),
                "--format", "v2s2", "--digestfile", str(digest_file))
    pushed = digest_file.read_text().strip()

    r = get_manifest(berth, repo, "v1")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    assert r.headers["Docker-Content-Digest"] == digest(r.content) == pushed
    manifest = json.loads(r.content)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert [(layer["mediaType"], layer["digest"]) for layer in manifest["layers"]] == [
        (DOCKER_LAYER, d) for d in image.layer_digests  # the gzip blobs were reused as-is
    ]
    assert skopeo.inspect(docker_ref(berth, repo, "v1"), "--raw") == r.content

    # Out to a `dir:` copy (which keeps the schema 2 manifest as it is) and into another
    # repository: the same bytes, the same digest.
    out = tmp_path / "dir"
    skopeo.copy(docker_ref(berth, repo, "v1"), f"dir:{out}", "--preserve-digests")
    assert (out / "manifest.json").read_bytes() == r.content
    for layer in image.layers:
        assert (out / digest(layer).split(":", 1)[1]).read_bytes() == layer
    skopeo.copy(f"dir:{out}", docker_ref(berth, f"{repo}-copy", "v1"), "--preserve-digests")
    assert_served(berth, f"{repo}-copy", "v1", r.content, DOCKER_MANIFEST)
    assert_served(berth, f"{repo}-copy", pushed, r.content, DOCKER_MANIFEST)


def test_multi_arch_index_keeps_its_digest(
    skopeo: Skopeo, berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    layout = Layout.create(tmp_path / "src")
    images = [build_image(layout, f"{repo}-amd", "amd64"),
              build_image(layout, f"{repo}-arm", "arm64", "v8")]
    index = build_index(layout, images)
    layout.tag("multi", OCI_INDEX, index)

    skopeo.copy(f"oci:{layout.root}:multi", docker_ref(berth, repo, "multi"),
                "--all", "--preserve-digests")

    assert_served(berth, repo, "multi", index, OCI_INDEX)
    for image in images:
        assert_served(berth, repo, image.digest, image.manifest, OCI_MANIFEST)
        for d, data in image.blobs.items():
            assert get_blob(berth, repo, d) == data
    assert skopeo.inspect(docker_ref(berth, repo, "multi"), "--raw") == index
    arm = json.loads(skopeo.inspect(docker_ref(berth, repo, "multi"),
                                    "--override-arch", "arm64", "--override-variant", "v8"))
    assert arm["Layers"] == images[1].layer_digests

    out = tmp_path / "out"
    skopeo.copy(docker_ref(berth, repo, "multi"), f"oci:{out}:multi",
                "--all", "--preserve-digests")
    pulled = Layout(out)
    assert pulled.resolve("multi")["digest"] == digest(index)
    assert pulled.blobs() == layout.blobs()


def test_copy_between_berth_repositories(
    skopeo: Skopeo, berth: BerthServer, repo: str, source: tuple[Layout, Image]
) -> None:
    """Registry to registry on one server: skopeo, knowing where the blobs are, mounts them
    (`POST .../blobs/uploads/?mount=<digest>&from=<repo>`) instead of uploading."""
    layout, image = source
    push(skopeo, layout, berth, repo)
    mounted = f"{repo}-mounted"
    skopeo.copy(docker_ref(berth, repo, "v1"), docker_ref(berth, mounted, "v1"),
                "--preserve-digests")
    assert_served(berth, mounted, "v1", image.manifest, OCI_MANIFEST)
    for d, data in image.blobs.items():
        assert get_blob(berth, mounted, d) == data

    # The access log shows every layer was mounted (201, not a 202 fallback to an upload
    # session); skopeo always uploads the config, it never tries to reuse it.
    posts = [line for line in berth.log.read_text().splitlines()
             if f'"POST /v2/{mounted}/blobs/uploads/' in line]
    for d in image.layer_digests:
        query = f"mount={d.replace(':', '%3A')}"
        assert any(query in line and '" 201 ' in line for line in posts), "\n".join(posts)


def test_through_the_reference_registry_and_back(
    skopeo: Skopeo, berth: BerthServer, distribution: DistributionServer, repo: str,
    tmp_path: Path,
) -> None:
    layout = Layout.create(tmp_path / "src")
    single = build_image(layout, repo)
    layout.tag("v1", OCI_MANIFEST, single.manifest)
    images = [build_image(layout, f"{repo}-amd", "amd64"),
              build_image(layout, f"{repo}-arm", "arm64", "v8")]
    index = build_index(layout, images)
    layout.tag("multi", OCI_INDEX, index)

    for tag in ("v1", "multi"):
        skopeo.copy(f"oci:{layout.root}:{tag}", docker_ref(berth, repo, tag),
                    "--all", "--preserve-digests")
        skopeo.copy(docker_ref(berth, repo, tag), docker_ref(distribution, repo, tag),
                    "--all", "--preserve-digests")
        skopeo.copy(docker_ref(distribution, repo, tag), docker_ref(berth, f"{repo}-back", tag),
                    "--all", "--preserve-digests")

    for server in (distribution, berth):
        back = repo if server is distribution else f"{repo}-back"
        for tag, data in (("v1", single.manifest), ("multi", index)):
            r = get_manifest(server, back, tag)
            assert r.status_code == 200, (server.url, tag, r.text)
            assert r.content == data
            assert r.headers["Docker-Content-Digest"] == digest(data)
    assert_served(berth, f"{repo}-back", "multi", index, OCI_INDEX)
    for image in (single, *images):
        assert_served(berth, f"{repo}-back", image.digest, image.manifest, OCI_MANIFEST)
        for d, data in image.blobs.items():
            assert get_blob(berth, f"{repo}-back", d) == data


# -- the Berth client and skopeo, each reading what the other pushed -------------------------


async def test_skopeo_reads_what_the_berth_client_pushes(
    skopeo: Skopeo, distribution: DistributionServer, repo: str, tmp_path: Path
) -> None:
    from client.build import ImageSpec
    from client.client import Client

    tree = tmp_path / "tree"
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "usr" / "bin" / "hello").write_bytes(b"#!/bin/sh\necho hello\n")
    async with Client() as client:
        result = await client.build([tree], f"{distribution.host}/{repo}:v1",
                                    spec=ImageSpec(cmd=("/usr/bin/hello",)))
    raw = skopeo.inspect(docker_ref(distribution, repo, "v1"), "--raw")
    assert digest(raw) == result.digest
    info = json.loads(skopeo.inspect(docker_ref(distribution, repo, "v1")))
    assert info["Digest"] == result.digest
    out = tmp_path / "out"
    skopeo.copy(docker_ref(distribution, repo, "v1"), f"oci:{out}:v1", "--preserve-digests")
    pulled = Layout(out)
    assert pulled.resolve("v1")["digest"] == result.digest


async def test_berth_client_reads_what_skopeo_pushes(
    skopeo: Skopeo, distribution: DistributionServer, repo: str,
    source: tuple[Layout, Image], tmp_path: Path,
) -> None:
    from client.client import Client

    layout, image = source
    skopeo.copy(f"oci:{layout.root}:v1", docker_ref(distribution, repo, "v1"),
                "--preserve-digests")
    out = tmp_path / "out"
    async with Client() as client:
        result = await client.copy(f"{distribution.host}/{repo}:v1", f"oci:{out}:v1")
    assert result.digest == image.digest
    pulled = Layout(out)
    for d, data in image.blobs.items():
        assert pulled.blob(d) == data
