"""`berth fsck` and the server's background scrub (issue 11): a flipped byte in a blob, a
link whose target is gone, a corrupt tag link and a corrupt manifest are each reported;
`--repair` heals what can be healed, and the corrupted blob can be pushed again. On disk
and on S3 (moto) through the command, against storage a running server wrote; in-memory
storage lives inside its server, so there the checker runs in-process over the driver."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests

from client.oci.digest import Digest
from registry.config import ConfigError, load_config
from registry.storage import Registry, paths
from registry.storage.drivers.filesystem import FilesystemDriver
from registry.storage.drivers.memory import MemoryDriver
from registry.storage.fsck import Checker, FsckReport

from .conftest import MakeBerth, S3Endpoint, s3_config
from .helpers import (
    EMPTY,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    digest,
    image,
    push_blob,
    put_manifest,
)
from .servers import ROOT, BerthServer

FLIPPED = b"a layer whose stored copy gets a flipped byte" * 100
REMOVED = b"a layer whose data file goes missing"
B_LAYER = b"the layer of the image whose manifest gets corrupted"


class Storage(Protocol):
    """Raw access to what a registry stored, to damage it as a disk or a bucket would."""

    def read(self, key: str) -> bytes: ...

    def write(self, key: str, data: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def snapshot(self) -> dict[str, Any]: ...


class Disk:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def snapshot(self) -> dict[str, Any]:
        return {str(p): (p.read_bytes(), p.stat().st_mtime_ns) for p in self.root.rglob("*")
                if p.is_file() and HEALTH not in str(p)}


HEALTH = "/_health/"  # the server's readiness probe writes there every few seconds


class Bucket:
    def __init__(self, endpoint: S3Endpoint, prefix: str) -> None:
        import boto3

        self.client = boto3.client(
            "s3", endpoint_url=endpoint.url, region_name=endpoint.region,
            aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key)
        self.bucket, self.prefix = endpoint.bucket, prefix

    def read(self, key: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")["Body"]
        return body.read()  # type: ignore[no-any-return]

    def write(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}", Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"{self.prefix}/{key}")

    def exists(self, key: str) -> bool:
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}/{key}")
        return any(o["Key"] == f"{self.prefix}/{key}" for o in listed.get("Contents", []))

    def snapshot(self) -> dict[str, Any]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/"):
            for item in page.get("Contents", []):
                if HEALTH not in item["Key"]:
                    found[item["Key"]] = (item["ETag"], item["LastModified"])
        return found


@pytest.fixture(params=["filesystem", "s3", pytest.param("s3-rgw", marks=pytest.mark.rgw)])
def target(request: pytest.FixtureRequest,
           make_berth: MakeBerth) -> Iterator[tuple[BerthServer, Storage]]:
    if request.param.startswith("s3"):
        endpoint = request.getfixturevalue("rgw_s3" if request.param == "s3-rgw"
                                           else "moto_s3")
        config = s3_config(endpoint)
        server = make_berth(config)
        yield server, Bucket(endpoint, config["storage"]["s3"]["rootdirectory"])
    else:
        server = make_berth()
        yield server, Disk(server.root)


def fsck(server: BerthServer, *args: str) -> tuple[int, dict[str, Any]]:
    """`berth fsck --json` over the server's own config (the command as the `berth`
    entry point runs it; called directly so an editable install made before the entry
    point existed runs it too)."""
    result = subprocess.run(
        [sys.executable, "-c", "from registry.commands import fsck; fsck()",
         "--config", str(server.workdir / "config.yml"), "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode in (0, 3, 4), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def found(report: dict[str, Any] | FsckReport) -> set[tuple[str, str | None, bool]]:
    """(kind, digest or tag key, repaired) for each problem."""
    problems = (report["problems"] if isinstance(report, dict)
                else [p.__dict__ for p in report.problems])
    return {(p["kind"], p["digest"] or p["key"].rsplit("/", 3)[-3], p["repaired"] is not None)
            for p in problems}


def flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


@dataclass
class Scenario:
    a: bytes  # app:a, whose layers FLIPPED and REMOVED are damaged
    b: bytes  # app:b, whose manifest is damaged

    @property
    def b_digest(self) -> str:
        return digest(self.b)


def push_images(url: str) -> Scenario:
    a = image(url, "app", layers=[FLIPPED, REMOVED])
    assert put_manifest(url, "app", "a", a).status_code == 201
    b = image(url, "app", layers=[B_LAYER])
    assert put_manifest(url, "app", "b", b).status_code == 201
    assert put_manifest(url, "app", "latest", b).status_code == 201
    other = image(url, "other", layers=[b"another repository's layer"])
    assert put_manifest(url, "other", "v1", other).status_code == 201
    return Scenario(a, b)


def blob_key(d: str) -> str:
    return paths.blob_data(Digest.parse(d))


def damage(storage: Storage, scenario: Scenario) -> None:
    storage.write(blob_key(digest(FLIPPED)), flip(FLIPPED))
    storage.delete(blob_key(digest(REMOVED)))
    storage.write(paths.tag_link("app", "latest"), b"not a digest\n")
    manifest = storage.read(blob_key(scenario.b_digest))
    storage.write(blob_key(scenario.b_digest), manifest[:-1] + b"!")


def expected_unrepaired(scenario: Scenario) -> set[tuple[str, str | None, bool]]:
    return {
        ("corrupt-blob", digest(FLIPPED), False),
        ("corrupt-blob", scenario.b_digest, False),
        ("unparsable-manifest", scenario.b_digest, False),
        ("dangling-layer-link", digest(REMOVED), False),
        ("missing-blob", digest(REMOVED), False),  # image app@a lost a layer
        ("corrupt-tag", "latest", False),
    }


def expected_repaired(scenario: Scenario) -> set[tuple[str, str | None, bool]]:
    return {
        ("corrupt-blob", digest(FLIPPED), True),  # moved aside
        ("corrupt-blob", scenario.b_digest, True),
        ("dangling-layer-link", digest(FLIPPED), True),  # (its data was just moved aside)
        ("dangling-layer-link", digest(REMOVED), True),
        ("dangling-revision", scenario.b_digest, True),
        ("dangling-tag", scenario.b_digest, True),  # app:b
        ("corrupt-tag", "latest", True),
        ("missing-blob", digest(FLIPPED), False),  # app@a lost two layers: a push heals
        ("missing-blob", digest(REMOVED), False),
    }


def test_fsck_reports_repairs_and_a_push_heals(target: tuple[BerthServer, Storage]) -> None:
    server, storage = target
    url = server.url
    scenario = push_images(url)
    code, clean = fsck(server)
    assert code == 0 and clean["problems"] == []
    assert clean["blobs"] == 8 and clean["tags"] == 4  # 1 config (shared), 4 layers, 3 manifests
    damage(storage, scenario)

    before = storage.snapshot()
    code, report = fsck(server)
    assert code == 3
    assert found(report) == expected_unrepaired(scenario)
    assert storage.snapshot() == before  # checking writes nothing
    assert fsck(server, "other")[0] == 0  # only other's links and the blobs it references
    assert fsck(server, "app")[0] == 3

    code, report = fsck(server, "--repair", "--min-age", "0s")
    assert code == 3  # app@a's lost layers cannot be healed by fsck
    assert found(report) == expected_repaired(scenario)
    quarantined = paths.fsck_quarantined(Digest.parse(digest(FLIPPED)))
    assert storage.read(quarantined) == flip(FLIPPED)  # moved aside, never deleted
    assert requests.get(f"{url}/v2/app/tags/list").json()["tags"] == ["a"]
    assert requests.head(f"{url}/v2/app/blobs/{digest(FLIPPED)}").status_code == 404

    # pushes of the right bytes are accepted and heal the images
    assert push_blob(url, "app", FLIPPED) == digest(FLIPPED)
    push_blob(url, "app", REMOVED)
    assert requests.get(f"{url}/v2/app/blobs/{digest(FLIPPED)}").content == FLIPPED
    assert put_manifest(url, "app", "b", scenario.b).status_code == 201
    assert requests.get(f"{url}/v2/app/manifests/b").content == scenario.b
    code, report = fsck(server)
    assert (code, report["problems"]) == (0, [])


def test_fsck_rebuilds_the_indexes(target: tuple[BerthServer, Storage]) -> None:
    server, storage = target
    url = server.url
    push_images(url)
    tags = paths.tag_index("app")
    storage.delete(tags.key("a"))  # a tag missing from its index
    storage.write(tags.key("ghost"), b"")  # and one listed that is not there
    storage.delete(paths.CATALOG_INDEX.key("other"))  # a repository missing from _catalog
    storage.write(paths.CATALOG_INDEX.key("gone"), b"")  # one listed that holds nothing
    assert requests.get(f"{url}/v2/app/tags/list").json()["tags"] == ["b", "ghost", "latest"]

    code, report = fsck(server)
    assert code == 3
    assert {(p["kind"], p["repository"]) for p in report["problems"]} == {
        ("tag-index", "app"), ("catalog-index", None)}
    code, report = fsck(server, "--repair", "--min-age", "0s")
    assert code == 4  # all repaired
    assert all(p["repaired"] for p in report["problems"])
    assert requests.get(f"{url}/v2/app/tags/list").json()["tags"] == ["a", "b", "latest"]
    assert requests.get(f"{url}/v2/_catalog").json()["repositories"] == ["app", "other"]
    assert fsck(server)[0] == 0


def test_fsck_leaves_young_links_alone(make_berth: MakeBerth) -> None:
    """A link or tag written within --min-age may be a push in progress: reported, not
    repaired (the default is a minute)."""
    server = make_berth()
    push_images(server.url)
    disk = Disk(server.root)
    disk.delete(blob_key(digest(REMOVED)))
    disk.write(paths.tag_link("app", "latest"), b"garbage")
    code, report = fsck(server, "--repair")
    assert code == 3
    assert found(report) == {("dangling-layer-link", digest(REMOVED), False),
                             ("missing-blob", digest(REMOVED), False),
                             ("corrupt-tag", "latest", False)}
    assert report["skipped_young"] == 2
    assert disk.exists(paths.layer_link("app", Digest.parse(digest(REMOVED))))


def test_fsck_ignores_foreign_layers_and_checks_indexes_children(make_berth: MakeBerth) -> None:
    server = make_berth()
    url = server.url
    doc = json.loads(image(url, "win", layers=[b"app layer"]))
    doc["layers"].insert(0, {"mediaType": "application/vnd.docker.image.rootfs.foreign."
                             "diff.tar.gzip", "digest": digest(b"never pushed"), "size": 12,
                             "urls": ["https://example.com/base"]})
    win = json.dumps(doc).encode()
    assert put_manifest(url, "win", "ltsc", win).status_code == 201
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest(win),
                                       "size": len(win)}]}).encode()
    assert put_manifest(url, "win", "multi", index,
                        "application/vnd.oci.image.index.v1+json").status_code == 201
    code, report = fsck(server)
    assert (code, report["problems"]) == (0, [])  # the foreign layer is not missing
    Disk(server.root).delete(paths.revision_link("win", Digest.parse(digest(win))))
    code, report = fsck(server, "win")
    assert code == 3
    assert found(report) == {("missing-manifest", digest(win), False),
                             ("dangling-tag", digest(win), False)}


def test_fsck_usage_and_storage_errors_without_traceback(make_berth: MakeBerth,
                                                         tmp_path: Path) -> None:
    server = make_berth()
    push_images(server.url)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from registry.commands import fsck; fsck()", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60)

    for args, message in [
        (["--root", str(server.root), "nosuch"], "no repository nosuch"),
        (["--root", str(server.root), "../etc"], "not a repository name"),
        (["--root", str(server.root), "--min-age", "soon"], "not a duration"),
    ]:
        result = run(*args)
        assert result.returncode == 2, result
        assert message in result.stderr and "Traceback" not in result.stderr
    config = tmp_path / "memory.yml"
    config.write_text("storage: {inmemory: {}}\n")
    result = run("--config", str(config))
    assert result.returncode == 2 and "in-memory" in result.stderr
    unreachable = tmp_path / "unreachable.yml"  # (port 9: discard, nothing listens)
    unreachable.write_text("storage: {s3: {bucket: b, region: us-east-1, regionendpoint: "
                           "'http://127.0.0.1:9', accesskey: a, secretkey: b}}\n")
    result = run("--config", str(unreachable))
    assert result.returncode == 1 and "storage failed" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    result = run("--root", str(server.root))
    assert result.returncode == 0 and "no problems" in result.stdout


# -- in-memory storage: the checker in-process, over the driver ----------------------


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


def sha(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


@pytest.fixture
async def memory() -> AsyncIterator[Registry]:
    reg = Registry.assemble(MemoryDriver(), load_config(None, {}, environ={}))
    yield reg
    await reg.close()


@pytest.fixture(params=["inmemory", "filesystem"])
async def in_process(request: pytest.FixtureRequest,
                     tmp_path: Path) -> AsyncIterator[Registry]:
    driver = MemoryDriver() if request.param == "inmemory" else FilesystemDriver(
        tmp_path, fsync=False)
    reg = Registry.assemble(driver, load_config(None, {}, environ={}))
    yield reg
    await reg.close()


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(sha(config)), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": str(sha(b)), "size": len(b)}
                   for b in layers],
    }).encode()


async def push_image(reg: Registry, repo: str, tags: list[str], layers: list[bytes]) -> bytes:
    config = json.dumps({"layers": len(layers), "repo": repo}).encode()
    for blob in [config, *layers]:
        await reg.uploads.upload(repo, sha(blob), body(blob))
    manifest = manifest_of(config, layers)
    for tag in tags:
        await reg.manifests.put(repo, tag, body(manifest), OCI_MANIFEST)
    return manifest


async def test_fsck_in_memory(memory: Registry) -> None:
    reg, driver = memory, memory.driver
    a = await push_image(reg, "app", ["a"], [FLIPPED, REMOVED])
    b = await push_image(reg, "app", ["b", "latest"], [B_LAYER])
    await push_image(reg, "other", ["v1"], [b"another repository's layer"])
    scenario = Scenario(a, b)
    clean = await Checker(reg).check()
    assert clean.problems == [] and clean.blobs == 10  # 3 configs, 4 layers, 3 manifests
    await driver.put(blob_key(digest(FLIPPED)), flip(FLIPPED))
    await driver.delete(blob_key(digest(REMOVED)))
    await driver.put(paths.tag_link("app", "latest"), b"not a digest\n")
    await driver.put(blob_key(scenario.b_digest), b[:-1] + b"!")

    assert found(await Checker(reg).check()) == expected_unrepaired(scenario)
    report = await Checker(reg, repair=True, min_age=0).check()
    assert found(report) == expected_repaired(scenario)
    assert await driver.get(paths.fsck_quarantined(sha(FLIPPED))) == flip(FLIPPED)

    await reg.uploads.upload("app", sha(FLIPPED), body(FLIPPED))
    await reg.uploads.upload("app", sha(REMOVED), body(REMOVED))
    assert await reg.blobs.read(sha(FLIPPED)) == FLIPPED
    await reg.manifests.put("app", "b", body(b), OCI_MANIFEST)
    assert (await Checker(reg).check()).problems == []


async def test_links_and_referrers(in_process: Registry) -> None:
    """Links whose content is wrong, a manifest's blob stored but not linked, a referrer
    missing from its subject's list, a referrers entry naming no manifest."""
    reg, driver = in_process, in_process.driver
    subject = await push_image(reg, "app", ["v1"], [FLIPPED, REMOVED])
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "text/x-note",
        "config": EMPTY,
        "layers": [], "subject": {"mediaType": OCI_MANIFEST, "digest": str(sha(subject)),
                                  "size": len(subject)}}).encode()
    await reg.manifests.put("app", str(sha(referrer)), body(referrer), OCI_MANIFEST)
    assert (await Checker(reg).check()).problems == []
    await driver.put(paths.layer_link("app", sha(FLIPPED)), b"sha256:0000")
    await driver.delete(paths.layer_link("app", sha(REMOVED)).rsplit("/", 1)[0])
    await driver.delete(paths.referrer_link("app", sha(subject), sha(referrer)))
    ghost = sha(b"no such manifest")
    await driver.put(paths.referrer_link("app", sha(subject), ghost), str(ghost).encode())

    expected = {("corrupt-link", str(sha(FLIPPED))), ("unlinked-blob", str(sha(REMOVED))),
                ("missing-referrer-link", str(sha(referrer))),
                ("dangling-referrer-link", str(ghost))}
    report = await Checker(reg).check()
    assert {(p.kind, p.digest) for p in report.problems} == expected
    assert not any(p.repaired for p in report.problems)
    report = await Checker(reg, repair=True, min_age=0).check()
    assert {(p.kind, p.digest) for p in report.problems} == expected
    assert all(p.repaired for p in report.problems)
    assert (await Checker(reg).check()).problems == []
    assert [i.digest for i in await reg.manifests.referrers("app", sha(subject))] == [
        sha(referrer)]
    assert await reg.blobs.stat("app", sha(REMOVED)) == len(REMOVED)


