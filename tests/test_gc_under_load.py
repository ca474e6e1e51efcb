"""Garbage collection running every few tenths of a second, with a one-second grace, while
clients push images that share layers across repositories, delete tags, and re-push old
layers the way the issue's race needs (HEAD: present, so not uploaded; then a manifest
naming it). Afterwards every image whose push was acknowledged and not deleted pulls
whole, and a collection finds nothing more to delete. On disk, moto and Ceph RGW."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from .conftest import MakeBerth, s3_config
from .helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST
from .servers import ROOT, BerthServer

pytestmark = pytest.mark.slow

SECONDS = 20.0  # of pushing
CLIENTS = 6
REPOSITORIES = ["team/a", "team/b", "team/c"]


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Tally:
    acknowledged: dict[tuple[str, str], tuple[str, list[bytes]]] = field(default_factory=dict)
    pushed: int = 0
    deleted: int = 0
    repushed_old: int = 0
    retried: int = 0


class Pusher:
    def __init__(self, base: str, session: aiohttp.ClientSession, tally: Tally) -> None:
        self.base, self.http, self.tally = base, session, tally

    async def ensure_blob(self, repo: str, data: bytes) -> None:
        """As clients do: HEAD, upload only when missing."""
        digest = sha(data)
        async with self.http.head(f"{self.base}/v2/{repo}/blobs/{digest}") as r:
            if r.status == 200:
                return
        async with self.http.post(f"{self.base}/v2/{repo}/blobs/uploads/",
                                  params={"digest": digest}, data=data) as r:
            assert r.status == 201, await r.text()

    async def push_image(self, repo: str, tag: str, layers: list[bytes],
                         upload: bool = True) -> bool:
        """Push config, layers (unless `upload` is False: the client believes them there)
        and the manifest; True when the registry acknowledged the manifest."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha(b), "size": len(b)}
                       for b in layers],
        }).encode()
        for attempt in range(6):
            for blob in [config, *layers] if upload or attempt else [config]:
                await self.ensure_blob(repo, blob)
            async with self.http.put(f"{self.base}/v2/{repo}/manifests/{tag}", data=manifest,
                                     headers={"Content-Type": OCI_MANIFEST}) as r:
                if r.status == 201:
                    self.tally.acknowledged[(repo, tag)] = (sha(manifest), [config, *layers])
                    self.tally.pushed += 1
                    return True
                body = await r.text()
                # set aside by a collection just then, or too slow: as a client, send again
                assert r.status in (400, 503), body
                assert r.status == 503 or "MANIFEST_BLOB_UNKNOWN" in body, body
                self.tally.retried += 1
        return False

    async def delete_tag(self, repo: str, tag: str) -> None:
        async with self.http.delete(f"{self.base}/v2/{repo}/manifests/{tag}") as r:
            assert r.status == 202, await r.text()
        self.tally.acknowledged.pop((repo, tag), None)
        self.tally.deleted += 1


async def workload(server: BerthServer, tally: Tally) -> None:
    base_layers = [os.urandom(2048) + b"base %d" % i for i in range(6)]
    deadline = time.monotonic() + SECONDS
    async with aiohttp.ClientSession() as session:
        pusher = Pusher(server.url, session, tally)

        async def client(number: int) -> None:
            rng = random.Random(number)
            count = 0
            while time.monotonic() < deadline:
                count += 1
                repo = rng.choice(REPOSITORIES)
                tag = f"c{number}-{count}"
                layers = [*rng.sample(base_layers, 2), os.urandom(1024)]
                if not await pusher.push_image(repo, tag, layers):
                    continue
                if rng.random() < 0.5:  # delete it, wait out the grace, reuse its layer
                    await pusher.delete_tag(repo, tag)
                    await asyncio.sleep(rng.uniform(0.8, 1.6))
                    await pusher.push_image(repo, f"{tag}-again", [layers[-1]], upload=False)
                    tally.repushed_old += 1

        await asyncio.gather(*(client(n) for n in range(CLIENTS)))


async def verify(server: BerthServer, tally: Tally) -> int:
    verified = 0
    async with aiohttp.ClientSession() as session:
        for (repo, tag), (digest, blobs) in sorted(tally.acknowledged.items()):
            async with session.get(f"{server.url}/v2/{repo}/manifests/{tag}",
                                   headers={"Accept": OCI_MANIFEST}) as r:
                assert r.status == 200, f"{repo}:{tag}: {r.status}"
                assert sha(await r.read()) == digest
            for blob in blobs:
                async with session.get(f"{server.url}/v2/{repo}/blobs/{sha(blob)}") as r:
                    assert r.status == 200, f"{repo}:{tag} lost {sha(blob)}"
                    assert await r.read() == blob
            verified += 1
    return verified


@pytest.mark.parametrize("storage", ["filesystem", "s3",
                                     pytest.param("s3-rgw", marks=pytest.mark.rgw)])
def test_nothing_acknowledged_is_lost(make_berth: MakeBerth, request: pytest.FixtureRequest,
                                      storage: str) -> None:
    config: dict[str, Any] = {"berth": {"gc": {"enabled": True, "interval": "0.3s",
                                               "grace": "1s", "deleteuntagged": True}}}
    if storage != "filesystem":
        config.update(s3_config(request.getfixturevalue(
            "moto_s3" if storage == "s3" else "rgw_s3")))
    server = make_berth(config)
    tally = Tally()
    asyncio.run(workload(server, tally))
    verified = asyncio.run(verify(server, tally))
    log = server.log.read_text()
    runs = re.findall(r"garbage collection: .*deleted (\d+) blobs \((\d+) bytes\)", log)
    freed = sum(int(b) for _, b in runs)
    print(f"\n{storage}: {tally.pushed} images acknowledged ({tally.repushed_old} reusing "
          f"an old layer by HEAD), {tally.deleted} deleted, {tally.retried} manifest pushes "
          f"sent again; {len(runs)} collections freed {freed} bytes; {verified} images "
          f"verified whole")
    assert verified == len(tally.acknowledged) > 20
    assert tally.repushed_old > 5 and len(runs) >= 3 and freed > 0
    assert "garbage collection failed" not in log and "Traceback" not in log

    # with pushes over and the grace past, a collection has nothing left to delete
    time.sleep(2.5)
    done = subprocess.run(
        [sys.executable, "-m", "client.cli", "gc", "--config",
         str(server.workdir / "config.yml"), "--dry-run", "--json", "--grace", "1s"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["deleted_blobs"] == [] and report["deleted_manifests"] == [], report
