"""Quotas (issue 11): berth.quotas refusals at manifest push, upload commit and mount, on
every driver; usage kept by deltas, exact after a GC recount; two processes on one root."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests

from client.oci.digest import Digest
from registry.config import load_config
from registry.storage import Registry
from registry.storage.drivers.filesystem import FilesystemDriver
from registry.storage.usage import Usage

from .conftest import MakeBerth, s3_config
from .helpers import digest, error_code, image, push_blob, put_manifest
from .servers import ROOT, BerthServer

DRIVERS = ["filesystem", "inmemory", "s3"]
ON_DISK = ["filesystem", "s3"]  # those `berth gc` and `berth du` can read from outside


def storage(driver: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if driver == "inmemory":
        return {"storage": {"inmemory": {}}}
    if driver == "s3":
        return s3_config(request.getfixturevalue("moto_s3"))
    return {}


def with_quotas(driver: str, request: pytest.FixtureRequest,
                *rules: dict[str, Any]) -> dict[str, Any]:
    return {**storage(driver, request), "berth": {"quotas": list(rules)}}


def command(server: BerthServer, name: str, *args: str) -> dict[str, Any]:
    """`berth gc` / `berth du` on the server's storage, through its own config file."""
    result = subprocess.run(
        [sys.executable, "-c", f"from registry.commands import {name}; {name}()",
         "--config", str(server.workdir / "config.yml"), "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def counted(server: BerthServer, repo: str) -> tuple[int, int]:
    """(bytes, tags) the quotas count for `repo`, and that the walk finds."""
    row = command(server, "du", repo)["repositories"][0]
    return row["counted_bytes"], row["counted_tags"]


def walked(server: BerthServer, repo: str) -> tuple[int, int]:
    row = command(server, "du", repo)["repositories"][0]
    return row["logical"], row["tags"]


def write_delta(server: BerthServer, driver: str, request: pytest.FixtureRequest, repo: str,
                epoch: int, delta: dict[str, int]) -> None:
    """A delta object as another process (one that stopped) would have left it."""
    key = f"docker/registry/v2/repositories/{repo}/_usage/{epoch}/elsewhere"
    data = json.dumps(delta).encode()
    if driver == "filesystem":
        (server.root / key).parent.mkdir(parents=True, exist_ok=True)
        (server.root / key).write_bytes(data)
        return
    import boto3

    endpoint = request.getfixturevalue("moto_s3")
    boto3.client("s3", endpoint_url=endpoint.url, region_name=endpoint.region,
                 aws_access_key_id=endpoint.access_key,
                 aws_secret_access_key=endpoint.secret_key).put_object(
        Bucket=endpoint.bucket, Body=data,
        Key=f"{server.config['storage']['s3']['rootdirectory']}/{key}")


def denied(response: requests.Response) -> str:
    assert response.status_code == 403, response.text
    assert error_code(response) == "DENIED"
    return str(response.json()["errors"][0]["message"])


def visible(server: BerthServer, repo: str, d: str) -> bool:
    return requests.head(f"{server.url}/v2/{repo}/blobs/{d}").status_code == 200


def blob_stored(server: BerthServer, d: str) -> bool:
    """Whether the content store of a filesystem root holds `d` (checked on disk)."""
    hexa = d.split(":")[1]
    return (server.root / "docker/registry/v2/blobs/sha256" / hexa[:2] / hexa).exists()


@pytest.mark.parametrize("driver", DRIVERS)
def test_manifest_push_over_maxbytes_is_refused(make_berth: MakeBerth, driver: str,
                                                request: pytest.FixtureRequest) -> None:
    layer = os.urandom(3000)
    server = make_berth(with_quotas(driver, request, {"repositories": "other/*",
                                                      "maxbytes": 10},
                                    {"repositories": "t/**", "maxbytes": "3.2KiB"}))
    manifest = image(server.url, "t/app", layers=[layer])  # config + 3000 B: fits
    config = json.loads(manifest)["config"]["size"]
    assert 3000 + config + len(manifest) > 3276
    message = denied(put_manifest(server.url, "t/app", "v1", manifest))
    assert message == (f"quota of t/** (berth.quotas[1]): 3.20 KiB stored bytes; this push "
                       f"needs {len(manifest)} B more, "
                       f"{(3000 + config) / 1024:.2f} KiB used")
    assert requests.get(f"{server.url}/v2/t/app/manifests/v1").status_code == 404
    assert requests.get(f"{server.url}/v2/t/app/manifests/{digest(manifest)}").status_code == 404
    # repositories no rule matches have no quota
    assert put_manifest(server.url, "free", "v1", image(server.url, "free",
                                                        layers=[layer])).status_code == 201


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("how", ["monolithic", "chunked", "mount"])
def test_upload_commit_over_maxbytes_leaves_nothing(make_berth: MakeBerth, driver: str,
                                                    how: str,
                                                    request: pytest.FixtureRequest) -> None:
    server = make_berth(with_quotas(driver, request, {"repositories": "t/*",
                                                      "maxbytes": 1000}))
    url = server.url
    first = os.urandom(600)
    push_blob(url, "t/app", first)
    extra = os.urandom(600)
    d = digest(extra)
    if how == "monolithic":
        r = requests.post(f"{url}/v2/t/app/blobs/uploads/", params={"digest": d}, data=extra)
        location = None
    elif how == "chunked":
        r = requests.post(f"{url}/v2/t/app/blobs/uploads/")
        location = url + r.headers["Location"]
        for start in (0, 300):
            assert requests.patch(location, data=extra[start:start + 300], headers={
                "Content-Range": f"{start}-{start + 299}",
                "Content-Type": "application/octet-stream"}).status_code == 202
        r = requests.put(location, params={"digest": d})
    else:
        push_blob(url, "elsewhere", extra)
        r = requests.post(f"{url}/v2/t/app/blobs/uploads/", params={"mount": d,
                                                                    "from": "elsewhere"})
        location = None
    assert denied(r) == ("quota of t/* (berth.quotas[0]): 1000 B stored bytes; this push "
                         "needs 600 B more, 600 B used")
    assert not visible(server, "t/app", d)
    if location is not None:  # the session is gone with it
        assert requests.get(location).status_code == 404
    if driver == "filesystem":
        assert blob_stored(server, d) == (how == "mount")  # (mount: stored for `elsewhere`)
        uploads = server.root / "docker/registry/v2/repositories/t/app/_uploads"
        assert not uploads.exists() or not any(uploads.iterdir())
    # what fits still goes in; then, at the limit, pushing a held blob again needs nothing
    push_blob(url, "t/app", os.urandom(400))
    push_blob(url, "t/app", first)


@pytest.mark.parametrize("driver", DRIVERS)
def test_maxtags(make_berth: MakeBerth, driver: str, request: pytest.FixtureRequest) -> None:
    server = make_berth(with_quotas(driver, request, {"repositories": "t/**", "maxtags": 2}))
    url = server.url
    manifest = image(url, "t/app", layers=[b"layer"])
    assert put_manifest(url, "t/app", "a", manifest).status_code == 201
    assert put_manifest(url, "t/app", "b", manifest).status_code == 201
    assert denied(put_manifest(url, "t/app", "c", manifest)) == (
        "quota of t/** (berth.quotas[0]): 2 tags; this push adds 1 more, 2 used")
    assert requests.get(f"{url}/v2/t/app/manifests/c").status_code == 404
    # at the limit, pushing what is there again is accepted (by tag and by digest)
    assert put_manifest(url, "t/app", "a", manifest).status_code == 201
    assert put_manifest(url, "t/app", digest(manifest), manifest).status_code == 201
    other = image(url, "t/app", layers=[b"other layer"])
    assert put_manifest(url, "t/app", "a", other).status_code == 201  # a moved: no new tag
    assert requests.delete(f"{url}/v2/t/app/manifests/b").status_code == 202
    assert put_manifest(url, "t/app", "c", manifest).status_code == 201
    assert requests.get(f"{url}/v2/t/app/tags/list").json()["tags"] == ["a", "c"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_pushing_the_same_image_again_at_the_byte_limit(make_berth: MakeBerth, driver: str,
                                                        request: pytest.FixtureRequest) -> None:
    layer = os.urandom(2000)
    probe = make_berth(storage(driver, request))
    manifest = image(probe.url, "t/app", layers=[layer])
    exact = sum(len(b) for b in (layer, manifest)) + json.loads(manifest)["config"]["size"]
    server = make_berth(with_quotas(driver, request, {"repositories": "t/app",
                                                      "maxbytes": exact}))
    assert image(server.url, "t/app", layers=[layer]) == manifest
    assert put_manifest(server.url, "t/app", "v1", manifest).status_code == 201
    assert image(server.url, "t/app", layers=[layer]) == manifest  # every blob again: 201
    assert put_manifest(server.url, "t/app", "v1", manifest).status_code == 201
    denied(requests.post(f"{server.url}/v2/t/app/blobs/uploads/",
                         params={"digest": digest(b"1")}, data=b"1"))


COUNTED = {"repositories": "**", "maxbytes": "1TiB"}  # usage is kept only with quotas


@pytest.mark.parametrize("driver", ON_DISK)
def test_usage_follows_pushes_and_deletes_and_gc_recounts_it(
        make_berth: MakeBerth, driver: str, request: pytest.FixtureRequest) -> None:
    server = make_berth(with_quotas(driver, request, COUNTED))
    url = server.url
    base, own = os.urandom(1500), os.urandom(700)
    manifest = image(url, "t/app", layers=[base, own])
    config = json.loads(manifest)["config"]["size"]
    put_manifest(url, "t/app", "v1", manifest)
    put_manifest(url, "t/app", "v2", manifest)
    push_blob(url, "t/app", base)  # again: counted once
    requests.post(f"{url}/v2/t/app/blobs/uploads/", params={"mount": digest(base)})
    expected = 1500 + 700 + config + len(manifest)
    assert counted(server, "t/app") == (expected, 2)
    assert walked(server, "t/app") == (expected, 2)

    assert requests.delete(f"{url}/v2/t/app/blobs/{digest(own)}").status_code == 202
    assert requests.delete(f"{url}/v2/t/app/manifests/v2").status_code == 202
    # (the manifest still names `own`, so the walk still finds it: counted is links only)
    assert counted(server, "t/app") == (expected - 700, 1)
    assert requests.delete(f"{url}/v2/t/app/manifests/{digest(manifest)}").status_code == 202
    assert counted(server, "t/app") == (1500 + config, 0)

    # a process that stopped before writing its delta, or two that both counted one blob:
    # the counters drift; a collection's recount makes them exact again
    requests.post(f"{url}/v2/t/app/blobs/uploads/", params={"digest": digest(b"late")},
                  data=b"late")
    write_delta(server, driver, request, "t/app", 0, {"bytes": 12345, "tags": 3})
    assert counted(server, "t/app") == (1500 + config + 4 + 12345, 3)
    command(server, "gc")  # the default grace keeps every blob: a recount only
    assert counted(server, "t/app") == (1500 + config + 4, 0)
    # a delta of the old epoch written late (by a process slow to write it) is void
    write_delta(server, driver, request, "t/app", 0, {"bytes": 999, "tags": 1})
    assert counted(server, "t/app") == (1500 + config + 4, 0)
    # and counting goes on from the new baseline
    push_blob(url, "t/app", b"after")
    assert counted(server, "t/app") == (1500 + config + 4 + 5, 0)
    assert walked(server, "t/app") == (1500 + config + 4 + 5, 0)


def test_gc_deletions_are_recounted(make_berth: MakeBerth) -> None:
    server = make_berth({"berth": {"quotas": [COUNTED]}})
    kept = image(server.url, "t/app", layers=[b"kept"])
    put_manifest(server.url, "t/app", "v1", kept)
    push_blob(server.url, "t/app", b"never referenced")
    before = counted(server, "t/app")[0]
    report = command(server, "gc", "--grace", "0s")
    assert report["deleted_blobs"] == [digest(b"never referenced")]
    assert counted(server, "t/app") == (before - len(b"never referenced"), 1)


def test_two_processes_on_one_root(tmp_path: Path) -> None:
    """Concurrent pushes through two servers: counted within the documented bound (each
    blob both pushed at once counted at most twice), exact after a recount; a quota
    decision in one sees the other's pushes within the cache age."""
    root = tmp_path / "root"
    servers = [BerthServer(tmp_path / name, {"storage": {"filesystem": {
        "rootdirectory": str(root)}}, "berth": {"quotas": [
            {"repositories": "t/limited", "maxbytes": 5000}]}}) for name in ("a", "b")]
    for workdir in ("a", "b"):
        (tmp_path / workdir).mkdir()
    try:
        for server in servers:
            server.start()
        shared = [os.urandom(1000 + i) for i in range(20)]  # pushed through both at once
        own = {s.url: [os.urandom(500 + i) for i in range(10)] for s in servers}
        failures: list[str] = []

        def push(server: BerthServer) -> None:
            session = requests.Session()
            for blob in [*shared, *own[server.url]]:
                r = session.post(f"{server.url}/v2/t/busy/blobs/uploads/",
                                 params={"digest": digest(blob)}, data=blob)
                if r.status_code != 201:
                    failures.append(r.text)

        threads = [threading.Thread(target=push, args=(s,)) for s in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        exact = sum(map(len, shared)) + sum(len(b) for blobs in own.values() for b in blobs)
        assert walked(servers[0], "t/busy") == (exact, 0)
        bytes_counted, _ = counted(servers[0], "t/busy")
        assert exact <= bytes_counted <= exact + sum(map(len, shared))
        command(servers[0], "gc")
        assert counted(servers[0], "t/busy") == (exact, 0)

        a, b = (s.url for s in servers)
        push_blob(a, "t/limited", os.urandom(3000))
        refused = requests.post(f"{b}/v2/t/limited/blobs/uploads/",
                                params={"digest": digest(b"y" * 2500)}, data=b"y" * 2500)
        denied(refused)
        assert refused.json()["errors"][0]["detail"] == {
            "quota": "berth.quotas[0]", "repositories": "t/limited", "of": "bytes",
            "max": 5000, "used": 3000, "needed": 2500}
    finally:
        for server in servers:
            server.stop()


class _Watched(FilesystemDriver):
    """Says when a recount has written a baseline (its walk of that repository is over)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, fsync=False)
        self.baseline_written = asyncio.Event()

    async def put(self, path: str, data: bytes, durable: bool = True) -> None:
        await super().put(path, data, durable)
        if path.endswith("/_usage/baseline"):
            self.baseline_written.set()


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_a_push_racing_a_recount_is_counted(tmp_path: Path) -> None:
    """A process that read the epoch just before a recount began links a blob after the
    recount walked the repository: its change must count in the new epoch (the recount
    waits out the time a process trusts an epoch), not in the old one that the new
    baseline makes void."""
    config = load_config(None, {"berth.quotas": [COUNTED]}, environ={})
    root = tmp_path / "root"
    pusher = Registry.assemble(FilesystemDriver(root, fsync=False), config)
    collector_driver = _Watched(root)
    collector = Registry.assemble(collector_driver, config)
    try:
        first, late = os.urandom(700), os.urandom(300)
        await pusher.uploads.upload("app", Digest.parse(digest(first)), _body(first))
        assert await pusher.usage.epoch() == 0  # read, and trusted for a while
        recount = asyncio.ensure_future(collector.usage.recount(["app"]))
        await collector_driver.baseline_written.wait()
        await pusher.uploads.upload("app", Digest.parse(digest(late)), _body(late))
        assert (await recount)["app"] == Usage(700, 0)
        assert await collector.usage.read("app") == Usage(1000, 0)
    finally:
        await pusher.close()
        await collector.close()


@pytest.mark.parametrize(("given", "size"), [
    (512, 512), ("512", 512), ("100MB", 100_000_000), ("10GiB", 10 * 1024**3),
    ("1.5 TiB", int(1.5 * 1024**4)), ("2k", 2048), ("3kB", 3000), ("7 B", 7)])
def test_quota_sizes(given: object, size: int) -> None:
    config = load_config(None, {"berth.quotas": [{"repositories": "*", "maxbytes": given}]},
                         environ={})
    assert config.berth.quotas[0].maxbytes == size


@pytest.mark.parametrize(("rules", "message"), [
    ([{"repositories": "team/**", "maxbytes": "ten"}],
     "berth.quotas[0].maxbytes: not a size: 'ten' (use e.g. 500MB, 10GiB, or bytes)"),
    ([{"repositories": "a", "maxtags": 1}, {"repositories": "team/**"}],
     "berth.quotas[1]: the rule for 'team/**' sets neither maxbytes nor maxtags"),
    ([{"repositories": "a", "maxtags": -1}],
     "berth.quotas[0].maxtags: Input should be greater than or equal to 0"),
    ([{"repositories": "a", "maxbytes": 5, "maxsize": 1}], "berth.quotas[0].maxsize: unknown key"),
])
def test_bad_quota_rules_stop_the_server(tmp_path: Path, rules: list[dict[str, Any]],
                                         message: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"berth": {"quotas": rules}}))
    result = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--config",
                             str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"berth: config error: {config}: {message}\n"


def test_fsck_repair_recounts_usage(make_berth: MakeBerth, request: pytest.FixtureRequest,
                                    ) -> None:
    """`berth fsck --repair` makes the quotas' counts exact, as a collection does."""
    server = make_berth(with_quotas("filesystem", request, COUNTED))
    manifest = image(server.url, "t/app", layers=[b"counted by fsck"])
    put_manifest(server.url, "t/app", "v1", manifest)
    exact = walked(server, "t/app")
    write_delta(server, "filesystem", request, "t/app", 0, {"bytes": 10 ** 9, "tags": 7})
    assert counted(server, "t/app") != exact  # a stale delta, say of a crashed process
    result = subprocess.run(
        [sys.executable, "-c", "from registry.commands import fsck; fsck()",
         "--config", str(server.workdir / "config.yml"), "--repair", "--min-age", "0s",
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # storage itself was healthy
    assert json.loads(result.stdout)["usage_recounted"] == 1
    assert counted(server, "t/app") == exact
