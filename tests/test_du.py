"""`berth du`: per repository logical, unique and shared size from a walk of storage,
checked against the sizes of the blobs pushed (repositories sharing layers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import MakeBerth
from .helpers import DOCKER_FOREIGN, descriptor, digest, image, push_blob, put_manifest
from .servers import ROOT, BerthServer
from .test_quotas import ON_DISK, command, storage


def du(server: BerthServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from registry.commands import du; du()",
         "--config", str(server.workdir / "config.yml"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("driver", ON_DISK)
def test_du_of_repositories_sharing_layers(make_berth: MakeBerth, driver: str,
                                           request: pytest.FixtureRequest) -> None:
    # (with a quota, so that the usage the quotas count is shown beside the walk's)
    server = make_berth({**storage(driver, request),
                         "berth": {"quotas": [{"repositories": "**", "maxbytes": "1TiB"}]}})
    url = server.url
    base, only_a, only_b = os.urandom(4000), os.urandom(1000), os.urandom(300)
    a = image(url, "team/a", layers=[base, only_a])
    b = image(url, "team/b", layers=[base, only_b])
    config = json.loads(a)["config"]["size"]  # the same config in both
    assert put_manifest(url, "team/a", "v1", a).status_code == 201
    assert put_manifest(url, "team/b", "v1", b).status_code == 201
    # a Windows image whose foreign layer stays at its URL: not stored, not counted
    win = json.loads(image(url, "win", layers=[b"app"]))
    win["layers"].insert(0, descriptor(DOCKER_FOREIGN, b"never pushed",
                                       urls=["https://example.com/base"]))
    win_manifest = json.dumps(win).encode()
    assert put_manifest(url, "win", "ltsc", win_manifest).status_code == 201
    orphan = push_blob(url, "orphan", b"linked, named by no manifest")

    report = command(server, "du")
    rows = {r["name"]: r for r in report["repositories"]}
    assert list(rows) == ["orphan", "team/a", "team/b", "win"]
    assert rows["team/a"] | {"name": "x"} == {
        "name": "x", "logical": 4000 + 1000 + config + len(a), "unique": 1000 + len(a),
        "shared": 4000 + config, "blobs": 4, "tags": 1,
        "counted_bytes": 4000 + 1000 + config + len(a), "counted_tags": 1}
    assert (rows["team/b"]["logical"], rows["team/b"]["unique"], rows["team/b"]["shared"]) == (
        4000 + 300 + config + len(b), 300 + len(b), 4000 + config)
    assert rows["win"]["logical"] == len(b"app") + config + len(win_manifest)
    assert rows["win"]["unique"] == len(b"app") + len(win_manifest)
    assert rows["orphan"]["unique"] == len(b"linked, named by no manifest")
    assert report["total"] == sum((4000, 1000, 300, config, len(a), len(b), len(b"app"),
                                   len(win_manifest), len(b"linked, named by no manifest")))
    assert report["total_blobs"] == 9

    # one repository: unique and shared still say what the others hold
    one = command(server, "du", "team/b")
    assert [r["name"] for r in one["repositories"]] == ["team/b"]
    assert one["repositories"][0] == rows["team/b"]
    # a blob deleted from a repository is no longer its own
    assert requests.delete(f"{url}/v2/orphan/blobs/{orphan}").status_code == 202
    assert [r["name"] for r in command(server, "du")["repositories"]] == [
        "team/a", "team/b", "win"]

    # a layer link deleted while a manifest still names the blob: held (logical), though
    # the quotas, which count links, no longer charge for it
    assert requests.delete(f"{url}/v2/team/a/blobs/{digest(only_a)}").status_code == 202
    row = command(server, "du", "team/a")["repositories"][0]
    assert (row["logical"], row["counted_bytes"]) == (5000 + config + len(a),
                                                      4000 + config + len(a))

    table = du(server)
    assert table.returncode == 0, table.stderr
    line = next(li for li in table.stdout.splitlines() if li.strip().startswith("team/a"))
    assert line.split()[1:3] == [f"{(5000 + config + len(a)) / 1024:.2f}", "KiB"]
    assert "total (stored once)" in table.stdout


def test_du_refuses_an_unknown_repository(make_berth: MakeBerth) -> None:
    server = make_berth()
    push_blob(server.url, "there", b"x")
    result = du(server, "there", "not/there")
    assert result.returncode == 1
    assert result.stderr == f"berth: error: no repository not/there in {server.root}\n"
    assert result.stdout == ""


def test_du_of_a_root_without_repositories_warns(tmp_path: Path) -> None:
    wrong = tmp_path / "not-the-registry"
    result = subprocess.run(
        [sys.executable, "-c", "from registry.commands import du; du()", "--root", str(wrong),
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"repositories": [], "total": 0, "total_blobs": 0}
    assert result.stderr == ("berth: warning: no repositories (and no blobs) there: is that "
                             "the registry's storage root?\n")
    assert not wrong.exists()  # and looking wrote nothing there