async def test_repair_leaves_links_of_blobs_a_collection_set_aside(memory: Registry) -> None:
    """A collection may put a set-aside blob back (a push named it): its links stay."""
    await push_image(memory, "app", ["v1"], [FLIPPED])
    assert await memory.blobs.set_aside(sha(FLIPPED), "run1")
    report = await Checker(memory, repair=True, min_age=0).check()
    assert ("dangling-layer-link", str(sha(FLIPPED)), False) in found(report)
    await memory.blobs.restore(sha(FLIPPED), "run1")
    assert await memory.blobs.stat("app", sha(FLIPPED)) == len(FLIPPED)


async def test_scrub_rate_is_a_real_bound(memory: Registry) -> None:
    mib = 1 << 20
    for n in range(3):
        blob = bytes([n]) * mib
        await memory.uploads.upload("app", sha(blob), body(blob))
    began = time.monotonic()
    report = await Checker(memory, rate=2 * mib).check()
    assert report.bytes == 3 * mib
    assert time.monotonic() - began >= 0.98 * 3 / 2  # 3 MiB at 2 MiB/s: 1.5 s at least


# -- the server's background scrub --------------------------------------------------


def test_background_scrub_logs_problems_and_repairs_nothing(make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"scrub": {"enabled": True, "interval": "1s"}}})
    push_images(server.url)
    disk = Disk(server.root)
    disk.write(blob_key(digest(FLIPPED)), flip(FLIPPED))
    deadline = time.monotonic() + 30
    while "scrub: corrupt-blob" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.2)
    assert f"blob {digest(FLIPPED)} holds data" in server.log.read_text()
    assert disk.read(blob_key(digest(FLIPPED))) == flip(FLIPPED)  # verify only


def test_background_scrub_in_memory(make_berth: MakeBerth) -> None:
    """In-memory content is out of the command's reach, not of the server's scrub."""
    server = make_berth({"storage": {"inmemory": {}},
                         "berth": {"scrub": {"enabled": True, "interval": "1s"}}})
    push_images(server.url)
    deadline = time.monotonic() + 30
    while "scrub: 8 blobs" not in server.log.read_text():
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.2)
    assert "no problems" in server.log.read_text().split("scrub: 8 blobs")[1]


def test_scrub_settings() -> None:
    scrub = load_config(None, {}, environ={}).berth.scrub
    assert (scrub.enabled, scrub.interval, scrub.rate) == (False, 7 * 24 * 3600, 50 << 20)
    scrub = load_config(None, {"berth.scrub.interval": "12h", "berth.scrub.rate": 1000},
                        environ={}).berth.scrub
    assert (scrub.interval, scrub.rate) == (12 * 3600, 1000)
    for key, value in [("berth.scrub.interval", "0s"), ("berth.scrub.rate", 0),
                       ("berth.scrub.interval", "weekly")]:
        with pytest.raises(ConfigError):
            load_config(None, {key: value}, environ={})

