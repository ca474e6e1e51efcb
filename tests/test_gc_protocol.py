"""Garbage collection against concurrent pushes, interleaving forced (issue 11): a driver
that stops at a chosen storage operation lets a push run in the middle of a collection,
or a collection in the middle of a push, at exactly the points docs/gc.md argues about.
The stores are the real ones, over the real filesystem driver."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from client.oci.digest import Digest
from registry import errors
from registry.config import load_config
from registry.storage import Registry, paths
from registry.storage.drivers.filesystem import FilesystemDriver
from registry.storage.gc import GarbageCollector

from .helpers import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST

GRACE = 60.0
Hook = Callable[[str, str], Awaitable[None]]


class Gate:
    """Stops the `nth` storage operation `op` on `key` until `go` is set."""

    def __init__(self, op: str, key: str, nth: int = 1) -> None:
        self.op, self.key, self.left = op, key, nth
        self.reached, self.go = asyncio.Event(), asyncio.Event()

    async def __call__(self, op: str, key: str) -> None:
        if op == self.op and key == self.key:
            self.left -= 1
            if self.left == 0:
                self.reached.set()
                await self.go.wait()


class GatedDriver(FilesystemDriver):
    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.gates: list[Hook] = []

    async def _at(self, op: str, key: str) -> None:
        for gate in list(self.gates):
            await gate(op, key)

    async def move(self, source: str, destination: str) -> None:
        await self._at("move", source)
        await super().move(source, destination)

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        await self._at("put", path)
        await super().put(path, data, durable)

    async def delete(self, path: str) -> None:
        await self._at("delete", path)
        await super().delete(path)

    async def stat(self, path: str) -> object:  # type: ignore[override]
        await self._at("stat", path)
        return await super().stat(path)


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[tuple[Registry, GatedDriver]]:
    driver = GatedDriver(tmp_path / "root")
    config = load_config(None, {"berth.gc.grace": GRACE}, environ={})
    reg = Registry.assemble(driver, config)
    yield reg, driver
    await reg.close()


@contextlib.asynccontextmanager
async def other_replica(root: Path) -> AsyncIterator[Registry]:
    """Another process's stores over the same storage."""
    config = load_config(None, {"berth.gc.grace": GRACE}, environ={})
    replica = Registry.assemble(FilesystemDriver(root, fsync=False), config)
    try:
        yield replica
    finally:
        await replica.close()


def sha(data: bytes) -> Digest:
    return Digest.parse("sha256:" + hashlib.sha256(data).hexdigest())


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def old_blob(reg: Registry, driver: GatedDriver, repo: str, data: bytes) -> Digest:
    """A blob pushed an hour ago (by a process long gone) that nothing references any
    more."""
    digest = sha(data)
    async with other_replica(driver.root) as gone:
        await gone.uploads.upload(repo, digest, body(data))
    hour_ago = time.time() - 3600
    for key in (paths.blob_data(digest), paths.use_record(digest)):
        if (driver.root / key).exists():
            os.utime(driver.root / key, (hour_ago, hour_ago))
    return digest


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": str(sha(config)), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": str(sha(b)), "size": len(b)}
                   for b in layers],
    }).encode()


async def push(reg: Registry, repo: str, ref: str, data: bytes,
               media_type: str = OCI_MANIFEST) -> None:
    await reg.manifests.put(repo, ref, body(data), media_type)


async def blob_there(reg: Registry, digest: Digest) -> bool:
    return await reg.blobs.size(digest) is not None


async def test_push_between_the_decision_and_setting_aside(
        registry: tuple[Registry, GatedDriver]) -> None:
    """The issue's race: the collection has judged an old layer unreferenced; before it
    acts, a client (having HEADed the layer) pushes a manifest using it. Before the
    protocol the collection deleted the layer under the acknowledged manifest."""
    reg, driver = registry
    config, layer = b'{"os":"linux"}', b"an old base layer"
    await reg.uploads.upload("app", sha(config), body(config))  # pushed just now
    layer_digest = await old_blob(reg, driver, "app", layer)
    gate = Gate("move", paths.blob_data(layer_digest))
    driver.gates.append(gate)
    collection = asyncio.create_task(GarbageCollector(reg).collect())
    await asyncio.wait_for(gate.reached.wait(), 10)
    await push(reg, "app", "v2", manifest_of(config, [layer]))  # acknowledged
    gate.go.set()
    report = await collection
    assert report.restored >= 1
    assert str(layer_digest) not in report.deleted_blobs
    assert await blob_there(reg, layer_digest)
    info, _ = await reg.manifests.get("app", "v2")
    assert info.digest == sha(manifest_of(config, [layer]))


