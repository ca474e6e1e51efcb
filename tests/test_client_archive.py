"""The docker-archive transport (`docker save` tarballs): read in place, written as a stream,
against Berth and against skopeo, a real third-party reader and writer of the format.

Archives in the non-interop tests are built here with the standard library in the shapes
docker writes them (docker <= 24: `<id>/layer.tar` directories and symlinks; docker 25+:
`blobs/sha256/<hex>` and ordinary layers listed in `LayerSources`; moby's foreign layers).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import zstandard

from client.client import Client
from client.copy import CopyOptions
from client.errors import BerthError, NotFoundError, UsageError
from client.events import Events
from client.oci.descriptor import Descriptor
from client.oci.digest import Digest
from client.oci.mediatypes import DOCKER_LAYER_TAR, DOCKER_LAYER_ZSTD
from client.platforms import PlatformMatcher
from client.transports.archive import split_archive_spec
from client.transports.archive_reader import CHUNK, ArchiveSource

from .helpers import (
    DOCKER_CONFIG,
    DOCKER_FOREIGN,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    digest,
)
from .layouts import Image, Layout, build_image, build_index, layout_image, tar_bytes
from .servers import BerthServer
from .test_interop_skopeo import Skopeo
from .urlserver import UrlServer

SKOPEO = shutil.which("skopeo")
interop = pytest.mark.interop
needs_skopeo = pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (CI installs it)")
PREFIX = "docker-archive:"


@pytest.fixture(scope="module")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    if SKOPEO is None:
        pytest.skip("skopeo is not installed (CI installs it)")
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


# -- archives by hand ------------------------------------------------------------------------


@dataclass
class Saved:
    """One image as `docker save` stores it: config, layer files, tags, LayerSources."""

    config: bytes
    files: list[bytes]
    repo_tags: list[str]
    layer_sources: dict[str, Any] = field(default_factory=dict)

    @property
    def diff_ids(self) -> list[str]:
        return list(json.loads(self.config)["rootfs"]["diff_ids"])


COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "bzip2": bz2.compress,
}


def saved_image(label: str, layers: list[bytes], repo_tags: list[str],
                compressed: dict[int, str] | None = None,
                diff_ids: list[str] | None = None) -> Saved:
    """Layer tars (compressed at the `compressed` positions: gzip, zstd, bzip2) and a config
    whose diff_ids are the uncompressed digests."""
    how = compressed or {}
    files = [COMPRESSORS[how[n]](t) if n in how else t for n, t in enumerate(layers)]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Labels": {"test": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids or [digest(t) for t in layers]},
    }).encode()
    return Saved(config, files, repo_tags)


def layer_tars(label: str, count: int = 3) -> list[bytes]:
    return [tar_bytes({f"{label}/{n}.txt": f"{label} layer {n}\n".encode() * (n + 1)})
            for n in range(count)]


def write_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)


def docker_save(path: Path, images: list[Saved], style: str = "legacy") -> None:
    """`legacy`: docker <= 24 (`<id>.json`, `<id>/layer.tar`, a repeated layer as a symlink
    to the first copy, `./`-prefixed names as GNU tar writes them); `blobs`: docker 25+."""
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}
    entries: list[dict[str, Any]] = []
    for image in images:
        paths: list[str] = []
        for n, data in enumerate(image.files):
            hex_ = hashlib.sha256(data).hexdigest()
            if style == "blobs":
                paths.append(f"blobs/sha256/{hex_}")
                files[paths[-1]] = data
                continue
            layer_id = hashlib.sha256(f"{n}{hex_}{image.config!r}".encode()).hexdigest()
            paths.append(f"{layer_id}/layer.tar")
            first = next((p for p, d in files.items() if d == data and p.endswith("layer.tar")),
                         None)
            if first is None:
                files[f"./{layer_id}/layer.tar"] = data
                files[f"{layer_id}/VERSION"] = b"1.0"
            else:
                links[paths[-1]] = f"../{first.removeprefix('./')}"
        config_hex = hashlib.sha256(image.config).hexdigest()
        config = f"blobs/sha256/{config_hex}" if style == "blobs" else f"{config_hex}.json"
        files[config] = image.config
        entry: dict[str, Any] = {"Config": config, "RepoTags": image.repo_tags, "Layers": paths}
        if image.layer_sources:
            entry["LayerSources"] = image.layer_sources
        entries.append(entry)
    files["manifest.json"] = json.dumps(entries).encode()
    files["repositories"] = b"{}"
    write_tar(path, files, links)


def members(path: Path) -> dict[str, bytes]:
    """Regular files of a tar by name (a real tar reader, not the transport's)."""
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
                for m in tar.getmembers() if m.isreg()}


