"""Packing directories into layers and building images, Windows bases with foreign layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import zstandard

from client.build import ImageSpec
from client.client import Client
from client.copy import CopyOptions
from client.pack import PackOptions, pack_directory

from .helpers import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN,
    DOCKER_LAYER,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    descriptor,
    digest,
)
from .layouts import Layout
from .servers import ROOT, BerthServer
from .urlserver import UrlServer


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "bin").mkdir(parents=True)
    (root / "etc" / "app").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "tool").chmod(0o755)
    (root / "etc" / "app" / "app.conf").write_text("key = value\n")
    (root / "etc" / "app" / "big.bin").write_bytes(os.urandom(300_000))
    os.symlink("../bin/tool", root / "etc" / "tool-link")
    os.link(root / "bin" / "tool", root / "bin" / "tool-hard")
    return root


def _members(blob: bytes, compression: str) -> list[tarfile.TarInfo]:
    if compression == "gzip":
        raw = gzip.decompress(blob)
    elif compression == "zstd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    else:
        raw = blob
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return tar.getmembers()


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_pack_is_deterministic_and_hashed_in_one_pass(tree: Path, tmp_path: Path,
                                                      compression: str) -> None:
    options = PackOptions(compression=compression,  # type: ignore[arg-type]
                          source_date_epoch=1_700_000_000)
    first = pack_directory(tree, tmp_path / "a", options)
    os.utime(tree / "bin" / "tool", (1_800_000_000, 1_800_000_000))  # later than the epoch
    second = pack_directory(tree, tmp_path / "b", options)
    blob = first.path.read_bytes()
    assert (first.digest, first.diff_id, first.size) == (second.digest, second.diff_id,
                                                         second.size)
    assert first.digest.hex == hashlib.sha256(blob).hexdigest()
    assert first.size == len(blob)
    members = _members(blob, compression)
    raw = blob if compression == "none" else (
        gzip.decompress(blob) if compression == "gzip"
        else zstandard.ZstdDecompressor().decompressobj().decompress(blob))
    assert first.diff_id.hex == hashlib.sha256(raw).hexdigest()
    names = [m.name for m in members]
    assert names == ["bin", "bin/tool", "bin/tool-hard", "etc", "etc/app", "etc/app/app.conf",
                     "etc/app/big.bin", "etc/tool-link"]
    by_name = {m.name: m for m in members}
    assert all(m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
    assert all(m.mtime <= 1_700_000_000 for m in members)
    assert by_name["bin/tool"].mode == 0o755
    assert by_name["bin/tool-hard"].islnk() and by_name["bin/tool-hard"].linkname == "bin/tool"
    assert by_name["etc/tool-link"].issym()


def test_windows_layer_format(tree: Path, tmp_path: Path) -> None:
    layer = pack_directory(tree, tmp_path / "w", PackOptions(os="windows", deletions=("old",)))
    members = _members(layer.path.read_bytes(), "gzip")
    by_name = {m.name: m for m in members}
    assert [m.name for m in members][:2] == ["Files", "Hives"]
    assert by_name["Files"].mode == 0o40555 and by_name["Hives"].mode == 0o40555
    # tarfile hides type bits, so read the raw mode fields of the headers
    raw = gzip.decompress(layer.path.read_bytes())
    modes = _raw_modes(raw)
    assert modes["Files/bin/tool"] == 0o100000
    assert modes["Files/etc"] == 0o40000
    assert modes["Files/etc/tool-link"] == 0o120000
    tool = by_name["Files/bin/tool"]
    assert tool.pax_headers["MSWINDOWS.fileattr"] == "32"
    assert by_name["Files/etc"].pax_headers["MSWINDOWS.fileattr"] == "16"
    assert tool.pax_headers["MSWINDOWS.rawsd"].startswith("AQAAgBQAAAAk")
    assert "Files/.wh.old" in by_name


def _raw_modes(raw: bytes) -> dict[str, int]:
    modes: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar.getmembers():
            header = raw[member.offset : member.offset + 512]
            if member.pax_headers:  # the member's offset points at its PAX header block
                pax_size = int(raw[member.offset + 124 : member.offset + 136].strip(b"\0 "), 8)
                skip = 512 + (pax_size + 511) // 512 * 512
                header = raw[member.offset + skip : member.offset + skip + 512]
            modes[member.name] = int(header[100:108].strip(b"\0 "), 8)
    return modes


async def test_build_and_push_a_directory(berth: BerthServer, repo: str, tree: Path) -> None:
    spec = ImageSpec(env=("PATH=/bin", "MODE=test"), cmd=("/bin/tool",),
                     labels={"team": "berth"}, workdir="/etc", source_date_epoch=1_700_000_000)
    async with Client() as client:
        result = await client.build([tree], f"{berth.host}/{repo}:v1", spec=spec)
    manifest = requests.get(f"{berth.url}/v2/{repo}/manifests/v1").json()
    assert result.digest == requests.head(
        f"{berth.url}/v2/{repo}/manifests/v1").headers["Docker-Content-Digest"]
    config = requests.get(f"{berth.url}/v2/{repo}/blobs/{manifest['config']['digest']}").json()
    assert config["os"] == "linux" and config["architecture"] == "amd64"
    assert config["config"]["Env"] == ["PATH=/bin", "MODE=test"]
    assert config["config"]["Cmd"] == ["/bin/tool"]
    assert config["config"]["Labels"] == {"team": "berth"}
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert len(config["rootfs"]["diff_ids"]) == 1 and len(config["history"]) == 1
    layer = requests.get(f"{berth.url}/v2/{repo}/blobs/{manifest['layers'][0]['digest']}")
    assert config["rootfs"]["diff_ids"][0] == digest(gzip.decompress(layer.content))


# -- Windows: a base with foreign layers at a loopback urls host ---------------------------

WINDOWS_VERSIONS = ["10.0.17763.5000", "10.0.20348.1000", "10.0.20348.2000", "10.0.26100.100"]


@pytest.fixture
def foreign_blobs() -> dict[str, bytes]:
    return {f"servercore-{v}.tar.gz": gzip.compress(f"base {v}".encode() * 5000, mtime=0)
            for v in WINDOWS_VERSIONS}


@pytest.fixture
def url_server(foreign_blobs: dict[str, bytes]) -> Iterator[UrlServer]:
    server = UrlServer(foreign_blobs)
    yield server
    server.stop()


async def _windows_base(berth: BerthServer, repo: str, tmp_path: Path, url: str,
                        blobs: dict[str, bytes]) -> dict[str, str]:
    """A multi-version servercore-like index in Berth; returns os.version -> manifest digest."""
    layout = Layout.create(tmp_path / "winbase")
    children, found = [], {}
    for version in WINDOWS_VERSIONS:
        name = f"servercore-{version}.tar.gz"
        update = gzip.compress(f"update layer {version}".encode(), mtime=0)
        layout.add_blob(update)
        config = json.dumps({
            "architecture": "amd64", "os": "windows", "os.version": version,
            "rootfs": {"type": "layers", "diff_ids": [digest(b"x" + version.encode()),
                                                      digest(b"y" + version.encode())]},
            "history": [{"created_by": f"Apply image {version}"}, {"created_by": "update"}],
            "config": {"Env": ["BASE=1"]},
        }).encode()
        layout.add_blob(config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": descriptor(DOCKER_CONFIG, config),
            "layers": [descriptor(DOCKER_FOREIGN, blobs[name], urls=[f"{url}/fwlink/{name}"]),
                       descriptor(DOCKER_LAYER, update)],
        }, indent=3).encode()
        layout.add_blob(manifest)
        found[version] = digest(manifest)
        children.append(descriptor(DOCKER_MANIFEST, manifest, platform={
            "architecture": "amd64", "os": "windows", "os.version": version}))
    index = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST,
                        "manifests": children}).encode()
    layout.tag("ltsc", DOCKER_LIST, index)
    async with Client() as client:
        await client.copy(f"oci:{layout.root}:ltsc", f"{berth.host}/{repo}/servercore:ltsc")
    return found


async def test_windows_push_on_a_foreign_base(
    berth: BerthServer, repo: str, tmp_path: Path, url_server: UrlServer,
    foreign_blobs: dict[str, bytes],
) -> None:
    versions = await _windows_base(berth, repo, tmp_path, url_server.url, foreign_blobs)
    assert url_server.requests == []  # the base went in as references only
    app = tmp_path / "app"
    (app / "app").mkdir(parents=True)
    (app / "app" / "run.cmd").write_text("@echo hello\r\n")
    base = f"{berth.host}/{repo}/servercore:ltsc"
    spec = ImageSpec(os_version="10.0.20348.1787", cmd=("cmd", "/c", "C:\\app\\run.cmd"),
                     source_date_epoch=1_700_000_000)
    async with Client() as client:
        # default: the foreign layer is a reference, the base's other layer is mounted
        result = await client.build([app], f"{berth.host}/{repo}/app:v1", spec=spec, base=base)
        name = "servercore-10.0.20348.2000.tar.gz"  # same build, highest revision
        assert result.blobs[digest(foreign_blobs[name])] == "foreign"
        assert "mounted" in result.blobs.values()
        assert url_server.requests == []
        manifest = requests.get(f"{berth.url}/v2/{repo}/app/manifests/v1").json()
        assert manifest["mediaType"] == DOCKER_MANIFEST  # the base's format
        assert manifest["layers"][0]["mediaType"] == DOCKER_FOREIGN
        assert manifest["layers"][0]["urls"] == [f"{url_server.url}/fwlink/{name}"]
        config = requests.get(
            f"{berth.url}/v2/{repo}/app/blobs/{manifest['config']['digest']}").json()
        assert config["os"] == "windows" and config["os.version"] == "10.0.20348.2000"
        assert config["config"]["Env"] == ["BASE=1"]
        assert len(config["rootfs"]["diff_ids"]) == 3
        layer = requests.get(
            f"{berth.url}/v2/{repo}/app/blobs/{manifest['layers'][2]['digest']}").content
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
            assert {"Files", "Hives", "Files/app/run.cmd"} <= set(tar.getnames())

        # --include-foreign: fetched from the urls host, uploaded unchanged
        included = await client.build(
            [app], f"{berth.host}/{repo}/airgap:v1", spec=spec, base=base,
            options=CopyOptions(foreign="include"))
        assert included.blobs[digest(foreign_blobs[name])] == "uploaded"
        assert included.digest == result.digest  # same manifest: signatures stay valid
        assert all("Authorization" not in h for h in url_server.requests)

        # the urls host disappears; the air-gapped repository still pulls completely
        url_server.stop()
        out = tmp_path / "pulled"
        pulled = await client.copy(f"{berth.host}/{repo}/airgap:v1", f"oci:{out}:v1",
                                   CopyOptions(foreign="include"))
        assert pulled.digest == result.digest
        foreign = out / "blobs" / "sha256" / digest(foreign_blobs[name]).split(":")[1]
        assert foreign.read_bytes() == foreign_blobs[name]
    assert versions["10.0.20348.2000"] != result.digest  # a new image, not the base


@pytest.mark.parametrize(("host", "expected"), [
    ("10.0.17763.100", "10.0.17763.5000"),
    ("10.0.20348.1787", "10.0.20348.2000"),
    ("10.0.26100.1", "10.0.26100.100"),
    ("10.0.22621.1", "10.0.20348.2000"),
])
def test_cli_pull_selects_windows_version(
    berth: BerthServer, repo: str, tmp_path: Path, url_server: UrlServer,
    foreign_blobs: dict[str, bytes], host: str, expected: str,
) -> None:
    import asyncio

    versions = asyncio.run(_windows_base(berth, repo, tmp_path, url_server.url, foreign_blobs))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "client.cli", "pull", f"{berth.host}/{repo}/servercore:ltsc",
         f"oci:{out}:x", "--platform", "windows/amd64", "--os-version", host, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["digest"] == versions[expected]


def test_cli_push_directory(berth: BerthServer, repo: str, tree: Path) -> None:
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    runs = [subprocess.run(
        [sys.executable, "-m", "client.cli", "push", str(tree), f"{berth.host}/{repo}:{tag}",
         "--compress", "zstd", "--env", "A=1", "--entrypoint", '["/bin/tool"]', "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env) for tag in ("a", "b")]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["digest"] == second["digest"]  # reproducible with SOURCE_DATE_EPOCH
    manifest = requests.get(f"{berth.url}/v2/{repo}/manifests/a").json()
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"


async def test_docker_format(berth: BerthServer, repo: str, tree: Path) -> None:
    async with Client() as client:
        await client.build([tree], f"{berth.host}/{repo}:docker",
                           spec=ImageSpec(format="docker", user="1000:1000"))
    r = requests.get(f"{berth.url}/v2/{repo}/manifests/docker")
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    manifest = r.json()
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["layers"][0]["mediaType"] == DOCKER_LAYER
    config = requests.get(f"{berth.url}/v2/{repo}/blobs/{manifest['config']['digest']}").json()
    assert config["config"]["User"] == "1000:1000"