async def test_collection_in_the_middle_of_a_push(
        registry: tuple[Registry, GatedDriver]) -> None:
    """A push has checked its layer and is about to publish; a whole collection runs."""
    reg, driver = registry
    config, layer = b'{"os":"linux","n":2}', b"another old layer"
    await old_blob(reg, driver, "app", config)
    layer_digest = await old_blob(reg, driver, "app", layer)
    manifest = manifest_of(config, [layer])
    gate = Gate("put", paths.revision_link("app", sha(manifest)))
    driver.gates.append(gate)
    pushing = asyncio.create_task(push(reg, "app", "v1", manifest))
    await asyncio.wait_for(gate.reached.wait(), 10)
    driver.gates.clear()
    report = await GarbageCollector(reg).collect()
    assert report.kept_named >= 2  # config and layer: named by the push
    gate.go.set()
    await pushing
    assert await blob_there(reg, layer_digest)
    assert (await reg.manifests.get("app", "v1"))[1] == manifest


async def test_push_while_a_layer_is_set_aside(registry: tuple[Registry, GatedDriver]) -> None:
    """The layer is out of sight when the push checks it: the push is refused (nothing
    acknowledged), the collection sees the push's record and puts the layer back, and
    the push, sent again, succeeds."""
    reg, driver = registry
    config, layer = b'{"os":"linux","n":3}', b"a third old layer"
    await old_blob(reg, driver, "app", config)
    layer_digest = await old_blob(reg, driver, "app", layer)
    gate = Gate("stat", paths.use_record(layer_digest), nth=2)  # the re-check
    driver.gates.append(gate)
    collection = asyncio.create_task(GarbageCollector(reg).collect())
    await asyncio.wait_for(gate.reached.wait(), 10)
    assert not await blob_there(reg, layer_digest)  # set aside
    with pytest.raises(errors.ManifestBlobUnknown):
        await push(reg, "app", "v3", manifest_of(config, [layer]))
    gate.go.set()
    report = await collection
    assert report.restored >= 1 and await blob_there(reg, layer_digest)
    # sent again as a client does: blobs it finds missing (the config, judged before the
    # push named it, is gone) uploaded again first
    for blob in (config, layer):
        if not await blob_there(reg, sha(blob)):
            await reg.uploads.upload("app", sha(blob), body(blob))
    await push(reg, "app", "v3", manifest_of(config, [layer]))


async def test_index_push_while_its_child_is_forgotten(
        registry: tuple[Registry, GatedDriver]) -> None:
    """`delete_untagged` is about to forget an old untagged manifest when an index naming
    it is pushed: the manifest and its blobs stay."""
    reg, driver = registry
    config, layer = b'{"os":"linux","n":4}', b"layer of the child"
    await old_blob(reg, driver, "app", config)
    layer_digest = await old_blob(reg, driver, "app", layer)
    child = manifest_of(config, [layer])
    await push(reg, "app", str(sha(child)), child)
    hour_ago = time.time() - 3600
    for key in (paths.blob_data(sha(child)), paths.revision_link("app", sha(child))):
        os.utime(driver.root / key, (hour_ago, hour_ago))
    for named in (child, config, layer):  # named by a push long ago
        os.utime(driver.root / paths.use_record(sha(named)), (hour_ago, hour_ago))
    gate = Gate("delete", paths.revision_link("app", sha(child)).rsplit("/", 1)[0])
    driver.gates.append(gate)
    collection = asyncio.create_task(GarbageCollector(reg).collect(delete_untagged=True))
    await asyncio.wait_for(gate.reached.wait(), 10)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": str(sha(child)), "size": len(child)}]}).encode()
    async with other_replica(driver.root) as replica:  # a process that never named it
        await push(replica, "app", "multi", index, OCI_INDEX)  # acknowledged
    gate.go.set()
    report = await collection
    assert f"app@{sha(child)}" not in report.deleted_manifests
    assert await reg.manifests.exists("app", sha(child))
    assert await blob_there(reg, layer_digest) and await blob_there(reg, sha(child))


async def test_stopped_collection_puts_back_what_it_set_aside(
        registry: tuple[Registry, GatedDriver]) -> None:
    """A collection cancelled mid-decision puts the blob back at once; one killed outright
    leaves it set aside, and the next collection puts it back before judging it again."""
    reg, driver = registry
    layer_digest = await old_blob(reg, driver, "app", b"set aside, then stopped")
    gate = Gate("stat", paths.use_record(layer_digest), nth=2)
    driver.gates.append(gate)
    collection = asyncio.create_task(GarbageCollector(reg).collect())
    await asyncio.wait_for(gate.reached.wait(), 10)
    collection.cancel()
    with pytest.raises(asyncio.CancelledError):
        await collection
    assert await blob_there(reg, layer_digest)
    driver.gates.clear()
    # killed: the set-aside copy is all that is left
    await reg.blobs.set_aside(layer_digest, "killed-run")
    assert not await blob_there(reg, layer_digest)
    recovery = GarbageCollector(reg, grace=10 ** 6)  # judges nothing old enough
    await recovery.collect()
    assert await blob_there(reg, layer_digest)
    assert await reg.blobs.runs_with_set_aside() == []