def manifest_json(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(members(path)["manifest.json"]))


def served(berth: BerthServer, repo: str, reference: str) -> requests.Response:
    r = requests.get(f"{berth.url}/v2/{repo}/manifests/{reference}", timeout=10,
                     headers={"Accept": f"{DOCKER_MANIFEST}, {OCI_MANIFEST}, {OCI_INDEX}"})
    assert r.status_code == 200, r.text
    return r


def blob(berth: BerthServer, repo: str, d: str) -> bytes:
    r = requests.get(f"{berth.url}/v2/{repo}/blobs/{d}", timeout=10)
    assert r.status_code == 200, (d, r.status_code)
    return r.content


def uncompressed_digest(data: bytes) -> str:
    return digest(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def layout_diff_ids(layout: Layout, tag: str, image: Image) -> list[str]:
    """The layers of a layout's image, uncompressed and digested, once its config is checked
    to be `image`'s. Converting to OCI, skopeo re-serialises the config: same content, other
    bytes (its `dir:` copies below keep them)."""
    doc = json.loads(layout.blob(layout.resolve(tag)["digest"]))
    assert json.loads(layout.blob(doc["config"]["digest"])) == json.loads(image.config)
    return [uncompressed_digest(layout.blob(layer["digest"])) for layer in doc["layers"]]


def dir_image(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """A skopeo `dir:` copy: the manifest as the source had it, and blobs by digest."""
    blobs = {f"sha256:{p.name}": p.read_bytes() for p in directory.iterdir()
             if len(p.name) == 64}
    return json.loads((directory / "manifest.json").read_bytes()), blobs


def no_leftovers(directory: Path, *expected: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == sorted(expected)


# -- the spec ----------------------------------------------------------------------------------


def test_spec_splits_at_the_first_colon() -> None:
    assert split_archive_spec("out.tar") == ("out.tar", None)
    assert split_archive_spec("/tmp/a.tar:v1") == ("/tmp/a.tar", "v1")
    assert split_archive_spec("a.tar:localhost:5000/app:v1") == ("a.tar", "localhost:5000/app:v1")
    with pytest.raises(UsageError):
        split_archive_spec("a.tar:")
    with pytest.raises(UsageError):
        split_archive_spec(":v1")


# -- reading -----------------------------------------------------------------------------------


async def test_reads_docker_save_archives_of_both_generations(
    berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    tars = layer_tars(repo)
    tars[2] = tars[0]  # a repeated layer: docker <= 24 stores a symlink to the first copy
    old = saved_image("old", tars, ["example.com/app:v1"], compressed={1: "gzip"})
    docker_save(tmp_path / "old.tar", [old], "legacy")
    new = saved_image("new", layer_tars(repo + "-new"), ["app:v2"], compressed={2: "zstd"})
    # docker 25+ lists ordinary layers in LayerSources with uncompressed types: not foreign
    new.layer_sources = {d: {"mediaType": DOCKER_LAYER_TAR, "digest": d, "size": len(f)}
                         for d, f in zip(new.diff_ids, new.files, strict=True)}
    docker_save(tmp_path / "new.tar", [new], "blobs")

    async with Client() as client:
        # the image by its full name, by another spelling of it, and by its tag alone
        first = await client.copy(f"{PREFIX}{tmp_path / 'old.tar'}:example.com/app:v1",
                                  f"{berth.host}/{repo}:old")
        again = await client.copy(f"{PREFIX}{tmp_path / 'old.tar'}:v1",
                                  f"{berth.host}/{repo}:again")
        await client.copy(f"{PREFIX}{tmp_path / 'new.tar'}:docker.io/library/app:v2",
                          f"{berth.host}/{repo}:new")
    assert again.digest == first.digest  # the same archive gives the same manifest
    assert set(again.blobs.values()) == {"exists"}

    doc = served(berth, repo, "old").json()
    assert doc["mediaType"] == DOCKER_MANIFEST
    assert doc["config"] == {"mediaType": DOCKER_CONFIG, "digest": digest(old.config),
                             "size": len(old.config)}
    assert [(x["mediaType"], x["digest"], x["size"]) for x in doc["layers"]] == [
        (DOCKER_LAYER_TAR, digest(old.files[0]), len(old.files[0])),
        (DOCKER_LAYER, digest(old.files[1]), len(old.files[1])),  # as stored: gzip
        (DOCKER_LAYER_TAR, digest(old.files[0]), len(old.files[0])),
    ]
    assert blob(berth, repo, digest(old.config)) == old.config
    for data in old.files:
        assert blob(berth, repo, digest(data)) == data
    layers = served(berth, repo, "new").json()["layers"]
    assert [x["digest"] for x in layers] == [*new.diff_ids[:2], digest(new.files[2])]
    assert [x["mediaType"] for x in layers] == [DOCKER_LAYER_TAR] * 2 + [DOCKER_LAYER_ZSTD]


async def test_source_streams_members_from_any_offset(tmp_path: Path) -> None:
    big = tar_bytes({"big.bin": bytes(range(256)) * (3 * CHUNK // 256)})
    image = saved_image("big", [big, *layer_tars("small", 1)], ["big:v1"])
    docker_save(tmp_path / "big.tar", [image])
    source = await ArchiveSource.open(str(tmp_path / "big.tar"), "big:v1")
    try:
        doc = json.loads((await source.root()).data)
        layer = Descriptor.from_json(doc["layers"][0])
        chunks = [c async for c in source.blob(layer)]
        assert b"".join(chunks) == big
        assert max(len(c) for c in chunks) <= CHUNK  # streamed, never whole
        for offset in (1, CHUNK + 7, len(big) - 1, len(big)):
            assert b"".join([c async for c in source.blob(layer, offset)]) == big[offset:]
        config = Descriptor.from_json(doc["config"])
        assert b"".join([c async for c in source.blob(config, 5)]) == image.config[5:]
        with pytest.raises(NotFoundError):
            await source.manifest(layer.digest)
        absent = Descriptor(DOCKER_LAYER, Digest.from_bytes(b"absent"), 6)
        with pytest.raises(NotFoundError, match="not in the archive"):
            _ = [c async for c in source.blob(absent)]
    finally:
        await source.close()


# -- writing -----------------------------------------------------------------------------------


async def test_writes_a_registry_image_and_reads_it_back(
    berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    layout, image = layout_image(tmp_path / "src", repo)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "app.tar"
    progress: dict[str, int] = {}

    class Progress(Events):
        def blob_progress(self, desc: Descriptor, done: int) -> None:
            progress[str(desc.digest)] = done

    async with Client() as client:
        await client.copy(f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1")
        written = await client.copy(f"{berth.host}/{repo}:v1", f"{PREFIX}{out}:example.com/app:v1",
                                    events=Progress())
        assert written.digest == image.digest  # the manifest copied, though not stored
        assert set(written.blobs.values()) == {"uploaded"}
        back = await client.copy(f"{PREFIX}{out}", f"{berth.host}/{repo}-back:v1")
    no_leftovers(out_dir, "app.tar")  # the temporary file became the archive
    assert progress == {d: len(data) for d, data in image.blobs.items()}

    files = members(out)
    config_name = f"{image.config_digest.split(':')[1]}.json"
    layer_names = [f"{d.split(':')[1]}.tar.gz" for d in image.layer_digests]
    assert set(files) == {config_name, *layer_names, "manifest.json", "repositories"}
    assert files[config_name] == image.config
    for name, data in zip(layer_names, image.layers, strict=True):
        assert files[name] == data  # stored as they came: gzip, not recompressed
    assert json.loads(files["manifest.json"]) == [
        {"Config": config_name, "RepoTags": ["example.com/app:v1"], "Layers": layer_names}
    ]
    top = json.loads(image.config)["rootfs"]["diff_ids"][-1]
    assert json.loads(files["repositories"]) == {"example.com/app": {"v1": top.split(":")[1]}}

    doc = served(berth, f"{repo}-back", "v1").json()
    assert back.digest == digest(served(berth, f"{repo}-back", "v1").content)
    assert doc["config"]["digest"] == image.config_digest
    assert [x["digest"] for x in doc["layers"]] == image.layer_digests
    assert {x["mediaType"] for x in doc["layers"]} == {DOCKER_LAYER}


async def test_round_trip_archive_registry_archive(
    berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    # the last layer's first file name begins like a bzip2 stream: its ustar magic wins
    tars = [*layer_tars(repo), tar_bytes({"BZh91AY&SY": b"not bzip2"})]
    image = saved_image(repo, tars, ["app:v1"], compressed={0: "gzip"})
    docker_save(tmp_path / "first.tar", [image])
    async with Client() as client:
        up = await client.copy(f"{PREFIX}{tmp_path / 'first.tar'}", f"{berth.host}/{repo}:v1")
        await client.copy(f"{berth.host}/{repo}:v1", f"{PREFIX}{tmp_path / 'second.tar'}:app:v1")
        again = await client.copy(f"{PREFIX}{tmp_path / 'second.tar'}:v1",
                                  f"{berth.host}/{repo}:again")
    assert again.digest == up.digest  # same config, same layer files, same media types
    layers = served(berth, repo, "v1").json()["layers"]
    assert [x["mediaType"] for x in layers] == [DOCKER_LAYER] + [DOCKER_LAYER_TAR] * 3
    files = members(tmp_path / "second.tar")
    for data in (image.config, *image.files):
        assert data in files.values()
    assert manifest_json(tmp_path / "second.tar")[0]["RepoTags"] == ["app:v1"]


async def test_untagged_archive_and_overwrite(berth: BerthServer, repo: str,
                                              tmp_path: Path) -> None:
    layout, image = layout_image(tmp_path / "src", repo)
    out = tmp_path / "out.tar"
    out.write_bytes(b"an older archive")
    async with Client() as client:
        await client.copy(f"oci:{layout.root}:v1", f"{PREFIX}{out}")
    entry = manifest_json(out)[0]
    assert entry["RepoTags"] == []
    assert json.loads(members(out)["repositories"]) == {}
    assert members(out)[entry["Config"]] == image.config


async def test_build_on_an_archive_base_into_an_archive(tmp_path: Path) -> None:
    base = saved_image("base", layer_tars("base"), ["base:v1"], compressed={0: "gzip"})
    docker_save(tmp_path / "base.tar", [base])
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "hello.txt").write_text("hello\n")
    async with Client() as client:
        await client.build([tmp_path / "ctx"], f"{PREFIX}{tmp_path / 'app.tar'}:app:v2",
                           base=f"{PREFIX}{tmp_path / 'base.tar'}")
    entry = manifest_json(tmp_path / "app.tar")[0]
    files = members(tmp_path / "app.tar")
    assert entry["RepoTags"] == ["app:v2"]
    assert [files[p] for p in entry["Layers"][:3]] == base.files  # the base's, as they were
    assert len(entry["Layers"]) == 4
    assert json.loads(files[entry["Config"]])["rootfs"]["diff_ids"][:3] == base.diff_ids


# -- foreign layers ----------------------------------------------------------------------------


BASE_TAR = tar_bytes({"Files/base.dll": b"\x90" * 50_000})
BASE_BLOB = gzip.compress(BASE_TAR, mtime=0)


@pytest.fixture
def url_server() -> Iterator[UrlServer]:
    server = UrlServer({"base.tar.gz": BASE_BLOB})
    yield server
    server.stop()


def windows_archive(path: Path, url: str) -> dict[str, Any]:
    """As moby saves a Windows image: the foreign base layer's file is the uncompressed tar
    (its diff_id), LayerSources keeps the registry descriptor (gzip digest, urls)."""
    app = tar_bytes({"Files/app.exe": b"app"})
    image = saved_image("win", [BASE_TAR, app], ["win:ltsc2022"], compressed={1: "gzip"})
    foreign = {"mediaType": DOCKER_FOREIGN, "digest": digest(BASE_BLOB), "size": len(BASE_BLOB),
               "urls": [url]}
    image.layer_sources = {digest(BASE_TAR): foreign}
    docker_save(path, [image])
    return foreign


async def test_foreign_layers_keep_their_descriptor(
    berth: BerthServer, repo: str, url_server: UrlServer, tmp_path: Path
) -> None:
    foreign = windows_archive(tmp_path / "win.tar", f"{url_server.url}/fwlink/base.tar.gz")
    src = f"{PREFIX}{tmp_path / 'win.tar'}"
    async with Client() as client:
        kept = await client.copy(src, f"{berth.host}/{repo}:keep")
        assert kept.blobs[foreign["digest"]] == "foreign"
        assert served(berth, repo, "keep").json()["layers"][0] == foreign
        assert url_server.requests == []
        # the archive's file is the uncompressed tar, not the blob: fetched from its urls
        included = await client.copy(src, f"{berth.host}/{repo}-inc:v1",
                                     CopyOptions(foreign="include"))
        assert included.digest == kept.digest
        assert blob(berth, f"{repo}-inc", foreign["digest"]) == BASE_BLOB
        assert url_server.requests

        # written again, kept: named in Layers and LayerSources, not stored
        await client.copy(f"{berth.host}/{repo}:keep", f"{PREFIX}{tmp_path / 'kept.tar'}:w:1")
        # included: stored as it came (go-containerregistry does the same)
        await client.copy(f"{berth.host}/{repo}:keep", f"{PREFIX}{tmp_path / 'inc.tar'}:w:1",
                          CopyOptions(foreign="include"))
        url_server.stop()
        entry = manifest_json(tmp_path / "kept.tar")[0]
        assert entry["LayerSources"] == {digest(BASE_TAR): foreign}
        assert entry["Layers"][0] not in members(tmp_path / "kept.tar")
        reread = await client.copy(f"{PREFIX}{tmp_path / 'kept.tar'}", f"{berth.host}/{repo}:k2")
        assert reread.digest == kept.digest
        # the stored foreign blob is served from the archive: no urls host needed
        airgap = await client.copy(f"{PREFIX}{tmp_path / 'inc.tar'}", f"{berth.host}/{repo}-ag:v1",
                                   CopyOptions(foreign="include"))
        assert airgap.digest == kept.digest
        assert blob(berth, f"{repo}-ag", foreign["digest"]) == BASE_BLOB
    assert members(tmp_path / "inc.tar")[f"{digest(BASE_BLOB).split(':')[1]}.tar.gz"] == BASE_BLOB


# -- errors ------------------------------------------------------------------------------------


async def expect_error(kind: type[BerthError], match: str, source: str,
                       destination: str, options: CopyOptions | None = None) -> BerthError:
    async with Client() as client:
        with pytest.raises(kind, match=match) as info:
            await client.copy(source, destination, options)
    assert "\n" not in str(info.value), str(info.value)
    return info.value


async def test_errors_are_one_line(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    dst = f"{berth.host}/{repo}:v1"
    await expect_error(NotFoundError, "no such file", f"{PREFIX}{tmp_path / 'missing.tar'}", dst)
    (tmp_path / "text.tar").write_text("not a tar at all\n" * 100)
    await expect_error(BerthError, "not a tar archive", f"{PREFIX}{tmp_path / 'text.tar'}", dst)
    await expect_error(UsageError, "is a directory", f"{PREFIX}{tmp_path}", dst)

    docker_save(tmp_path / "two.tar", [saved_image("a", layer_tars("a"), ["a:v1"]),
                                       saved_image("b", layer_tars("b"), ["b:v1", "b:v2"])])
    two = f"{PREFIX}{tmp_path / 'two.tar'}"
    await expect_error(NotFoundError, r"no image tagged 'v3' \(has: a:v1, b:v1, b:v2\)",
                       f"{two}:v3", dst)
    await expect_error(UsageError, "holds 2 images", two, dst)
    await expect_error(UsageError, "2 images are tagged 'v1'", f"{two}:v1", dst)
    async with Client() as client:  # named fully, by position, or by an unambiguous tag
        by_name = await client.copy(f"{two}:b:v1", dst)
        assert (await client.copy(f"{two}:@1", dst)).digest == by_name.digest
        assert (await client.copy(f"{two}:v2", dst)).digest == by_name.digest

    (tmp_path / "two.tar.gz").write_bytes(gzip.compress((tmp_path / "two.tar").read_bytes()))
    await expect_error(BerthError, "gzip-compressed: decompress it first",
                       f"{PREFIX}{tmp_path / 'two.tar.gz'}", dst)
    write_tar(tmp_path / "plain.tar", {"hello.txt": b"hi"})
    await expect_error(BerthError, "no manifest.json", f"{PREFIX}{tmp_path / 'plain.tar'}", dst)
    bad = saved_image("bad", layer_tars("bad"), ["bad:v1"], diff_ids=[digest(b"x")] * 3)
    docker_save(tmp_path / "bad.tar", [bad])
    await expect_error(BerthError, "its config says", f"{PREFIX}{tmp_path / 'bad.tar'}", dst)
    bzip = saved_image("bz", layer_tars("bz"), ["bz:v1"], compressed={1: "bzip2"})
    docker_save(tmp_path / "bz.tar", [bzip])
    await expect_error(BerthError, "bzip2-compressed, which no registry media type describes",
                       f"{PREFIX}{tmp_path / 'bz.tar'}", dst)

    layout, _ = layout_image(tmp_path / "src", repo)
    await expect_error(UsageError, "needs NAME:TAG", f"oci:{layout.root}:v1",
                       f"{PREFIX}{tmp_path / 'out.tar'}:v1")
    await expect_error(NotFoundError, "no such directory", f"oci:{layout.root}:v1",
                       f"{PREFIX}{tmp_path / 'nowhere' / 'out.tar'}")


async def test_an_index_needs_a_platform(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    src = Layout.create(tmp_path / "src")
    images = [build_image(src, "amd", "amd64"), build_image(src, "arm", "arm64", "v8")]
    src.tag("multi", OCI_INDEX, build_index(src, images))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    async with Client() as client:
        await client.copy(f"oci:{src.root}:multi", f"{berth.host}/{repo}:multi")
    await expect_error(UsageError, "multi-platform index.*choose one with --platform",
                       f"{berth.host}/{repo}:multi", f"{PREFIX}{out_dir / 'multi.tar'}:app:v1")
    no_leftovers(out_dir)  # nothing written, the temporary file removed
    async with Client() as client:
        picked = await client.copy(f"{berth.host}/{repo}:multi",
                                   f"{PREFIX}{out_dir / 'arm.tar'}:app:v1",
                                   CopyOptions(platform=PlatformMatcher.parse("linux/arm64")))
    assert picked.digest == images[1].digest
    entry = manifest_json(out_dir / "arm.tar")[0]
    assert members(out_dir / "arm.tar")[entry["Config"]] == images[1].config


# -- skopeo ------------------------------------------------------------------------------------


@interop
@needs_skopeo
async def test_skopeo_archive_read_by_berth(
    skopeo: Skopeo, berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    layout, image = layout_image(tmp_path / "src", repo)
    archive = tmp_path / "skopeo.tar"
    skopeo.copy(f"oci:{layout.root}:v1", f"{PREFIX}{archive}:example.com/{repo}:v1")
    written = manifest_json(archive)[0]
    files = members(archive)
    diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]

    async with Client() as client:
        result = await client.copy(f"{PREFIX}{archive}:v1", f"{berth.host}/{repo}:v1")
        tagged = await client.copy(f"{PREFIX}{archive}:example.com/{repo}:v1",
                                   f"{berth.host}/{repo}:v1")
    assert tagged.digest == result.digest
    doc = served(berth, repo, "v1").json()
    # what skopeo wrote, byte for byte: the config, and the layers uncompressed (diff_ids)
    assert doc["config"]["digest"] == digest(files[written["Config"]]) == image.config_digest
    assert [x["digest"] for x in doc["layers"]] == [digest(files[p]) for p in written["Layers"]]
    assert [x["digest"] for x in doc["layers"]] == diff_ids
    assert {x["mediaType"] for x in doc["layers"]} == {DOCKER_LAYER_TAR}
    for d in diff_ids:
        assert digest(blob(berth, repo, d)) == d
    # and skopeo takes uncompressed Docker layers from a registry, as they are
    skopeo.copy(f"docker://{berth.host}/{repo}:v1", f"dir:{tmp_path / 'dir'}")
    doc, blobs = dir_image(tmp_path / "dir")
    assert doc == served(berth, repo, "v1").json()
    assert {d: blobs[d] for d in diff_ids} == {d: blob(berth, repo, d) for d in diff_ids}
    pulled = tmp_path / "pulled"
    skopeo.copy(f"docker://{berth.host}/{repo}:v1", f"oci:{pulled}:v1")
    assert layout_diff_ids(Layout(pulled), "v1", image) == diff_ids


@interop
@needs_skopeo
async def test_berth_archive_read_by_skopeo(
    skopeo: Skopeo, berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    layout, image = layout_image(tmp_path / "src", repo)
    archive = tmp_path / "berth.tar"
    async with Client() as client:
        await client.copy(f"oci:{layout.root}:v1", f"{berth.host}/{repo}:v1")
        await client.copy(f"{berth.host}/{repo}:v1", f"{PREFIX}{archive}:example.com/app:v1")
    diff_ids = json.loads(image.config)["rootfs"]["diff_ids"]

    info = json.loads(skopeo.inspect(f"{PREFIX}{archive}"))
    assert info["Layers"] == diff_ids  # skopeo decompressed each layer to check it
    assert info["Labels"] == {"test": repo}
    assert skopeo.inspect(f"{PREFIX}{archive}", "--config", "--raw") == image.config
    raw = json.loads(skopeo.inspect(f"{PREFIX}{archive}", "--raw"))
    assert raw["config"]["digest"] == image.config_digest

    out = tmp_path / "oci"
    skopeo.copy(f"{PREFIX}{archive}:example.com/app:v1", f"oci:{out}:v1")
    assert layout_diff_ids(Layout(out), "v1", image) == diff_ids
    skopeo.copy(f"{PREFIX}{archive}", f"dir:{tmp_path / 'dir'}")
    doc, blobs = dir_image(tmp_path / "dir")
    assert doc["config"]["digest"] == image.config_digest
    assert blobs[image.config_digest] == image.config
    assert [uncompressed_digest(blobs[x["digest"]]) for x in doc["layers"]] == diff_ids


@interop
@needs_skopeo
async def test_skopeo_archive_round_trip(
    skopeo: Skopeo, berth: BerthServer, repo: str, tmp_path: Path
) -> None:
    layout, image = layout_image(tmp_path / "src", repo)
    first = tmp_path / "skopeo.tar"
    skopeo.copy(f"oci:{layout.root}:v1", f"{PREFIX}{first}:app:v1")
    second = tmp_path / "berth.tar"
    async with Client() as client:
        up = await client.copy(f"{PREFIX}{first}:app:v1", f"{berth.host}/{repo}:v1")
        await client.copy(f"{berth.host}/{repo}:v1", f"{PREFIX}{second}:app:v1")
        again = await client.copy(f"{PREFIX}{second}:app:v1", f"{berth.host}/{repo}:again")
    assert again.digest == up.digest
    ours, theirs = manifest_json(second)[0], manifest_json(first)[0]
    ours_files, theirs_files = members(second), members(first)
    assert ours_files[ours["Config"]] == theirs_files[theirs["Config"]] == image.config
    assert [ours_files[p] for p in ours["Layers"]] == [theirs_files[p] for p in theirs["Layers"]]
    assert ours["Layers"] == theirs["Layers"]  # `<diff_id>.tar`, as skopeo names them
    # skopeo reads ours back to the same image
    info = json.loads(skopeo.inspect(f"{PREFIX}{second}"))
    assert info["Layers"] == json.loads(image.config)["rootfs"]["diff_ids"]
