"""pack → push → pull --unpack gives back the same tree, on Berth and the reference registry."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from client.build import ImageSpec
from client.client import Client
from client.pack import PackOptions

from .servers import ROOT, BerthServer, DistributionServer


def make_tree(root: Path) -> Path:
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "usr" / "bin" / "app").write_bytes(b"#!/bin/sh\necho app\n")
    (root / "usr" / "bin" / "app").chmod(0o755)
    (root / "etc" / "conf.d" / "a.conf").write_text("a = 1\n")
    (root / "etc" / "old.conf").write_text("to be deleted by the next layer\n")
    (root / "etc" / "big").write_bytes(os.urandom(2_000_000))
    os.symlink("../usr/bin/app", root / "etc" / "app-link")
    os.link(root / "usr" / "bin" / "app", root / "usr" / "bin" / "app-again")
    return root


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", 0, os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


@pytest.mark.parametrize("registry", ["berth", "distribution"])
async def test_pack_push_pull_unpack_round_trip(
    registry: str, request: pytest.FixtureRequest, repo: str, tmp_path: Path
) -> None:
    server: BerthServer | DistributionServer = request.getfixturevalue(registry)
    tree = make_tree(tmp_path / "tree")
    extra = tmp_path / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc" / "added.conf").write_text("from the second layer\n")
    async with Client() as client:
        await client.build([tree], f"{server.host}/{repo}:base")
        # a second image on top: one more file, and old.conf deleted (a whiteout)
        await client.build([extra], f"{server.host}/{repo}:v2",
                           pack=PackOptions(compression="zstd", deletions=("etc/old.conf",)),
                           spec=ImageSpec(), base=f"{server.host}/{repo}:base")
        out = tmp_path / "out"
        result = await client.unpack(f"{server.host}/{repo}:v2", out)
    assert result.layers == 2 and result.stats.whiteouts == 1
    expected = snapshot(tree)
    del expected["etc/old.conf"]
    expected["etc/added.conf"] = ("file", 0o644, b"from the second layer\n")
    assert snapshot(out) == expected
    assert os.stat(out / "usr/bin/app").st_ino == os.stat(out / "usr/bin/app-again").st_ino


def test_cli_pull_unpack(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    run = [sys.executable, "-m", "client.cli"]
    pushed = subprocess.run([*run, "push", str(tree), f"{berth.host}/{repo}:v1", "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    out = tmp_path / "rootfs"
    pulled = subprocess.run([*run, "pull", f"{berth.host}/{repo}:v1", "--unpack", str(out),
                             "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["layers"] == 1
    assert snapshot(out) == snapshot(tree)
    both = subprocess.run([*run, "pull", f"{berth.host}/{repo}:v1", f"oci:{tmp_path}/x",
                           "--unpack", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert both.returncode == 2 and "not both" in both.stderr


def test_cli_refuses_a_hostile_layer(berth: BerthServer, repo: str, tmp_path: Path) -> None:
    import gzip
    import io
    import tarfile

    from .helpers import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, push_blob, put_manifest

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("escape")
        link.type, link.linkname = tarfile.SYMTYPE, "../.."
        tar.addfile(link)
        bad = tarfile.TarInfo("escape/planted")
        bad.size = 4
        tar.addfile(bad, io.BytesIO(b"evil"))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    push_blob(berth.url, repo, layer)
    push_blob(berth.url, repo, config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(OCI_CONFIG, config),
                           "layers": [descriptor(OCI_LAYER, layer)]}).encode()
    assert put_manifest(berth.url, repo, "evil", manifest).status_code == 201
    jail = tmp_path / "jail"
    out = jail / "a" / "rootfs"
    out.mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "client.cli", "pull",
                             f"{berth.host}/{repo}:evil", "--unpack", str(out), "-q"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "leads outside the target" in result.stderr or "outside" in result.stderr
    assert (out / "fine.txt").read_text() == "ok"
    assert not list(jail.rglob("planted"))