async def test_push_slower_than_half_the_grace_period_publishes_nothing(
        tmp_path: Path) -> None:
    """The push's side of the bound: a record is trusted for half the grace period, so a
    push that takes longer is refused (503, retried by clients) before it publishes."""
    driver = GatedDriver(tmp_path / "root")
    reg = Registry.assemble(driver, load_config(None, {"berth.gc.grace": "0.4s"}, environ={}))
    try:
        config = b'{"os":"linux","slow":true}'
        await reg.uploads.upload("app", sha(config), body(config))
        manifest = manifest_of(config, [])
        gate = Gate("put", paths.blob_data(sha(manifest)))
        driver.gates.append(gate)
        pushing = asyncio.create_task(push(reg, "app", "slow", manifest))
        await asyncio.wait_for(gate.reached.wait(), 10)
        await asyncio.sleep(0.3)
        gate.go.set()
        with pytest.raises(errors.Unavailable, match="push it again"):
            await pushing
        assert not await reg.manifests.exists("app", sha(manifest))
        driver.gates.clear()
        await push(reg, "app", "slow", manifest)  # sent again, in time
        assert await reg.manifests.exists("app", sha(manifest))
    finally:
        await reg.close()


@pytest.mark.parametrize("how", ["upload", "mount"])
async def test_blob_pushed_again_while_a_collection_judges_it(
        registry: tuple[Registry, GatedDriver], how: str) -> None:
    """A client uploads (or mounts) an old blob the collection has judged unreferenced; the
    registry finds the bytes there, keeps them and answers 201. The upload or mount names
    the blob before it looks, as a manifest push does, so the collection puts it back."""
    reg, driver = registry
    data = b"a layer pushed again an hour later"
    digest = await old_blob(reg, driver, "app", data)
    gate = Gate("move", paths.blob_data(digest))
    driver.gates.append(gate)
    collection = asyncio.create_task(GarbageCollector(reg).collect())
    await asyncio.wait_for(gate.reached.wait(), 10)
    async with other_replica(driver.root) as replica:
        if how == "upload":
            await replica.uploads.upload("other", digest, body(data))
        else:
            assert await replica.blobs.mount("other", digest, "app") == len(data)
    gate.go.set()
    report = await collection
    assert report.restored == 1 and str(digest) not in report.deleted_blobs
    assert await reg.blobs.read(digest) == data


async def test_second_collection_while_the_first_has_a_blob_set_aside(
        registry: tuple[Registry, GatedDriver]) -> None:
    """Two collections at once: the second finds the first's set-aside blob, stored again
    meanwhile by an upload, and drops the spare copy; the first, seeing the upload's
    record, wants it back and finds it in place. Neither fails, nothing is lost."""
    reg, driver = registry
    data = b"judged by two collections"
    digest = await old_blob(reg, driver, "app", data)
    gate = Gate("stat", paths.use_record(digest), nth=2)  # the first run's re-check
    driver.gates.append(gate)
    first = asyncio.create_task(GarbageCollector(reg).collect())
    await asyncio.wait_for(gate.reached.wait(), 10)
    assert not await blob_there(reg, digest)
    async with other_replica(driver.root) as replica:
        await replica.uploads.upload("app", digest, body(data))  # stored again: 201
        second = await GarbageCollector(replica).collect()
    assert str(digest) not in second.deleted_blobs
    gate.go.set()
    report = await first
    assert str(digest) not in report.deleted_blobs
    assert await reg.blobs.read(digest) == data
    assert await reg.blobs.runs_with_set_aside() == []


class _TagGatedDriver(GatedDriver):
    async def is_object(self, path: str) -> bool:
        await self._at("is_object", path)
        return await super().is_object(path)


async def test_first_tags_of_two_replicas_are_both_indexed(tmp_path: Path) -> None:
    """Found by the GC-under-load test on S3: replica A indexes a new repository's tags
    from a listing taken before replica B's first tag was written, and marks the index
    complete just before B looks: B's tag resolved but was in no listing — and a
    collection with `delete_untagged` forgot its manifest. Each push now adds its own
    entry, and collections read the tags from their links."""
    root = tmp_path / "root"
    config = load_config(None, {"berth.gc.grace": GRACE}, environ={})
    a_driver, b_driver = _TagGatedDriver(root), _TagGatedDriver(root)
    a, b = Registry.assemble(a_driver, config), Registry.assemble(b_driver, config)
    try:
        data = b"{}"
        digest = sha(data)
        index = paths.tag_index("app")
        a_gate = Gate("put", index.key("a"))  # A has listed the links: only `a` is there
        a_driver.gates.append(a_gate)
        a_push = asyncio.create_task(a.tags.set("app", "a", digest))
        await asyncio.wait_for(a_gate.reached.wait(), 10)
        b_gate = Gate("is_object", index.complete, nth=2)  # B's second look at the marker
        b_driver.gates.append(b_gate)
        b_push = asyncio.create_task(b.tags.set("app", "b", digest))
        await asyncio.wait_for(b_gate.reached.wait(), 10)
        a_gate.go.set()
        await a_push  # A's index: complete, from its listing
        b_gate.go.set()
        await b_push
        assert await a.tags.names("app") == ["a", "b"]
        assert await a.tags.linked("app") == ["a", "b"]
    finally:
        await a.close()
        await b.close()
